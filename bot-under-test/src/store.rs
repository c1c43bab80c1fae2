//! The bot's durable state in SQLite (WAL): the users it knows, their conversation references,
//! opt-out and delivery status, the teams it is installed in and their cached rosters.
//!
//! The schema version is SQLite's `user_version`; [`MIGRATIONS`] are applied in order, each in
//! its own transaction, so an older database is upgraded in place without losing rows.
//! The store is the one owner of this state: handlers, notify and install call its methods.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension, Row, params};

/// Ordered schema migrations; migration `i` brings the database to version `i + 1`.
pub const MIGRATIONS: &[&str] = &[
    // 1: users and their conversation references, with opt-out.
    "CREATE TABLE users (
        user_key INTEGER PRIMARY KEY,
        aad_object_id TEXT UNIQUE,
        teams_user_id TEXT UNIQUE,
        upn TEXT,
        name TEXT,
        tenant_id TEXT,
        service_url TEXT,
        opted_out INTEGER NOT NULL DEFAULT 0,
        updated_at TEXT NOT NULL
    );
    CREATE INDEX users_upn ON users (upn COLLATE NOCASE);
    CREATE TABLE conversation_references (
        conversation_id TEXT PRIMARY KEY,
        scope TEXT NOT NULL,
        user_key INTEGER REFERENCES users (user_key),
        team_id TEXT,
        tenant_id TEXT,
        service_url TEXT NOT NULL,
        channel_id TEXT NOT NULL,
        bot_id TEXT NOT NULL,
        bot_name TEXT,
        updated_at TEXT NOT NULL
    );
    CREATE INDEX conversation_references_user ON conversation_references (user_key);",
    // 2: delivery status (blocked, uninstalled), welcome bookkeeping, teams and rosters.
    "ALTER TABLE users ADD COLUMN status TEXT NOT NULL DEFAULT 'active';
    ALTER TABLE users ADD COLUMN welcomed_at TEXT;
    CREATE TABLE teams (
        team_id TEXT PRIMARY KEY,
        name TEXT,
        aad_group_id TEXT,
        tenant_id TEXT,
        service_url TEXT NOT NULL,
        welcomed_at TEXT,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE team_members (
        team_id TEXT NOT NULL,
        user_key INTEGER NOT NULL REFERENCES users (user_key),
        welcomed_at TEXT,
        PRIMARY KEY (team_id, user_key)
    );",
];

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("database folder: {0}")]
    Io(#[from] std::io::Error),
    #[error("database schema version {found} is newer than this bot ({known})")]
    TooNew { found: i64, known: i64 },
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// Whether the bot may still reach a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserStatus {
    /// Reachable as far as the bot knows.
    Active,
    /// The user blocked the bot (403 `ConversationBlockedByUser`).
    Blocked,
    /// The app was uninstalled for the user, or Teams says the bot is not in the conversation.
    NotInstalled,
}

impl UserStatus {
    fn as_str(self) -> &'static str {
        match self {
            UserStatus::Active => "active",
            UserStatus::Blocked => "blocked",
            UserStatus::NotInstalled => "not_installed",
        }
    }

    fn parse(s: &str) -> UserStatus {
        match s {
            "blocked" => UserStatus::Blocked,
            "not_installed" => UserStatus::NotInstalled,
            _ => UserStatus::Active,
        }
    }
}

/// A user the bot knows of, by any of their ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub user_key: i64,
    pub aad_object_id: Option<String>,
    /// The bot-specific `29:` id.
    pub teams_user_id: Option<String>,
    pub upn: Option<String>,
    pub name: Option<String>,
    pub tenant_id: Option<String>,
    /// Last service URL the user was seen through.
    pub service_url: Option<String>,
    pub opted_out: bool,
    pub status: UserStatus,
    pub welcomed: bool,
}

impl User {
    /// The best id to show in reports.
    pub fn display_id(&self) -> String {
        self.upn
            .clone()
            .or_else(|| self.aad_object_id.clone())
            .or_else(|| self.teams_user_id.clone())
            .unwrap_or_else(|| format!("user#{}", self.user_key))
    }
}

/// What an activity, a roster page or Graph told us about a user; `None` fields keep what is
/// stored.
#[derive(Debug, Clone, Default)]
pub struct UserSighting {
    pub aad_object_id: Option<String>,
    pub teams_user_id: Option<String>,
    pub upn: Option<String>,
    pub name: Option<String>,
    pub tenant_id: Option<String>,
    pub service_url: Option<String>,
}

/// Where a conversation lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Personal,
    Channel,
    GroupChat,
}

impl Scope {
    fn as_str(self) -> &'static str {
        match self {
            Scope::Personal => "personal",
            Scope::Channel => "channel",
            Scope::GroupChat => "groupChat",
        }
    }

    fn parse(s: &str) -> Scope {
        match s {
            "channel" => Scope::Channel,
            "groupChat" => Scope::GroupChat,
            _ => Scope::Personal,
        }
    }
}

/// Everything needed to message a conversation later (the Bot Framework's ConversationReference).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationReference {
    pub conversation_id: String,
    pub scope: Scope,
    /// For a personal conversation, the user in it.
    pub user_key: Option<i64>,
    /// For a channel, the team it belongs to.
    pub team_id: Option<String>,
    pub tenant_id: Option<String>,
    pub service_url: String,
    /// The Bot Framework channel (`msteams`).
    pub channel_id: String,
    pub bot_id: String,
    pub bot_name: Option<String>,
}

/// A team the bot is installed in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Team {
    /// The team's thread id, which is also its General channel's conversation id.
    pub team_id: String,
    pub name: Option<String>,
    pub aad_group_id: Option<String>,
    pub tenant_id: Option<String>,
    pub service_url: String,
}

/// The SQLite store. Calls are short and synchronous; the connection is behind a mutex.
#[derive(Debug)]
pub struct Store {
    conn: Mutex<Connection>,
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn user_from_row(row: &Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        user_key: row.get("user_key")?,
        aad_object_id: row.get("aad_object_id")?,
        teams_user_id: row.get("teams_user_id")?,
        upn: row.get("upn")?,
        name: row.get("name")?,
        tenant_id: row.get("tenant_id")?,
        service_url: row.get("service_url")?,
        opted_out: row.get::<_, i64>("opted_out")? != 0,
        status: UserStatus::parse(&row.get::<_, String>("status")?),
        welcomed: row.get::<_, Option<String>>("welcomed_at")?.is_some(),
    })
}

fn reference_from_row(row: &Row<'_>) -> rusqlite::Result<ConversationReference> {
    Ok(ConversationReference {
        conversation_id: row.get("conversation_id")?,
        scope: Scope::parse(&row.get::<_, String>("scope")?),
        user_key: row.get("user_key")?,
        team_id: row.get("team_id")?,
        tenant_id: row.get("tenant_id")?,
        service_url: row.get("service_url")?,
        channel_id: row.get("channel_id")?,
        bot_id: row.get("bot_id")?,
        bot_name: row.get("bot_name")?,
    })
}

fn team_from_row(row: &Row<'_>) -> rusqlite::Result<Team> {
    Ok(Team {
        team_id: row.get("team_id")?,
        name: row.get("name")?,
        aad_group_id: row.get("aad_group_id")?,
        tenant_id: row.get("tenant_id")?,
        service_url: row.get("service_url")?,
    })
}

/// Brings `conn` up to `target` (at most the newest version), one migration a transaction.
pub(crate) fn migrate_to(conn: &mut Connection, target: usize) -> Result<()> {
    let current: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let known = MIGRATIONS.len() as i64;
    if current > known {
        return Err(StoreError::TooNew {
            found: current,
            known,
        });
    }
    for (index, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .take(target)
        .skip(current as usize)
    {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (index + 1) as i64)?;
        tx.commit()?;
        tracing::debug!(version = index + 1, "database migrated");
    }
    Ok(())
}

impl Store {
    /// Opens (creating if needed, with its folder) the database at `path` and migrates it.
    /// `:memory:` opens a private in-memory database.
    pub fn open(path: &Path) -> Result<Store> {
        let mut conn = if path.as_os_str() == ":memory:" {
            Connection::open_in_memory()?
        } else {
            if let Some(parent) = path.parent()
                && !parent.as_os_str().is_empty()
            {
                std::fs::create_dir_all(parent)?;
            }
            let conn = Connection::open(path)?;
            let _mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
            conn
        };
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        migrate_to(&mut conn, MIGRATIONS.len())?;
        Ok(Store {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite half-written (transactions), so a
        // poisoned lock is still usable.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The schema version of the open database.
    pub fn schema_version(&self) -> Result<i64> {
        Ok(self
            .conn()
            .query_row("PRAGMA user_version", [], |r| r.get(0))?)
    }

    /// Records a sighting of a user and returns the merged record. A user is found by
    /// Entra object id first, then by `29:` id, then by UPN; new ids are added to the record.
    pub fn upsert_user(&self, s: &UserSighting) -> Result<User> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        // The same person, by whichever of their ids this sighting carries, most stable first.
        let lookups = [
            (
                "SELECT user_key FROM users WHERE aad_object_id = ?1",
                s.aad_object_id.as_deref(),
            ),
            (
                "SELECT user_key FROM users WHERE teams_user_id = ?1",
                s.teams_user_id.as_deref(),
            ),
            (
                "SELECT user_key FROM users WHERE upn = ?1 COLLATE NOCASE",
                s.upn.as_deref(),
            ),
        ];
        let mut key: Option<i64> = None;
        for (sql, value) in lookups {
            if let (None, Some(value)) = (key, value) {
                key = tx.query_row(sql, [value], |r| r.get(0)).optional()?;
            }
        }
        let key = match key {
            Some(key) => {
                // Another row may already own the new 29: id (seen first without an object id):
                // fold it into this one.
                if let Some(id) = &s.teams_user_id {
                    let other: Option<i64> = tx
                        .query_row(
                            "SELECT user_key FROM users WHERE teams_user_id = ?1 AND user_key <> ?2",
                            params![id, key],
                            |r| r.get(0),
                        )
                        .optional()?;
                    if let Some(other) = other {
                        merge_user_into(&tx, other, key)?;
                    }
                }
                tx.execute(
                    "UPDATE users SET
                        aad_object_id = COALESCE(?2, aad_object_id),
                        teams_user_id = COALESCE(?3, teams_user_id),
                        upn = COALESCE(?4, upn),
                        name = COALESCE(?5, name),
                        tenant_id = COALESCE(?6, tenant_id),
                        service_url = COALESCE(?7, service_url),
                        updated_at = ?8
                     WHERE user_key = ?1",
                    params![
                        key,
                        s.aad_object_id,
                        s.teams_user_id,
                        s.upn,
                        s.name,
                        s.tenant_id,
                        s.service_url,
                        now()
                    ],
                )?;
                key
            }
            None => {
                tx.execute(
                    "INSERT INTO users (aad_object_id, teams_user_id, upn, name, tenant_id, service_url, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![
                        s.aad_object_id,
                        s.teams_user_id,
                        s.upn,
                        s.name,
                        s.tenant_id,
                        s.service_url,
                        now()
                    ],
                )?;
                tx.last_insert_rowid()
            }
        };
        let user = tx.query_row(
            "SELECT * FROM users WHERE user_key = ?1",
            [key],
            user_from_row,
        )?;
        tx.commit()?;
        Ok(user)
    }

    /// Finds a user by Entra object id, UPN (case-insensitive) or `29:` id.
    pub fn find_user(&self, id: &str) -> Result<Option<User>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT * FROM users WHERE aad_object_id = ?1 COLLATE NOCASE
                    OR teams_user_id = ?1 OR upn = ?1 COLLATE NOCASE
                 ORDER BY user_key LIMIT 1",
                [id],
                user_from_row,
            )
            .optional()?)
    }

    pub fn user(&self, user_key: i64) -> Result<Option<User>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT * FROM users WHERE user_key = ?1",
                [user_key],
                user_from_row,
            )
            .optional()?)
    }

    /// Every user the bot knows, oldest first.
    pub fn users(&self) -> Result<Vec<User>> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT * FROM users ORDER BY user_key")?;
        let users = stmt
            .query_map([], user_from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(users)
    }

    pub fn set_opted_out(&self, user_key: i64, opted_out: bool) -> Result<()> {
        self.conn().execute(
            "UPDATE users SET opted_out = ?2, updated_at = ?3 WHERE user_key = ?1",
            params![user_key, opted_out as i64, now()],
        )?;
        Ok(())
    }

    pub fn set_status(&self, user_key: i64, status: UserStatus) -> Result<()> {
        self.conn().execute(
            "UPDATE users SET status = ?2, updated_at = ?3 WHERE user_key = ?1",
            params![user_key, status.as_str(), now()],
        )?;
        Ok(())
    }

    /// Marks the user as welcomed unless someone already did; true if this call did. Whoever
    /// claims the welcome sends it, so concurrent install events and install runs welcome once.
    pub fn claim_welcome(&self, user_key: i64) -> Result<bool> {
        let changed = self.conn().execute(
            "UPDATE users SET welcomed_at = ?2 WHERE user_key = ?1 AND welcomed_at IS NULL",
            params![user_key, now()],
        )?;
        Ok(changed == 1)
    }

    /// Gives a claimed welcome back (its delivery failed), so a later try may send it.
    pub fn release_welcome(&self, user_key: i64) -> Result<()> {
        self.conn().execute(
            "UPDATE users SET welcomed_at = NULL WHERE user_key = ?1",
            [user_key],
        )?;
        Ok(())
    }

    /// Stores or refreshes a conversation reference.
    pub fn save_reference(&self, r: &ConversationReference) -> Result<()> {
        self.conn().execute(
            "INSERT INTO conversation_references
                (conversation_id, scope, user_key, team_id, tenant_id, service_url, channel_id, bot_id, bot_name, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
             ON CONFLICT (conversation_id) DO UPDATE SET
                scope = excluded.scope,
                user_key = COALESCE(excluded.user_key, user_key),
                team_id = COALESCE(excluded.team_id, team_id),
                tenant_id = COALESCE(excluded.tenant_id, tenant_id),
                service_url = excluded.service_url,
                channel_id = excluded.channel_id,
                bot_id = excluded.bot_id,
                bot_name = COALESCE(excluded.bot_name, bot_name),
                updated_at = excluded.updated_at",
            params![
                r.conversation_id,
                r.scope.as_str(),
                r.user_key,
                r.team_id,
                r.tenant_id,
                r.service_url,
                r.channel_id,
                r.bot_id,
                r.bot_name,
                now()
            ],
        )?;
        Ok(())
    }

    pub fn reference(&self, conversation_id: &str) -> Result<Option<ConversationReference>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT * FROM conversation_references WHERE conversation_id = ?1",
                [conversation_id],
                reference_from_row,
            )
            .optional()?)
    }

    /// The user's most recently refreshed personal conversation reference.
    pub fn personal_reference(&self, user_key: i64) -> Result<Option<ConversationReference>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT * FROM conversation_references
                 WHERE user_key = ?1 AND scope = 'personal'
                 ORDER BY updated_at DESC, rowid DESC LIMIT 1",
                [user_key],
                reference_from_row,
            )
            .optional()?)
    }

    /// Forgets the user's personal conversations (the app was uninstalled).
    pub fn remove_personal_references(&self, user_key: i64) -> Result<usize> {
        Ok(self.conn().execute(
            "DELETE FROM conversation_references WHERE user_key = ?1 AND scope = 'personal'",
            [user_key],
        )?)
    }

    /// Records an uninstall for a user: references gone, status not installed, and the next
    /// install welcomes them again.
    pub fn record_uninstall(&self, user_key: i64) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "DELETE FROM conversation_references WHERE user_key = ?1 AND scope = 'personal'",
            [user_key],
        )?;
        tx.execute(
            "UPDATE users SET status = 'not_installed', welcomed_at = NULL, updated_at = ?2
             WHERE user_key = ?1",
            params![user_key, now()],
        )?;
        tx.commit()?;
        Ok(())
    }

    pub fn remove_reference(&self, conversation_id: &str) -> Result<bool> {
        Ok(self.conn().execute(
            "DELETE FROM conversation_references WHERE conversation_id = ?1",
            [conversation_id],
        )? == 1)
    }

    pub fn upsert_team(&self, team: &Team) -> Result<()> {
        self.conn().execute(
            "INSERT INTO teams (team_id, name, aad_group_id, tenant_id, service_url, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (team_id) DO UPDATE SET
                name = COALESCE(excluded.name, name),
                aad_group_id = COALESCE(excluded.aad_group_id, aad_group_id),
                tenant_id = COALESCE(excluded.tenant_id, tenant_id),
                service_url = excluded.service_url,
                updated_at = excluded.updated_at",
            params![
                team.team_id,
                team.name,
                team.aad_group_id,
                team.tenant_id,
                team.service_url,
                now()
            ],
        )?;
        Ok(())
    }

    pub fn team(&self, team_id: &str) -> Result<Option<Team>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT * FROM teams WHERE team_id = ?1",
                [team_id],
                team_from_row,
            )
            .optional()?)
    }

    pub fn teams(&self) -> Result<Vec<Team>> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT * FROM teams ORDER BY team_id")?;
        let teams = stmt
            .query_map([], team_from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(teams)
    }

    /// True if this call is the first to claim the team's welcome.
    pub fn claim_team_welcome(&self, team_id: &str) -> Result<bool> {
        Ok(self.conn().execute(
            "UPDATE teams SET welcomed_at = ?2 WHERE team_id = ?1 AND welcomed_at IS NULL",
            params![team_id, now()],
        )? == 1)
    }

    pub fn release_team_welcome(&self, team_id: &str) -> Result<()> {
        self.conn().execute(
            "UPDATE teams SET welcomed_at = NULL WHERE team_id = ?1",
            [team_id],
        )?;
        Ok(())
    }

    /// The bot left the team: forget the team, its roster and its channel references.
    pub fn remove_team(&self, team_id: &str) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute("DELETE FROM team_members WHERE team_id = ?1", [team_id])?;
        tx.execute(
            "DELETE FROM conversation_references WHERE team_id = ?1 AND scope = 'channel'",
            [team_id],
        )?;
        tx.execute("DELETE FROM teams WHERE team_id = ?1", [team_id])?;
        tx.commit()?;
        Ok(())
    }

    pub fn add_team_member(&self, team_id: &str, user_key: i64) -> Result<()> {
        self.conn().execute(
            "INSERT OR IGNORE INTO team_members (team_id, user_key) VALUES (?1, ?2)",
            params![team_id, user_key],
        )?;
        Ok(())
    }

    pub fn remove_team_member(&self, team_id: &str, user_key: i64) -> Result<()> {
        self.conn().execute(
            "DELETE FROM team_members WHERE team_id = ?1 AND user_key = ?2",
            params![team_id, user_key],
        )?;
        Ok(())
    }

    /// True if this call is the first to claim the new-member welcome of `user_key` in the team.
    pub fn claim_member_welcome(&self, team_id: &str, user_key: i64) -> Result<bool> {
        let conn = self.conn();
        conn.execute(
            "INSERT OR IGNORE INTO team_members (team_id, user_key) VALUES (?1, ?2)",
            params![team_id, user_key],
        )?;
        Ok(conn.execute(
            "UPDATE team_members SET welcomed_at = ?3
             WHERE team_id = ?1 AND user_key = ?2 AND welcomed_at IS NULL",
            params![team_id, user_key, now()],
        )? == 1)
    }

    pub fn team_members(&self, team_id: &str) -> Result<Vec<User>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT users.* FROM users JOIN team_members USING (user_key)
             WHERE team_members.team_id = ?1 ORDER BY users.user_key",
        )?;
        let users = stmt
            .query_map([team_id], user_from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(users)
    }
}

/// Moves everything of user `from` onto user `into` and deletes `from`.
fn merge_user_into(tx: &rusqlite::Transaction<'_>, from: i64, into: i64) -> Result<()> {
    tx.execute(
        "UPDATE conversation_references SET user_key = ?2 WHERE user_key = ?1",
        params![from, into],
    )?;
    tx.execute(
        "INSERT OR IGNORE INTO team_members (team_id, user_key, welcomed_at)
         SELECT team_id, ?2, welcomed_at FROM team_members WHERE user_key = ?1",
        params![from, into],
    )?;
    tx.execute("DELETE FROM team_members WHERE user_key = ?1", [from])?;
    // Opting out anywhere counts; a welcome already sent counts.
    tx.execute(
        "UPDATE users SET
            opted_out = MAX(opted_out, (SELECT opted_out FROM users WHERE user_key = ?1)),
            welcomed_at = COALESCE(welcomed_at, (SELECT welcomed_at FROM users WHERE user_key = ?1))
         WHERE user_key = ?2",
        params![from, into],
    )?;
    tx.execute("DELETE FROM users WHERE user_key = ?1", [from])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct TempDb(std::path::PathBuf);

    impl TempDb {
        fn new(name: &str) -> TempDb {
            let dir = std::env::temp_dir().join(format!(
                "proactive-bot-store-{}-{}",
                name,
                uuid::Uuid::new_v4()
            ));
            TempDb(dir.join("bot.sqlite3"))
        }
    }

    impl Drop for TempDb {
        fn drop(&mut self) {
            if let Some(dir) = self.0.parent() {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }

    fn megan() -> UserSighting {
        UserSighting {
            aad_object_id: Some("7faf8ab2-0000-4000-8000-000000000001".to_owned()),
            teams_user_id: Some("29:megan".to_owned()),
            upn: Some("MeganB@contoso.example".to_owned()),
            name: Some("Megan Bowen".to_owned()),
            tenant_id: Some("tenant".to_owned()),
            service_url: Some("http://127.0.0.1:3979/amer/".to_owned()),
        }
    }

    fn personal(conversation_id: &str, user_key: i64) -> ConversationReference {
        ConversationReference {
            conversation_id: conversation_id.to_owned(),
            scope: Scope::Personal,
            user_key: Some(user_key),
            team_id: None,
            tenant_id: Some("tenant".to_owned()),
            service_url: "http://127.0.0.1:3979/amer/".to_owned(),
            channel_id: "msteams".to_owned(),
            bot_id: "28:bot".to_owned(),
            bot_name: Some("Bot".to_owned()),
        }
    }

    #[test]
    fn references_survive_reopening_the_file() {
        let db = TempDb::new("reopen");
        let key = {
            let store = Store::open(&db.0).unwrap();
            let user = store.upsert_user(&megan()).unwrap();
            store
                .save_reference(&personal("a:1", user.user_key))
                .unwrap();
            store.set_opted_out(user.user_key, true).unwrap();
            user.user_key
        };
        let store = Store::open(&db.0).unwrap();
        assert_eq!(
            store.personal_reference(key).unwrap(),
            Some(personal("a:1", key))
        );
        let user = store.find_user("meganb@contoso.example").unwrap().unwrap();
        assert!(user.opted_out, "opt-out persists");
        assert_eq!(store.find_user("29:megan").unwrap().unwrap().user_key, key);
    }

    #[test]
    fn migrating_an_older_schema_keeps_its_data() {
        let db = TempDb::new("migrate");
        std::fs::create_dir_all(db.0.parent().unwrap()).unwrap();
        {
            let mut conn = Connection::open(&db.0).unwrap();
            migrate_to(&mut conn, 1).unwrap();
            conn.execute(
                "INSERT INTO users (aad_object_id, teams_user_id, name, opted_out, updated_at)
                 VALUES ('aad-1', '29:one', 'One', 1, '2024-01-01T00:00:00Z')",
                [],
            )
            .unwrap();
            conn.execute(
                "INSERT INTO conversation_references
                    (conversation_id, scope, user_key, service_url, channel_id, bot_id, updated_at)
                 VALUES ('a:one', 'personal', 1, 'http://x/amer/', 'msteams', '28:bot', '2024-01-01T00:00:00Z')",
                [],
            )
            .unwrap();
        }
        let store = Store::open(&db.0).unwrap();
        assert_eq!(store.schema_version().unwrap(), MIGRATIONS.len() as i64);
        let user = store.find_user("aad-1").unwrap().expect("user kept");
        assert!(user.opted_out);
        assert_eq!(user.status, UserStatus::Active);
        assert!(!user.welcomed);
        let reference = store.personal_reference(user.user_key).unwrap().unwrap();
        assert_eq!(reference.conversation_id, "a:one");
        // The new tables work on the migrated file.
        assert!(store.claim_welcome(user.user_key).unwrap());
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let db = TempDb::new("newer");
        std::fs::create_dir_all(db.0.parent().unwrap()).unwrap();
        Connection::open(&db.0)
            .unwrap()
            .pragma_update(None, "user_version", 99)
            .unwrap();
        assert!(matches!(
            Store::open(&db.0),
            Err(StoreError::TooNew { found: 99, .. })
        ));
    }

    #[test]
    fn sightings_by_different_ids_merge_into_one_user() {
        let store = Store::open(Path::new(":memory:")).unwrap();
        // A mention gives only the 29: id and a name.
        let mentioned = store
            .upsert_user(&UserSighting {
                teams_user_id: Some("29:megan".to_owned()),
                name: Some("Megan".to_owned()),
                ..Default::default()
            })
            .unwrap();
        store.set_opted_out(mentioned.user_key, true).unwrap();
        // Graph gives the object id and UPN.
        let from_graph = store
            .upsert_user(&UserSighting {
                aad_object_id: megan().aad_object_id,
                upn: megan().upn,
                ..Default::default()
            })
            .unwrap();
        assert_ne!(mentioned.user_key, from_graph.user_key);
        // An activity gives both: the two records become one and keep the opt-out.
        let merged = store.upsert_user(&megan()).unwrap();
        assert_eq!(merged.user_key, from_graph.user_key);
        assert!(merged.opted_out);
        assert_eq!(store.users().unwrap().len(), 1);
    }

    #[test]
    fn a_welcome_is_claimed_once_until_uninstall() {
        let store = Store::open(Path::new(":memory:")).unwrap();
        let user = store.upsert_user(&megan()).unwrap();
        store
            .save_reference(&personal("a:1", user.user_key))
            .unwrap();
        assert!(store.claim_welcome(user.user_key).unwrap());
        assert!(!store.claim_welcome(user.user_key).unwrap());
        store.record_uninstall(user.user_key).unwrap();
        assert_eq!(store.personal_reference(user.user_key).unwrap(), None);
        let user = store.user(user.user_key).unwrap().unwrap();
        assert_eq!(user.status, UserStatus::NotInstalled);
        assert!(store.claim_welcome(user.user_key).unwrap());
    }

    #[test]
    fn removing_a_team_forgets_its_roster_and_channels() {
        let store = Store::open(Path::new(":memory:")).unwrap();
        let team = Team {
            team_id: "19:team@thread.tacv2".to_owned(),
            name: Some("Contoso".to_owned()),
            aad_group_id: None,
            tenant_id: None,
            service_url: "http://x/amer/".to_owned(),
        };
        store.upsert_team(&team).unwrap();
        let user = store.upsert_user(&megan()).unwrap();
        store.add_team_member(&team.team_id, user.user_key).unwrap();
        store
            .save_reference(&ConversationReference {
                scope: Scope::Channel,
                user_key: None,
                team_id: Some(team.team_id.clone()),
                ..personal(&team.team_id, 0)
            })
            .unwrap();
        assert_eq!(store.team_members(&team.team_id).unwrap().len(), 1);
        assert!(store.claim_team_welcome(&team.team_id).unwrap());
        assert!(!store.claim_team_welcome(&team.team_id).unwrap());
        store.remove_team(&team.team_id).unwrap();
        assert_eq!(store.team(&team.team_id).unwrap(), None);
        assert_eq!(store.reference(&team.team_id).unwrap(), None);
        assert!(store.team_members(&team.team_id).unwrap().is_empty());
        assert!(store.find_user("29:megan").unwrap().is_some(), "users stay");
    }
}
