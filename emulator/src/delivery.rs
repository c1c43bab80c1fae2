//! Activities to bots: turning [`TeamsEvent`]s into Teams-shaped activities, signing them with a
//! channel JWT, POSTing them to the bot's messaging endpoint, and recording every outcome.
//!
//! Each bot has one queue and one worker, so activities reach a bot in the order they happened
//! while the Graph call that caused them returns at once (as in Teams). A bot that is down or
//! answers an error is a recorded failed delivery, never silence.

use crate::identity::tokens::channel_token;
use crate::server::{AppState, BotAuth};
use crate::tenant::{InstallScope, TeamsEvent, Tenant, World};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, mpsc};
use uuid::Uuid;

/// How long a bot has to answer one activity.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(15);

/// One attempt to deliver an activity, as the control API and reports show it.
#[derive(Clone, Debug, Serialize)]
pub struct DeliveryRecord {
    pub seq: usize,
    pub bot: Uuid,
    pub endpoint: Option<String>,
    #[serde(rename = "activityType")]
    pub activity_type: String,
    #[serde(rename = "activityId")]
    pub activity_id: String,
    #[serde(rename = "conversationId")]
    pub conversation_id: String,
    pub signed: bool,
    pub status: Option<u16>,
    pub ok: bool,
    pub error: Option<String>,
    #[serde(rename = "latencyMs")]
    pub latency_ms: u64,
    pub at: DateTime<Utc>,
    pub activity: Value,
}

struct Job {
    seq: usize,
    bot: Uuid,
    endpoint: Option<String>,
    activity: Value,
}

/// The delivery queues, their outcomes, and the transcript of both directions.
#[derive(Default)]
pub struct Deliveries {
    queues: Mutex<HashMap<Uuid, mpsc::UnboundedSender<Job>>>,
    records: Mutex<Vec<DeliveryRecord>>,
    transcript: Mutex<Vec<Value>>,
    pending: AtomicUsize,
    next_seq: AtomicUsize,
    idle: Notify,
    client: std::sync::OnceLock<reqwest::Client>,
}

impl Deliveries {
    fn client(&self) -> &reqwest::Client {
        self.client.get_or_init(|| {
            reqwest::Client::builder()
                .timeout(DELIVERY_TIMEOUT)
                .connect_timeout(Duration::from_secs(5))
                .build()
                .unwrap_or_default()
        })
    }

    pub fn records(&self) -> Vec<DeliveryRecord> {
        self.records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Every activity to and from bots, in order: a Bot Framework `.transcript`.
    pub fn transcript(&self) -> Vec<Value> {
        self.transcript
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Records an activity a bot sent through the Connector.
    pub fn record_from_bot(&self, activity: Value) {
        self.transcript
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(activity);
    }

    /// Forgets outcomes and the transcript (activities still queued are delivered).
    pub fn clear(&self) {
        self.records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.transcript
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// The sequence number of the latest queued activity (0 before any).
    pub fn last_seq(&self) -> usize {
        self.next_seq.load(Ordering::SeqCst)
    }

    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::SeqCst)
    }

    /// Waits until every queued activity has been delivered (or failed), up to `timeout`.
    /// Returns whether the queues are empty.
    pub async fn settle(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.idle.notified();
            if self.pending() == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.pending() == 0;
            }
        }
    }
}

/// Queues `activity` for the bot `bot`; the bot's worker delivers it in order.
pub fn enqueue(state: &AppState, bot: Uuid, endpoint: Option<String>, mut activity: Value) {
    let d = &state.delivery;
    let seq = d.next_seq.fetch_add(1, Ordering::SeqCst) + 1;
    if activity.get("id").is_none() {
        // Derived from the sequence, so the same run gives the same ids and transcripts diff cleanly.
        activity["id"] = json!(format!(
            "f:{}",
            crate::ids::derived_guid("activity", &seq.to_string())
        ));
    }
    d.pending.fetch_add(1, Ordering::SeqCst);
    d.transcript
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(activity.clone());
    let mut queues = d.queues.lock().unwrap_or_else(|e| e.into_inner());
    let sender = queues.entry(bot).or_insert_with(|| {
        let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
        // The worker must not keep the emulator alive: its queue lives in the state it serves.
        let weak = state.downgrade();
        tokio::spawn(async move {
            while let Some(job) = rx.recv().await {
                let Some(state) = AppState::upgrade(&weak) else {
                    break;
                };
                let record = send(&state, job).await;
                log_outcome(&record);
                state
                    .delivery
                    .records
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(record);
                state.delivery.pending.fetch_sub(1, Ordering::SeqCst);
                state.delivery.idle.notify_waiters();
            }
        });
        tx
    });
    if sender
        .send(Job {
            seq,
            bot,
            endpoint,
            activity,
        })
        .is_err()
    {
        d.pending.fetch_sub(1, Ordering::SeqCst);
    }
}

fn log_outcome(r: &DeliveryRecord) {
    if r.ok {
        tracing::debug!(bot = %r.bot, activity = %r.activity_type, status = ?r.status, "delivered");
    } else {
        tracing::warn!(bot = %r.bot, activity = %r.activity_type, status = ?r.status, error = ?r.error, "delivery failed");
    }
}

async fn send(state: &AppState, job: Job) -> DeliveryRecord {
    let text = |v: &Value, k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let mut record = DeliveryRecord {
        seq: job.seq,
        bot: job.bot,
        endpoint: job.endpoint.clone(),
        activity_type: text(&job.activity, "type"),
        activity_id: text(&job.activity, "id"),
        conversation_id: job.activity["conversation"]["id"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        signed: state.bot_auth == BotAuth::Signed,
        status: None,
        ok: false,
        error: None,
        latency_ms: 0,
        at: state.world().now(),
        activity: job.activity.clone(),
    };
    let Some(endpoint) = job.endpoint else {
        record.error = Some("the bot's app registration has no messaging endpoint".into());
        return record;
    };
    let mut request = state
        .delivery
        .client()
        .post(&endpoint)
        .header("content-type", "application/json; charset=utf-8")
        .header("x-ms-conversation-id", record.conversation_id.clone())
        .header(
            "x-ms-tenant-id",
            job.activity["conversation"]["tenantId"]
                .as_str()
                .unwrap_or_default(),
        )
        .body(job.activity.to_string());
    if state.bot_auth == BotAuth::Signed {
        let now = state.world().now();
        let service_url = job.activity["serviceUrl"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        request = request.bearer_auth(channel_token(&state.key, now, job.bot, &service_url));
    }
    let started = Instant::now();
    match request.send().await {
        Ok(response) => {
            let status = response.status();
            record.status = Some(status.as_u16());
            record.ok = status.is_success();
            if !record.ok {
                let body = response.text().await.unwrap_or_default();
                let snippet: String = body.chars().take(300).collect();
                record.error = Some(format!("the bot answered {status}: {snippet}"));
            }
        }
        Err(e) => {
            record.error = Some(if e.is_timeout() {
                format!(
                    "the bot did not answer within {}s",
                    DELIVERY_TIMEOUT.as_secs()
                )
            } else if e.is_connect() {
                format!("cannot connect to the bot at {endpoint}")
            } else {
                format!("sending to the bot failed: {e}")
            });
        }
    }
    record.latency_ms = started.elapsed().as_millis() as u64;
    record
}

/// Turns one event into its activities and queues them.
pub async fn deliver_event(state: &AppState, event: &TeamsEvent) {
    let jobs = {
        let world = state.world();
        activities_for(&world, &state.service_url(), event)
    };
    for (bot, endpoint, activity) in jobs {
        enqueue(state, bot, endpoint, activity);
    }
}

type Outgoing = (Uuid, Option<String>, Value);

/// The activities Teams sends for `event`, each with its bot and endpoint.
pub fn activities_for(world: &World, service_url: &str, event: &TeamsEvent) -> Vec<Outgoing> {
    let now = world.now();
    match *event {
        TeamsEvent::AppInstalledForUser { tenant, user, catalog_app, conversation_update } => {
            personal(world, service_url, tenant, user, catalog_app, |base, bot| {
                let mut out = vec![with(base.clone(), json!({"type": "installationUpdate", "action": "add"}))];
                if conversation_update {
                    let members = json!([{"id": crate::ids::bot_mri(bot)}, base["from"].clone()]);
                    out.push(with(base, json!({"type": "conversationUpdate", "membersAdded": members})));
                }
                out
            })
        }
        TeamsEvent::AppUninstalledForUser { tenant, user, catalog_app } => {
            personal(world, service_url, tenant, user, catalog_app, |base, _| {
                vec![with(base, json!({"type": "installationUpdate", "action": "remove"}))]
            })
        }
        TeamsEvent::AppUpgradedForUser { tenant, user, catalog_app } => {
            personal(world, service_url, tenant, user, catalog_app, |base, _| {
                vec![with(base, json!({"type": "installationUpdate", "action": "add-upgrade"}))]
            })
        }
        TeamsEvent::AppInstalledForTeam { tenant, team, catalog_app } => {
            team_scope(world, service_url, tenant, team, catalog_app, None, |base, bot| {
                vec![
                    with(base.clone(), json!({"type": "installationUpdate", "action": "add", "channelData": {"source": {"name": "message"}}})),
                    with(base, json!({"type": "conversationUpdate", "membersAdded": [{"id": crate::ids::bot_mri(bot)}], "channelData": {"eventType": "teamMemberAdded"}})),
                ]
            })
        }
        TeamsEvent::AppUninstalledForTeam { tenant, team, catalog_app } => {
            team_scope(world, service_url, tenant, team, catalog_app, None, |base, bot| {
                vec![
                    with(base.clone(), json!({"type": "installationUpdate", "action": "remove"})),
                    with(base, json!({"type": "conversationUpdate", "membersRemoved": [{"id": crate::ids::bot_mri(bot)}], "channelData": {"eventType": "teamMemberRemoved"}})),
                ]
            })
        }
        TeamsEvent::MemberAddedToTeam { tenant, team, user } | TeamsEvent::MemberRemovedFromTeam { tenant, team, user } => {
            let added = matches!(event, TeamsEvent::MemberAddedToTeam { .. });
            let Some(t) = world.tenant(tenant) else { return vec![] };
            let Some(member) = t.user_by_id(user).map(user_account) else { return vec![] };
            let (key, kind) = if added { ("membersAdded", "teamMemberAdded") } else { ("membersRemoved", "teamMemberRemoved") };
            team_apps(t, team)
                .into_iter()
                .flat_map(|app| {
                    team_scope(world, service_url, tenant, team, app, None, |base, _| {
                        vec![with(base, json!({"type": "conversationUpdate", key: [member.clone()], "channelData": {"eventType": kind}}))]
                    })
                })
                .collect()
        }
        TeamsEvent::UserMessage { tenant, ref conversation, ref message, bot } => {
            user_message(world, service_url, tenant, conversation, message, bot).into_iter().collect()
        }
    }
    .into_iter()
    .map(|(bot, endpoint, mut activity)| {
        stamp(&mut activity, now);
        (bot, endpoint, activity)
    })
    .collect()
}

/// Merges `extra` into `base`, one level deep for objects (so `channelData` keeps the tenant).
pub fn with(mut base: Value, extra: Value) -> Value {
    if let (Value::Object(b), Value::Object(e)) = (&mut base, extra) {
        for (k, v) in e {
            match (b.get_mut(&k), v) {
                (Some(Value::Object(inner)), Value::Object(add)) => inner.extend(add),
                (_, v) => {
                    b.insert(k, v);
                }
            }
        }
    }
    base
}

/// Gives an activity its timestamps, as Teams stamps them (its id comes with its place in the
/// bot's queue, see [`enqueue`]).
pub fn stamp(activity: &mut Value, now: DateTime<Utc>) {
    activity["timestamp"] = json!(now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    let local = now.with_timezone(
        &chrono::FixedOffset::west_opt(7 * 3600)
            .unwrap_or_else(|| chrono::FixedOffset::east_opt(0).expect("zero offset")),
    );
    activity["localTimestamp"] = json!(local.to_rfc3339_opts(chrono::SecondsFormat::Millis, false));
    activity["localTimezone"] = json!("America/Los_Angeles");
}

fn bot_of(tenant: &Tenant, catalog_app: Uuid) -> Option<(Uuid, Option<String>, String)> {
    let app = tenant.catalog.iter().find(|a| a.id == catalog_app)?;
    let bot = app.bot_id?;
    let endpoint = tenant
        .registration(bot)
        .and_then(|r| r.messaging_endpoint.clone());
    Some((bot, endpoint, app.display_name.clone()))
}

/// The envelope every activity shares.
pub fn envelope(
    service_url: &str,
    tenant: Uuid,
    from: Value,
    bot: Uuid,
    bot_name: &str,
    conversation: Value,
) -> Value {
    json!({
        "serviceUrl": service_url,
        "channelId": "msteams",
        "from": from,
        "recipient": {"id": crate::ids::bot_mri(bot), "name": bot_name},
        "conversation": conversation,
        "entities": [{"type": "clientInfo", "locale": "en-US", "country": "US", "platform": "Web", "timezone": "America/Los_Angeles"}],
        "channelData": {"tenant": {"id": tenant.to_string()}},
        "locale": "en-US",
    })
}

pub fn user_account(user: &crate::tenant::User) -> Value {
    json!({"id": user.mri, "name": user.display_name, "aadObjectId": user.id.to_string()})
}

fn personal(
    world: &World,
    service_url: &str,
    tenant_id: Uuid,
    user: Uuid,
    catalog_app: Uuid,
    build: impl FnOnce(Value, Uuid) -> Vec<Value>,
) -> Vec<Outgoing> {
    let Some(tenant) = world.tenant(tenant_id) else {
        return vec![];
    };
    let (Some((bot, endpoint, bot_name)), Some(user)) =
        (bot_of(tenant, catalog_app), tenant.user_by_id(user))
    else {
        return vec![];
    };
    let Some(chat) = tenant
        .chats
        .iter()
        .find(|c| c.user == user.id && c.bot == bot)
    else {
        return vec![];
    };
    let conversation = json!({"conversationType": "personal", "tenantId": tenant_id.to_string(), "id": chat.conversation_id});
    let base = envelope(
        service_url,
        tenant_id,
        user_account(user),
        bot,
        &bot_name,
        conversation,
    );
    build(base, bot)
        .into_iter()
        .map(|a| (bot, endpoint.clone(), a))
        .collect()
}

/// A user's message as the bot receives it: in its 1:1 chat, or a channel thread with mentions.
fn user_message(
    world: &World,
    service_url: &str,
    tenant_id: Uuid,
    conversation_id: &str,
    message_id: &str,
    bot: Uuid,
) -> Option<Outgoing> {
    let tenant = world.tenant(tenant_id)?;
    let app = tenant.app_of_bot(bot)?;
    let endpoint = tenant
        .registration(bot)
        .and_then(|r| r.messaging_endpoint.clone());
    let conversation = tenant.conversation(conversation_id)?;
    let message = tenant
        .messages(&conversation)
        .iter()
        .find(|m| m.id == message_id)?;
    let crate::tenant::Participant::User(sender) = message.from else {
        return None;
    };
    let from = user_account(tenant.user_by_id(sender)?);
    let base = match &conversation {
        crate::tenant::Conversation::Personal { chat } => {
            let chat = tenant.chat(chat)?;
            let conv = json!({"conversationType": "personal", "tenantId": tenant_id.to_string(), "id": chat.conversation_id});
            envelope(service_url, tenant_id, from, bot, &app.display_name, conv)
        }
        crate::tenant::Conversation::Channel { team, channel, .. } => {
            let team = tenant.teams.iter().find(|t| t.id == *team)?;
            let conv = json!({"isGroup": true, "conversationType": "channel", "tenantId": tenant_id.to_string(), "id": conversation_id});
            with(
                envelope(service_url, tenant_id, from, bot, &app.display_name, conv),
                json!({"channelData": {
                    "teamsChannelId": channel,
                    "teamsTeamId": team.thread_id,
                    "channel": {"id": channel},
                    "team": {"id": team.thread_id, "name": team.display_name, "aadGroupId": team.id.to_string()},
                }}),
            )
        }
    };
    let mut activity = with(
        base,
        json!({"type": "message", "id": message.id, "textFormat": "plain"}),
    );
    for key in ["text", "textFormat", "attachments"] {
        if let Some(v) = message.activity.get(key) {
            activity[key] = v.clone();
        }
    }
    if let Some(Value::Array(extra)) = message.activity.get("entities")
        && let Some(Value::Array(entities)) = activity.get_mut("entities")
    {
        entities.extend(extra.iter().cloned());
    }
    Some((bot, endpoint, activity))
}

/// Team-scope activities: the conversation is the team's General channel.
pub fn team_scope(
    world: &World,
    service_url: &str,
    tenant_id: Uuid,
    team_id: Uuid,
    catalog_app: Uuid,
    from_user: Option<Uuid>,
    build: impl FnOnce(Value, Uuid) -> Vec<Value>,
) -> Vec<Outgoing> {
    let Some(tenant) = world.tenant(tenant_id) else {
        return vec![];
    };
    let (Some((bot, endpoint, bot_name)), Some(team)) = (
        bot_of(tenant, catalog_app),
        tenant.teams.iter().find(|t| t.id == team_id),
    ) else {
        return vec![];
    };
    let from = from_user
        .or_else(|| {
            team.members
                .iter()
                .find(|m| m.owner)
                .or(team.members.first())
                .map(|m| m.user)
        })
        .and_then(|u| tenant.user_by_id(u))
        .map(user_account)
        .unwrap_or_else(|| json!({"id": "29:teams-admin", "name": "Teams administrator"}));
    let conversation = json!({"isGroup": true, "conversationType": "channel", "tenantId": tenant_id.to_string(), "id": team.thread_id, "name": team.display_name});
    let base = with(
        envelope(service_url, tenant_id, from, bot, &bot_name, conversation),
        json!({"channelData": {
            "settings": {"selectedChannel": {"id": team.thread_id}},
            "channel": {"id": team.thread_id},
            "team": {"aadGroupId": team.id.to_string(), "name": team.display_name, "id": team.thread_id},
        }}),
    );
    build(base, bot)
        .into_iter()
        .map(|a| (bot, endpoint.clone(), a))
        .collect()
}

/// The bots installed in a team, for team events (a member joined, a message mentions a bot).
pub fn team_apps(tenant: &Tenant, team: Uuid) -> Vec<Uuid> {
    tenant
        .installations
        .iter()
        .filter(|i| i.scope == InstallScope::Team(team))
        .map(|i| i.catalog_app)
        .collect()
}
