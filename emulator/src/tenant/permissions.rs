//! Who may do what: Graph's application roles and delegated scopes for each operation, and the
//! `…Self…` rule that lets an app manage only its own Teams app.

use super::TenantError;
use uuid::Uuid;

/// The identity behind a Graph call, as read from its access token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub tenant: Uuid,
    /// The `appid` claim: the client that obtained the token.
    pub app_id: Uuid,
    /// Application permissions (`roles` claim) of an app-only token.
    pub roles: Vec<String>,
    /// Delegated permissions (`scp` claim) of a user's token.
    pub scopes: Vec<String>,
    /// The signed-in user of a delegated token.
    pub user: Option<Uuid>,
}

/// How far a granted permission reaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reach {
    /// Any Teams app.
    AnyApp,
    /// Only the Teams app whose bot or `webApplicationInfo` id is the caller's app id.
    OwnAppOnly,
}

/// The permissions that allow one operation, most privileged last, as Graph's docs list them.
pub struct Permission {
    pub application: &'static [(&'static str, Reach)],
    pub delegated: &'static [(&'static str, Reach)],
}

use Reach::{AnyApp, OwnAppOnly};

pub const READ_USERS: Permission = Permission {
    application: &[
        ("User.ReadBasic.All", AnyApp),
        ("User.Read.All", AnyApp),
        ("User.ReadWrite.All", AnyApp),
        ("Directory.Read.All", AnyApp),
    ],
    delegated: &[
        ("User.Read", AnyApp),
        ("User.ReadBasic.All", AnyApp),
        ("User.Read.All", AnyApp),
        ("Directory.Read.All", AnyApp),
    ],
};

pub const READ_APP_CATALOG: Permission = Permission {
    application: &[
        ("AppCatalog.Read.All", AnyApp),
        ("AppCatalog.ReadWrite.All", AnyApp),
        ("Directory.Read.All", AnyApp),
    ],
    delegated: &[
        ("AppCatalog.Read.All", AnyApp),
        ("AppCatalog.ReadWrite.All", AnyApp),
        ("Directory.Read.All", AnyApp),
    ],
};

pub const READ_USER_INSTALLATIONS: Permission = Permission {
    application: &[
        ("TeamsAppInstallation.ReadSelfForUser.All", OwnAppOnly),
        ("TeamsAppInstallation.ReadWriteSelfForUser.All", OwnAppOnly),
        ("TeamsAppInstallation.ReadForUser.All", AnyApp),
        ("TeamsAppInstallation.ReadWriteForUser.All", AnyApp),
    ],
    delegated: &[
        ("TeamsAppInstallation.ReadSelfForUser", OwnAppOnly),
        ("TeamsAppInstallation.ReadWriteSelfForUser", OwnAppOnly),
        ("TeamsAppInstallation.ReadForUser", AnyApp),
        ("TeamsAppInstallation.ReadWriteForUser", AnyApp),
    ],
};

pub const WRITE_USER_INSTALLATIONS: Permission = Permission {
    application: &[
        ("TeamsAppInstallation.ReadWriteSelfForUser.All", OwnAppOnly),
        ("TeamsAppInstallation.ReadWriteForUser.All", AnyApp),
    ],
    delegated: &[
        ("TeamsAppInstallation.ReadWriteSelfForUser", OwnAppOnly),
        ("TeamsAppInstallation.ReadWriteForUser", AnyApp),
    ],
};

pub const READ_TEAM_INSTALLATIONS: Permission = Permission {
    application: &[
        ("TeamsAppInstallation.ReadSelfForTeam.All", OwnAppOnly),
        ("TeamsAppInstallation.ReadWriteSelfForTeam.All", OwnAppOnly),
        ("TeamsAppInstallation.ReadForTeam.All", AnyApp),
        ("TeamsAppInstallation.ReadWriteForTeam.All", AnyApp),
    ],
    delegated: &[
        ("TeamsAppInstallation.ReadSelfForTeam", OwnAppOnly),
        ("TeamsAppInstallation.ReadWriteSelfForTeam", OwnAppOnly),
        ("TeamsAppInstallation.ReadForTeam", AnyApp),
        ("TeamsAppInstallation.ReadWriteForTeam", AnyApp),
    ],
};

pub const WRITE_TEAM_INSTALLATIONS: Permission = Permission {
    application: &[
        ("TeamsAppInstallation.ReadWriteSelfForTeam.All", OwnAppOnly),
        ("TeamsAppInstallation.ReadWriteForTeam.All", AnyApp),
    ],
    delegated: &[
        ("TeamsAppInstallation.ReadWriteSelfForTeam", OwnAppOnly),
        ("TeamsAppInstallation.ReadWriteForTeam", AnyApp),
    ],
};

pub const READ_CHATS: Permission = Permission {
    application: &[
        ("Chat.ReadBasic.All", AnyApp),
        ("Chat.Read.All", AnyApp),
        ("Chat.ReadWrite.All", AnyApp),
    ],
    delegated: &[
        ("Chat.ReadBasic", AnyApp),
        ("Chat.Read", AnyApp),
        ("Chat.ReadWrite", AnyApp),
    ],
};

/// Getting the chat of an installation is allowed by the installation-read permissions too.
pub const READ_INSTALLATION_CHAT: Permission = Permission {
    application: &[
        ("TeamsAppInstallation.ReadSelfForUser.All", OwnAppOnly),
        ("TeamsAppInstallation.ReadWriteSelfForUser.All", OwnAppOnly),
        ("TeamsAppInstallation.ReadForUser.All", AnyApp),
        ("TeamsAppInstallation.ReadWriteForUser.All", AnyApp),
        ("Chat.ReadBasic.All", AnyApp),
        ("Chat.Read.All", AnyApp),
        ("Chat.ReadWrite.All", AnyApp),
    ],
    delegated: &[
        ("TeamsAppInstallation.ReadSelfForUser", OwnAppOnly),
        ("TeamsAppInstallation.ReadWriteSelfForUser", OwnAppOnly),
        ("TeamsAppInstallation.ReadForUser", AnyApp),
        ("TeamsAppInstallation.ReadWriteForUser", AnyApp),
        ("Chat.ReadBasic", AnyApp),
        ("Chat.Read", AnyApp),
        ("Chat.ReadWrite", AnyApp),
    ],
};

pub const READ_CHAT_MESSAGES: Permission = Permission {
    application: &[
        ("ChatMessage.Read.All", AnyApp),
        ("Chat.Read.All", AnyApp),
        ("Chat.ReadWrite.All", AnyApp),
    ],
    delegated: &[
        ("ChatMessage.Read", AnyApp),
        ("Chat.Read", AnyApp),
        ("Chat.ReadWrite", AnyApp),
    ],
};

pub const SEND_CHAT_MESSAGES: Permission = Permission {
    application: &[],
    delegated: &[("ChatMessage.Send", AnyApp), ("Chat.ReadWrite", AnyApp)],
};

pub const READ_TEAMS: Permission = Permission {
    application: &[
        ("Team.ReadBasic.All", AnyApp),
        ("TeamSettings.Read.All", AnyApp),
        ("Group.Read.All", AnyApp),
        ("Directory.Read.All", AnyApp),
    ],
    delegated: &[
        ("Team.ReadBasic.All", AnyApp),
        ("TeamSettings.Read.All", AnyApp),
        ("Group.Read.All", AnyApp),
        ("Directory.Read.All", AnyApp),
    ],
};

pub const READ_CHANNEL_MESSAGES: Permission = Permission {
    application: &[
        ("ChannelMessage.Read.All", AnyApp),
        ("Group.Read.All", AnyApp),
    ],
    delegated: &[
        ("ChannelMessage.Read.All", AnyApp),
        ("Group.Read.All", AnyApp),
    ],
};

pub const SEND_CHANNEL_MESSAGES: Permission = Permission {
    application: &[],
    delegated: &[
        ("ChannelMessage.Send", AnyApp),
        ("Group.ReadWrite.All", AnyApp),
    ],
};

impl Caller {
    pub fn is_app_only(&self) -> bool {
        self.user.is_none()
    }

    /// Checks the caller holds one of `permission`'s roles (or scopes) and tells how far it reaches.
    /// The broadest grant wins when several are held.
    pub fn authorize(&self, permission: &Permission) -> Result<Reach, TenantError> {
        let (allowed, held) = if self.is_app_only() {
            (permission.application, &self.roles)
        } else {
            (permission.delegated, &self.scopes)
        };
        let mut reach = None;
        for (name, r) in allowed {
            if held.iter().any(|h| h.eq_ignore_ascii_case(name)) {
                reach = match (reach, r) {
                    (Some(AnyApp), _) | (_, AnyApp) => Some(AnyApp),
                    _ => Some(OwnAppOnly),
                };
            }
        }
        reach.ok_or_else(|| TenantError::MissingRole {
            required: allowed
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", "),
            held: held.join(", "),
            delegated: !self.is_app_only(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(roles: &[&str]) -> Caller {
        Caller {
            tenant: Uuid::nil(),
            app_id: Uuid::nil(),
            roles: roles.iter().map(|s| s.to_string()).collect(),
            scopes: vec![],
            user: None,
        }
    }

    #[test]
    fn self_role_reaches_own_app_only_and_broad_role_wins() {
        let c = app(&["TeamsAppInstallation.ReadWriteSelfForUser.All"]);
        assert_eq!(c.authorize(&WRITE_USER_INSTALLATIONS), Ok(OwnAppOnly));
        let c = app(&[
            "TeamsAppInstallation.ReadWriteSelfForUser.All",
            "TeamsAppInstallation.ReadWriteForUser.All",
        ]);
        assert_eq!(c.authorize(&WRITE_USER_INSTALLATIONS), Ok(AnyApp));
    }

    #[test]
    fn missing_role_names_required_and_held_roles() {
        let err = app(&["Chat.Read.All"])
            .authorize(&WRITE_USER_INSTALLATIONS)
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("TeamsAppInstallation.ReadWriteForUser.All"),
            "{msg}"
        );
        assert!(
            msg.contains("Roles on the request 'Chat.Read.All'"),
            "{msg}"
        );
    }

    #[test]
    fn delegated_tokens_are_checked_against_scopes() {
        let mut c = app(&["TeamsAppInstallation.ReadWriteForUser.All"]);
        c.user = Some(Uuid::nil());
        assert!(c.authorize(&WRITE_USER_INSTALLATIONS).is_err());
        let msg = c
            .authorize(&WRITE_USER_INSTALLATIONS)
            .unwrap_err()
            .to_string();
        assert!(
            msg.starts_with("Missing scope permissions on the request."),
            "{msg}"
        );
        assert!(msg.contains("Scopes on the request ''"), "{msg}");
        c.scopes = vec!["TeamsAppInstallation.ReadWriteForUser".into()];
        assert_eq!(c.authorize(&WRITE_USER_INSTALLATIONS), Ok(AnyApp));
    }
}
