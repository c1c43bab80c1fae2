//! The services one running bot shares between requests, and the one way of messaging a user
//! proactively ([`BotState::deliver_to_user`]), which notify, install and welcomes all use.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::{Mutex, Semaphore};

use crate::auth::ChannelValidator;
use crate::config::Config;
use crate::connector::{ConnectorClient, ConnectorError};
use crate::graph::GraphClient;
use crate::retry::RetryPolicy;
use crate::store::{ConversationReference, Scope, Store, StoreError, User, UserStatus};
use crate::token::TokenProvider;

/// The final outcome of messaging one user (or one channel).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Sent,
    OptedOut,
    Blocked,
    NotInstalled,
    Failed,
    /// Install only: the user already had the conversation reference and the welcome.
    AlreadyWelcomed,
}

/// A delivery's outcome with what the report needs.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub outcome: Outcome,
    pub conversation_id: Option<String>,
    pub activity_id: Option<String>,
    pub reason: Option<String>,
}

impl Delivery {
    pub fn skipped(outcome: Outcome, reason: &str) -> Delivery {
        Delivery {
            outcome,
            conversation_id: None,
            activity_id: None,
            reason: Some(reason.to_owned()),
        }
    }
}

pub struct BotState {
    pub config: Config,
    pub store: Store,
    pub connector: ConnectorClient,
    pub graph: GraphClient,
    /// `None` when the bot has no app id (inbound activities are not validated).
    pub validator: Option<ChannelValidator>,
    /// The app's catalog id once looked up.
    pub catalog_app_id: Mutex<Option<String>>,
}

impl std::fmt::Debug for BotState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BotState")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap_or_default()
}

impl BotState {
    pub fn new(config: Config) -> Result<Arc<BotState>, StoreError> {
        let store = Store::open(&config.database_path)?;
        let retry = RetryPolicy {
            max_attempts: config.max_attempts.max(1),
            base_delay: config.retry_base_delay,
            max_delay: config.retry_max_delay,
        };
        let permits = Arc::new(Semaphore::new(config.max_concurrency.max(1)));
        // One HTTP client per service: login, Graph, Connector (and the channel's key server).
        let tokens = Arc::new(TokenProvider::new(
            http_client(),
            &config.login_url,
            &config.app_id,
            &config.app_password,
            retry.clone(),
        ));
        let connector = ConnectorClient::new(
            http_client(),
            config.authenticates().then(|| tokens.clone()),
            &config.connector_token_tenant,
            retry.clone(),
            permits.clone(),
        );
        let graph = GraphClient::new(
            http_client(),
            tokens,
            &config.tenant_id,
            &config.graph_url,
            retry,
            permits,
        );
        let validator = config.authenticates().then(|| {
            ChannelValidator::new(http_client(), &config.openid_metadata_url, &config.app_id)
        });
        Ok(Arc::new(BotState {
            catalog_app_id: Mutex::new(config.catalog_app_id.clone()),
            config,
            store,
            connector,
            graph,
            validator,
        }))
    }

    /// The bot's own channel account id.
    pub fn bot_id(&self) -> String {
        format!("28:{}", self.config.app_id)
    }

    /// The activity as sent to a conversation: from the bot, to the conversation.
    pub fn addressed(&self, mut activity: Value, conversation_id: &str) -> Value {
        activity["from"] = json!({ "id": self.bot_id(), "name": self.config.bot_name });
        activity["conversation"] = json!({ "id": conversation_id });
        activity
    }

    /// Sends `activity` to a stored conversation reference.
    pub async fn send_to_reference(
        &self,
        reference: &ConversationReference,
        activity: Value,
    ) -> Result<String, ConnectorError> {
        let activity = self.addressed(activity, &reference.conversation_id);
        self.connector
            .send_to_conversation(
                &reference.service_url,
                &reference.conversation_id,
                &activity,
            )
            .await
    }

    /// Messages a user 1:1: through their stored conversation reference, or by creating the
    /// conversation from their `29:` id when the bot knows it (a team roster or a mention).
    /// Blocked and uninstalled users are skipped, and Teams' answers update their status.
    pub async fn deliver_to_user(
        &self,
        user: &User,
        activity: Value,
        respect_opt_out: bool,
    ) -> Delivery {
        if respect_opt_out && user.opted_out {
            return Delivery::skipped(Outcome::OptedOut, "the user opted out");
        }
        match user.status {
            UserStatus::Blocked => {
                return Delivery::skipped(Outcome::Blocked, "the user blocked the bot");
            }
            UserStatus::NotInstalled => {
                return Delivery::skipped(Outcome::NotInstalled, "the app was uninstalled");
            }
            UserStatus::Active => {}
        }
        let reference = match self.store.personal_reference(user.user_key) {
            Ok(Some(reference)) => reference,
            Ok(None) => match self.create_personal_conversation(user).await {
                Ok(Some(reference)) => reference,
                Ok(None) => {
                    return Delivery::skipped(
                        Outcome::NotInstalled,
                        "no conversation reference for this user",
                    );
                }
                Err(error) => return self.delivery_failed(user, None, error),
            },
            Err(error) => return Delivery::skipped(Outcome::Failed, &error.to_string()),
        };
        match self.send_to_reference(&reference, activity).await {
            Ok(activity_id) => Delivery {
                outcome: Outcome::Sent,
                conversation_id: Some(reference.conversation_id),
                activity_id: Some(activity_id).filter(|id| !id.is_empty()),
                reason: None,
            },
            Err(error) => self.delivery_failed(user, Some(reference.conversation_id), error),
        }
    }

    /// Creates (and stores) the 1:1 conversation with a user whose `29:` id the bot knows.
    async fn create_personal_conversation(
        &self,
        user: &User,
    ) -> Result<Option<ConversationReference>, ConnectorError> {
        let Some(teams_user_id) = user.teams_user_id.as_deref() else {
            return Ok(None);
        };
        let service_url = user
            .service_url
            .clone()
            .unwrap_or_else(|| self.config.default_service_url.clone());
        let tenant_id = user
            .tenant_id
            .clone()
            .unwrap_or_else(|| self.config.tenant_id.clone());
        let parameters = json!({
            "bot": { "id": self.bot_id(), "name": self.config.bot_name },
            "isGroup": false,
            "members": [{ "id": teams_user_id }],
            "tenantId": tenant_id,
            "channelData": { "tenant": { "id": tenant_id } }
        });
        // Teams throttles the create as a send to the 1:1 conversation it lands in: pace it
        // with the user's stored conversation when the bot has one, else by the member.
        let known = self
            .store
            .personal_reference(user.user_key)
            .ok()
            .flatten()
            .map(|r| r.conversation_id);
        let created = self
            .connector
            .create_conversation(&service_url, &parameters, known.as_deref())
            .await?;
        let reference = ConversationReference {
            conversation_id: created.id,
            scope: Scope::Personal,
            user_key: Some(user.user_key),
            team_id: None,
            tenant_id: Some(tenant_id),
            service_url: created.service_url.unwrap_or(service_url),
            channel_id: "msteams".to_owned(),
            bot_id: self.bot_id(),
            bot_name: Some(self.config.bot_name.clone()),
        };
        if let Err(error) = self.store.save_reference(&reference) {
            tracing::warn!(%error, "could not store a created conversation reference");
        }
        Ok(Some(reference))
    }

    /// Records what a failed send says about the user and turns it into an outcome.
    pub fn delivery_failed(
        &self,
        user: &User,
        conversation_id: Option<String>,
        error: ConnectorError,
    ) -> Delivery {
        let outcome = match &error {
            ConnectorError::Blocked(_) => {
                self.mark(user.user_key, UserStatus::Blocked);
                Outcome::Blocked
            }
            ConnectorError::NotInstalled { .. } => {
                // An uninstall the bot only learns of now: forget it as if the event had come,
                // so that the next install welcomes the user again.
                if let Err(e) = self.store.record_uninstall(user.user_key) {
                    tracing::warn!(error = %e, "could not record the uninstall");
                }
                Outcome::NotInstalled
            }
            _ => Outcome::Failed,
        };
        tracing::info!(user = %user.display_id(), %error, ?outcome, "delivery did not go through");
        Delivery {
            outcome,
            conversation_id,
            activity_id: None,
            reason: Some(error.reason()),
        }
    }

    fn mark(&self, user_key: i64, status: UserStatus) {
        if let Err(error) = self.store.set_status(user_key, status) {
            tracing::warn!(%error, "could not record a user's status");
        }
    }
}
