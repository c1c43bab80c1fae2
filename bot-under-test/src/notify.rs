//! `POST /api/notify`: a notification to everyone the bot knows, to a list of users, or as a new
//! thread in teams' General channels, with a per-recipient outcome.

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::cards::{self, NotificationContent};
use crate::connector::ConnectorError;
use crate::state::{BotState, Delivery, Outcome};
use crate::store::{StoreError, Team, User};

/// The body of `POST /api/notify`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NotifyRequest {
    #[serde(default)]
    pub text: Option<String>,
    /// An Adaptive Card (JSON) to attach.
    #[serde(default)]
    pub card: Option<Value>,
    /// Entra object ids, UPNs or `29:` ids; absent means everyone the bot knows.
    #[serde(default)]
    pub users: Option<Vec<String>>,
    #[serde(default)]
    pub title: Option<String>,
    /// What happened, to what.
    #[serde(default)]
    pub what: Option<String>,
    /// Who did it.
    #[serde(default)]
    pub who: Option<String>,
    /// What the reader should do.
    #[serde(default)]
    pub action: Option<String>,
    /// Post to the General channel of every team the bot is in (or of `teamId`).
    #[serde(default)]
    pub channel: bool,
    #[serde(default)]
    pub team_id: Option<String>,
}

impl NotifyRequest {
    pub fn content(&self) -> NotificationContent {
        NotificationContent {
            title: self.title.clone(),
            text: self.text.clone(),
            what: self.what.clone(),
            who: self.who.clone(),
            action: self.action.clone(),
            card: self.card.clone(),
        }
    }
}

/// One recipient's outcome.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RecipientResult {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aad_object_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub team_id: Option<String>,
    pub outcome: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub activity_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl RecipientResult {
    pub fn for_user(requested: &str, user: Option<&User>, delivery: Delivery) -> Self {
        RecipientResult {
            user: Some(requested.to_owned()),
            aad_object_id: user.and_then(|u| u.aad_object_id.clone()),
            team_id: None,
            outcome: delivery.outcome,
            conversation_id: delivery.conversation_id,
            activity_id: delivery.activity_id,
            reason: delivery.reason,
        }
    }
}

/// Counts by outcome, and every result.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Report {
    pub sent: usize,
    pub opted_out: usize,
    pub blocked: usize,
    pub not_installed: usize,
    pub failed: usize,
    /// Install only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub already_welcomed: Option<usize>,
    /// Install only: users the app was newly installed for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub installed: Option<usize>,
    pub results: Vec<RecipientResult>,
}

impl Report {
    pub fn from_results(results: Vec<RecipientResult>) -> Report {
        let mut report = Report::default();
        for result in &results {
            match result.outcome {
                Outcome::Sent => report.sent += 1,
                Outcome::OptedOut => report.opted_out += 1,
                Outcome::Blocked => report.blocked += 1,
                Outcome::NotInstalled => report.not_installed += 1,
                Outcome::Failed => report.failed += 1,
                Outcome::AlreadyWelcomed => {
                    *report.already_welcomed.get_or_insert(0) += 1;
                }
            }
        }
        report.results = results;
        report
    }
}

/// Sends the notification and reports every recipient's outcome.
pub async fn notify(state: &BotState, request: &NotifyRequest) -> Result<Report, StoreError> {
    let activity = cards::notification(&request.content());
    if request.channel || request.team_id.is_some() {
        return notify_channels(state, request, activity).await;
    }
    let targets: Vec<(String, Option<User>)> = match &request.users {
        Some(ids) => {
            let mut targets = Vec::with_capacity(ids.len());
            for id in ids {
                targets.push((id.clone(), state.store.find_user(id.trim())?));
            }
            targets
        }
        None => state
            .store
            .users()?
            .into_iter()
            .map(|u| (u.display_id(), Some(u)))
            .collect(),
    };
    let results = futures::stream::iter(targets)
        .map(|(requested, user)| {
            let activity = activity.clone();
            async move {
                match &user {
                    None => RecipientResult::for_user(
                        &requested,
                        None,
                        Delivery::skipped(
                            Outcome::NotInstalled,
                            "unknown user: the bot has no conversation with them",
                        ),
                    ),
                    Some(u) => {
                        let delivery = state.deliver_to_user(u, activity, true).await;
                        RecipientResult::for_user(&requested, Some(u), delivery)
                    }
                }
            }
        })
        .buffered(state.config.max_concurrency.max(1))
        .collect::<Vec<_>>()
        .await;
    Ok(Report::from_results(results))
}

/// Posts the notification as a new thread in each team's General channel.
async fn notify_channels(
    state: &BotState,
    request: &NotifyRequest,
    activity: Value,
) -> Result<Report, StoreError> {
    let teams: Vec<Team> = match &request.team_id {
        Some(team_id) => vec![state.store.team(team_id)?.unwrap_or_else(|| Team {
            team_id: team_id.clone(),
            name: None,
            aad_group_id: None,
            tenant_id: None,
            service_url: state.config.default_service_url.clone(),
        })],
        None => state.store.teams()?,
    };
    let mut results = Vec::with_capacity(teams.len());
    for team in teams {
        let tenant_id = team
            .tenant_id
            .clone()
            .unwrap_or_else(|| state.config.tenant_id.clone());
        let parameters = json!({
            "bot": { "id": state.bot_id(), "name": state.config.bot_name },
            "isGroup": true,
            "tenantId": tenant_id,
            "channelData": { "channel": { "id": team.team_id }, "tenant": { "id": tenant_id } },
            "activity": state.addressed(activity.clone(), &team.team_id),
        });
        let delivery = match state
            .connector
            .create_conversation(&team.service_url, &parameters, None)
            .await
        {
            Ok(created) => Delivery {
                outcome: Outcome::Sent,
                conversation_id: Some(created.id),
                activity_id: created.activity_id,
                reason: None,
            },
            Err(error) => {
                let outcome = match &error {
                    ConnectorError::NotInstalled { .. } => {
                        // The bot is gone from this team: stop posting there.
                        state.store.remove_team(&team.team_id)?;
                        Outcome::NotInstalled
                    }
                    ConnectorError::Blocked(_) => Outcome::Blocked,
                    _ => Outcome::Failed,
                };
                Delivery {
                    outcome,
                    conversation_id: None,
                    activity_id: None,
                    reason: Some(error.reason()),
                }
            }
        };
        results.push(RecipientResult {
            user: None,
            aad_object_id: None,
            team_id: Some(team.team_id.clone()),
            outcome: delivery.outcome,
            conversation_id: delivery.conversation_id,
            activity_id: delivery.activity_id,
            reason: delivery.reason,
        });
    }
    Ok(Report::from_results(results))
}
