//! The Bot Connector as the bot calls it: conversations and activities, with the bot's token
//! when delivery is signed.

use super::{ClientError, EmulatorClient, Reply, encode};
use reqwest::Method;
use serde_json::{Value, json};

impl EmulatorClient {
    async fn connector_bearer(&self) -> Result<Option<String>, ClientError> {
        if !self.signed {
            return Ok(None);
        }
        Self::cached(&self.cache.bot_token, self.bot_token())
            .await
            .map(Some)
    }

    /// A Connector call as the bot (with its token when delivery is signed); any status is an
    /// answer. `path` is under `{serviceUrl}v3/`.
    pub async fn connector(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Reply, ClientError> {
        let token = self.connector_bearer().await?;
        self.call(method, &self.connector_url(path), token.as_deref(), body)
            .await
    }

    /// Opens (or finds) the bot's 1:1 conversation with a user; answers its `a:` id.
    pub async fn create_conversation(&self, user_mri: &str) -> Result<String, ClientError> {
        let body = json!({
            "bot": {"id": format!("28:{}", self.bot.app_id)},
            "isGroup": false,
            "members": [{"id": user_mri}],
            "tenantId": self.tenant.to_string(),
        });
        let created = self
            .connector(Method::POST, "conversations", Some(&body))
            .await?
            .success()?;
        created["id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| ClientError::Unexpected(format!("no conversation id in {created}")))
    }

    /// Sends an activity into a conversation (any id form: `a:`, `19:`, a channel thread);
    /// answers the Connector's `{"id": …}`.
    pub async fn connector_send(
        &self,
        conversation: &str,
        activity: &Value,
    ) -> Result<Value, ClientError> {
        self.connector(
            Method::POST,
            &format!("conversations/{}/activities", encode(conversation)),
            Some(activity),
        )
        .await?
        .success()
    }
}
