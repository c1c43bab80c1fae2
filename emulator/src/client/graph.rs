//! Graph as a bot (app-only) or a user calls it: lists, the proactive-install flow, chats and
//! their messages.

use super::{ClientError, EmulatorClient, Installation, Reply, encode};
use reqwest::Method;
use serde_json::{Value, json};

impl EmulatorClient {
    /// A Graph call with the client's token; any status is an answer.
    pub async fn graph(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Reply, ClientError> {
        let token = self.graph_bearer().await?;
        self.call(method, &self.graph_url(path), Some(&token), body)
            .await
    }

    /// `GET` a Graph resource; a status other than 2xx is an error.
    pub async fn graph_get(&self, path: &str) -> Result<Value, ClientError> {
        self.graph(Method::GET, path, None).await?.success()
    }

    /// `POST` to Graph; answers the body (`Null` when empty, as after an install).
    pub async fn graph_post(&self, path: &str, body: &Value) -> Result<Value, ClientError> {
        self.graph(Method::POST, path, Some(body)).await?.success()
    }

    pub async fn graph_delete(&self, path: &str) -> Result<(), ClientError> {
        self.graph(Method::DELETE, path, None)
            .await?
            .success()
            .map(|_| ())
    }

    /// Every item of a Graph collection, following `@odata.nextLink`.
    pub async fn graph_list(&self, path: &str) -> Result<Vec<Value>, ClientError> {
        let mut items = Vec::new();
        let mut next = Some(path.to_string());
        while let Some(path) = next.take() {
            let page = self.graph_get(&path).await?;
            items.extend(page["value"].as_array().cloned().unwrap_or_default());
            next = page["@odata.nextLink"].as_str().map(str::to_owned);
        }
        Ok(items)
    }

    /// A user's object id, read through Graph (once per client).
    pub async fn user_id(&self, user: &str) -> Result<String, ClientError> {
        let upn = self.upn(user);
        if let Some(id) = self
            .cache
            .user_ids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&upn)
        {
            return Ok(id.clone());
        }
        let found = self.graph_get(&format!("users/{}", encode(&upn))).await?;
        let id = found["id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| ClientError::Unexpected(format!("no id in {found}")))?;
        self.cache
            .user_ids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(upn, id.clone());
        Ok(id)
    }

    /// The catalog id of the bot's app, looked up by its manifest id (`externalId`), once.
    pub async fn catalog_app_id(&self) -> Result<String, ClientError> {
        let manifest = self.bot.manifest_id;
        Self::cached(&self.cache.catalog_id, async {
            let apps = self
                .graph_list(&format!(
                    "appCatalogs/teamsApps?$filter=externalId eq '{manifest}'"
                ))
                .await?;
            apps.first()
                .and_then(|a| a["id"].as_str())
                .map(str::to_owned)
                .ok_or_else(|| {
                    ClientError::Unexpected(format!(
                        "no app with manifest id {manifest} in the catalog"
                    ))
                })
        })
        .await
    }

    /// `{"teamsApp@odata.bind": "https://graph.microsoft.com/v1.0/appCatalogs/teamsApps/{id}"}`.
    pub fn bind(catalog_id: &str) -> Value {
        json!({
            "teamsApp@odata.bind":
                format!("https://graph.microsoft.com/v1.0/appCatalogs/teamsApps/{catalog_id}")
        })
    }

    /// Installs the bot's app for a user, the way a proactive bot does: finds the app in the
    /// catalog by manifest id, `POST`s the installation, then reads its id and its chat.
    pub async fn install_for_user(&self, user: &str) -> Result<Installation, ClientError> {
        let catalog = self.catalog_app_id().await?;
        let installs = format!("users/{}/teamwork/installedApps", encode(&self.upn(user)));
        self.graph_post(&installs, &Self::bind(&catalog)).await?;
        let id = self.installation_for_user(user).await?.ok_or_else(|| {
            ClientError::Unexpected(format!("no installation for {user} after the install"))
        })?;
        let chat = self.graph_get(&format!("{installs}/{id}/chat")).await?;
        let chat_id = chat["id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| ClientError::Unexpected(format!("no chat id in {chat}")))?;
        Ok(Installation { id, chat_id })
    }

    /// The id of the user's installation of the bot's app, if there is one.
    pub async fn installation_for_user(&self, user: &str) -> Result<Option<String>, ClientError> {
        let found = self
            .graph_list(&format!(
                "users/{}/teamwork/installedApps?$expand=teamsApp&$filter=teamsApp/externalId eq '{}'",
                encode(&self.upn(user)),
                self.bot.manifest_id
            ))
            .await?;
        Ok(found
            .first()
            .and_then(|i| i["id"].as_str())
            .map(str::to_owned))
    }

    /// Removes the user's installation of the bot's app.
    pub async fn uninstall_for_user(&self, user: &str) -> Result<(), ClientError> {
        let installation = self.installation_for_user(user).await?.ok_or_else(|| {
            ClientError::Unexpected(format!("the bot's app is not installed for {user}"))
        })?;
        self.graph_delete(&format!(
            "users/{}/teamwork/installedApps/{installation}",
            encode(&self.upn(user))
        ))
        .await
    }

    /// Installs the bot's app in a team (by group id).
    pub async fn install_for_team(&self, team_id: &str) -> Result<(), ClientError> {
        let catalog = self.catalog_app_id().await?;
        self.graph_post(
            &format!("teams/{team_id}/installedApps"),
            &Self::bind(&catalog),
        )
        .await
        .map(|_| ())
    }

    /// The id of the team's installation of the bot's app, if there is one.
    pub async fn installation_for_team(
        &self,
        team_id: &str,
    ) -> Result<Option<String>, ClientError> {
        let manifest = self.bot.manifest_id.to_string();
        Ok(self
            .graph_list(&format!("teams/{team_id}/installedApps?$expand=teamsApp"))
            .await?
            .into_iter()
            .find(|i| i["teamsApp"]["externalId"] == manifest.as_str())
            .and_then(|i| i["id"].as_str().map(str::to_owned)))
    }

    /// Removes the team's installation of the bot's app.
    pub async fn uninstall_for_team(&self, team_id: &str) -> Result<(), ClientError> {
        let installation = self.installation_for_team(team_id).await?.ok_or_else(|| {
            ClientError::Unexpected(format!("the bot's app is not installed in team {team_id}"))
        })?;
        self.graph_delete(&format!("teams/{team_id}/installedApps/{installation}"))
            .await
    }

    /// The Graph id of the user's 1:1 chat with a bot, if it exists.
    pub async fn chat_with_bot(&self, user: &str) -> Result<Option<String>, ClientError> {
        let user = self.user_id(user).await?;
        let chats = self.graph_list(&format!("users/{user}/chats")).await?;
        Ok(chats
            .iter()
            .find(|c| c["chatType"] == "oneOnOne")
            .and_then(|c| c["id"].as_str())
            .map(str::to_owned))
    }

    /// The messages of a chat, newest first.
    pub async fn chat_messages(&self, chat_id: &str) -> Result<Vec<Value>, ClientError> {
        self.graph_list(&format!("chats/{}/messages", encode(chat_id)))
            .await
    }

    /// The messages the bot sent in the user's 1:1 chat, newest first (none without a chat).
    pub async fn bot_messages_to(&self, user: &str) -> Result<Vec<Value>, ClientError> {
        let Some(chat) = self.chat_with_bot(user).await? else {
            return Ok(vec![]);
        };
        let bot = self.bot.app_id.to_string();
        Ok(self
            .chat_messages(&chat)
            .await?
            .into_iter()
            .filter(|m| m["from"]["application"]["id"] == bot.as_str())
            .collect())
    }

    /// The top-level messages of a team's channel, newest first.
    pub async fn channel_messages(
        &self,
        team_id: &str,
        channel_id: &str,
    ) -> Result<Vec<Value>, ClientError> {
        self.graph_list(&format!(
            "teams/{team_id}/channels/{}/messages",
            encode(channel_id)
        ))
        .await
    }
}
