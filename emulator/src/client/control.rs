//! The emulator's control API (`/_emulator/…`): acting as Teams' users, and what was delivered.

use super::{ClientError, EmulatorClient, Reply, encode};
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;

impl EmulatorClient {
    /// A call to the control API (`/_emulator/{path}`); any status is an answer.
    pub async fn control(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Reply, ClientError> {
        let url = format!("{}/_emulator/{}", self.base, path.trim_start_matches('/'));
        self.call(method, &url, None, body).await
    }

    /// `POST /_emulator/{path}`; a status other than 2xx is an error.
    pub async fn control_post(&self, path: &str, body: &Value) -> Result<Value, ClientError> {
        self.control(Method::POST, path, Some(body))
            .await?
            .success()
    }

    /// The user writes `text` in their 1:1 chat with the bot; answers the Graph `chatMessage`.
    pub async fn user_says(&self, user: &str, text: &str) -> Result<Value, ClientError> {
        self.control_post(
            &format!("users/{}/messages", encode(user)),
            &json!({ "text": text }),
        )
        .await
    }

    /// The user writes in a team's channel (by name or id), mentioning the bot or not.
    pub async fn user_says_in_channel(
        &self,
        team: &str,
        channel: &str,
        user: &str,
        text: &str,
        mention_bot: bool,
    ) -> Result<Value, ClientError> {
        self.control_post(
            &format!(
                "teams/{}/channels/{}/messages",
                encode(team),
                encode(channel)
            ),
            &json!({"from": user, "text": text, "mentionBot": mention_bot}),
        )
        .await
    }

    /// The user joins the team; bots installed there hear `teamMemberAdded`.
    pub async fn add_team_member(&self, team: &str, user: &str) -> Result<(), ClientError> {
        self.control_post(
            &format!("teams/{}/members", encode(team)),
            &json!({ "user": user }),
        )
        .await
        .map(|_| ())
    }

    /// The user leaves the team; bots installed there hear `teamMemberRemoved`.
    pub async fn remove_team_member(&self, team: &str, user: &str) -> Result<(), ClientError> {
        self.control(
            Method::DELETE,
            &format!("teams/{}/members/{}", encode(team), encode(user)),
            None,
        )
        .await?
        .success()
        .map(|_| ())
    }

    /// The user blocks the bot: its sends to them answer 403 `ConversationBlockedByUser`.
    pub async fn block_bot(&self, user: &str) -> Result<(), ClientError> {
        self.control_post(&format!("users/{}/block", encode(user)), &json!({}))
            .await
            .map(|_| ())
    }

    /// `GET /_emulator/deliveries`, once queued deliveries settled (up to `wait`):
    /// `{"pending": N, "value": [record…]}`.
    pub async fn deliveries(&self, wait: Duration) -> Result<Value, ClientError> {
        self.control(
            Method::GET,
            &format!("deliveries?wait_ms={}", wait.as_millis()),
            None,
        )
        .await?
        .success()
    }
}
