//! The act steps of a scenario: what the runner does to the world (install, say, post, block,
//! call the bot or Graph, inject a fault), through the same doors a bot or a user would use.

use super::expect::truncate;
use super::matching::{interpolate_value, parse_duration, partial_match};
use super::model::{Actor, HttpStep, InstallStep, MemberStep, PostStep, SayStep, UserStep};
use super::queries::{self, administrator, app_secret, chat_with_bot, read_tenant};
use super::run::{Failure, Run};
use crate::limits::{Fault, Target};
use serde_json::{Value, json};
use std::time::Duration;

impl Run<'_> {
    pub(super) async fn add_member(&mut self, m: &MemberStep) -> Result<(), Failure> {
        let path = format!("/_emulator/teams/{}/members", self.text(&m.team)?);
        let user = self.text(&m.user)?;
        self.control("POST", &path, Some(json!({"user": user})))
            .await
    }

    pub(super) async fn remove_member(&mut self, m: &MemberStep) -> Result<(), Failure> {
        let path = format!(
            "/_emulator/teams/{}/members/{}",
            self.text(&m.team)?,
            self.text(&m.user)?
        );
        self.control("DELETE", &path, None).await
    }

    pub(super) async fn say(&mut self, s: &SayStep) -> Result<(), Failure> {
        let path = format!("/_emulator/users/{}/messages", self.text(&s.user)?);
        let text = self.text(&s.text)?;
        self.control("POST", &path, Some(json!({"text": text})))
            .await
    }

    pub(super) async fn post(&mut self, p: &PostStep) -> Result<(), Failure> {
        let channel = p.channel.clone().unwrap_or_else(|| "General".into());
        let path = format!(
            "/_emulator/teams/{}/channels/{}/messages",
            self.text(&p.team)?,
            percent(&channel)
        );
        let body = json!({"from": self.text(&p.user)?, "text": self.text(&p.text)?, "mentionBot": p.mention_bot, "mentions": p.mentions});
        self.control("POST", &path, Some(body)).await
    }

    pub(super) async fn block(&mut self, u: &UserStep) -> Result<(), Failure> {
        self.control(
            "POST",
            &format!("/_emulator/users/{}/block", self.text(&u.user)?),
            None,
        )
        .await
    }

    pub(super) async fn unblock(&mut self, u: &UserStep) -> Result<(), Failure> {
        self.control(
            "DELETE",
            &format!("/_emulator/users/{}/block", self.text(&u.user)?),
            None,
        )
        .await
    }

    pub(super) async fn call_bot(&mut self, h: &HttpStep) -> Result<(), Failure> {
        let url = format!("{}{}", self.bot.url, self.text(&h.path)?);
        self.http_step(h, url, None).await
    }

    pub(super) async fn graph(&mut self, h: &HttpStep) -> Result<(), Failure> {
        let path = self.text(&h.path)?;
        let url = if path.starts_with("/v1.0") || path.starts_with("/beta") {
            format!("{}{path}", self.emulator.url())
        } else {
            format!("{}{path}", self.emulator.graph_url())
        };
        let token = self.token(h.actor).await?;
        self.http_step(h, url, Some(token)).await
    }

    pub(super) async fn wait(&mut self, d: &str) -> Result<(), Failure> {
        tokio::time::sleep(parse_duration(d).map_err(Failure::plain)?).await;
        Ok(())
    }

    async fn token(&mut self, actor: Actor) -> Result<String, Failure> {
        if let Some(t) = self.tokens.get(&actor) {
            return Ok(t.clone());
        }
        let (secret, admin) = read_tenant(self.emulator.state(), |t| {
            let secret = app_secret(t, self.bot.app_id)
                .unwrap_or_default()
                .to_string();
            (secret, administrator(t))
        });
        // the client asks the first tenant's token endpoint: the scenario's tenant
        let client = self.emulator.client();
        let token = match actor {
            Actor::App => {
                client
                    .app_token(self.bot.app_id, &secret, crate::client::GRAPH_SCOPE)
                    .await
            }
            Actor::Admin => {
                let (upn, password) = admin.ok_or_else(|| {
                    Failure::plain("the tenant has no administrator (a user with admin: true)")
                })?;
                client
                    .password_token(self.bot.app_id, &upn, &password)
                    .await
            }
        }
        .map_err(|e| Failure::new("a token from the emulator", vec![e.to_string()]))?;
        self.tokens.insert(actor, token.clone());
        Ok(token)
    }

    async fn call(
        &mut self,
        method: &str,
        url: &str,
        token: Option<String>,
        body: Option<Value>,
        timeout: Duration,
    ) -> Result<(u16, Value), Failure> {
        let method = reqwest::Method::from_bytes(method.to_ascii_uppercase().as_bytes())
            .map_err(|_| Failure::plain(format!("bad method {method}")))?;
        let mut request = self.http.request(method.clone(), url).timeout(timeout);
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        if let Some(b) = body {
            request = request.json(&b);
        }
        let response = request
            .send()
            .await
            .map_err(|e| Failure::plain(format!("{method} {url} failed: {e}")))?;
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(if text.is_empty() {
            Value::Null
        } else {
            Value::String(text)
        });
        Ok((status, body))
    }

    fn catalog_id(&self) -> Result<String, Failure> {
        self.context["bot"]["catalog_id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| Failure::plain("the bot's app is not in the catalog"))
    }

    /// Queues a fault, its target's `${…}` filled in, named as the limits know it.
    pub(super) fn fault(&mut self, f: &Fault) -> Result<(), Failure> {
        let target = match &f.target {
            Target::Any => Target::Any,
            Target::About(handle) => Target::About(self.text(handle)?),
            Target::User(user) => Target::User(self.text(user)?),
            Target::Team { team, channel } => Target::Team {
                team: self.text(team)?,
                channel: channel.as_deref().map(|c| self.text(c)).transpose()?,
            },
            Target::Conversation(id) => Target::Conversation(self.text(id)?),
        };
        let fault = Fault {
            target,
            ..f.clone()
        };
        self.emulator
            .state()
            .inject_fault(&fault)
            .map_err(Failure::plain)
    }

    async fn control(
        &mut self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<(), Failure> {
        let url = format!("{}{path}", self.emulator.url());
        let (status, answer) = self
            .call(method, &url, None, body, Duration::from_secs(30))
            .await?;
        self.set_last(json!({"status": status, "body": answer}));
        if (200..300).contains(&status) {
            Ok(())
        } else {
            Err(Failure::new(
                format!("the emulator to accept {method} {path}"),
                vec![format!("{status} {answer}")],
            ))
        }
    }

    pub(super) async fn install(&mut self, s: &InstallStep, install: bool) -> Result<(), Failure> {
        let token = self.token(s.actor).await?;
        let catalog = self.catalog_id()?;
        let bind = json!({"teamsApp@odata.bind": format!("https://graph.microsoft.com/v1.0/appCatalogs/teamsApps/{catalog}")});
        let graph = self.emulator.graph_url();
        let timeout = Duration::from_secs(30);
        let (what, collection, default_status) = match (&s.user, &s.team) {
            (Some(u), _) => {
                let u = self.text(u)?;
                let id = read_tenant(self.emulator.state(), |t| {
                    queries::user(t, &u).map(|x| x.id.to_string())
                })
                .map_err(Failure::plain)?;
                (
                    format!("user {u}"),
                    format!("{graph}/users/{id}/teamwork/installedApps"),
                    if install { 201 } else { 204 },
                )
            }
            (None, Some(t)) => {
                let t = self.text(t)?;
                let id = read_tenant(self.emulator.state(), |tenant| {
                    queries::team(tenant, &t).map(|x| x.id.to_string())
                })
                .map_err(Failure::plain)?;
                (
                    format!("team {t}"),
                    format!("{graph}/teams/{id}/installedApps"),
                    if install { 200 } else { 204 },
                )
            }
            (None, None) => return Err(Failure::plain("install needs a user or a team")),
        };
        let expected = s.expect_status.unwrap_or(default_status);
        let (status, body) = if install {
            self.call("POST", &collection, Some(token), Some(bind), timeout)
                .await?
        } else {
            let filter = format!("{collection}?$filter=teamsApp/id%20eq%20'{catalog}'");
            let (listed, list) = self
                .call("GET", &filter, Some(token.clone()), None, timeout)
                .await?;
            if listed != 200 {
                // the lookup itself failed (401, 403, …): say so, not "not installed"
                self.set_last(json!({"status": listed, "body": list}));
                return Err(Failure::new(
                    format!("Graph to list the installations of {what} before uninstalling"),
                    vec![format!("{listed} {list}")],
                ));
            }
            match list["value"][0]["id"].as_str() {
                Some(installation) => {
                    self.call(
                        "DELETE",
                        &format!("{collection}/{installation}"),
                        Some(token),
                        None,
                        timeout,
                    )
                    .await?
                }
                None => (
                    404,
                    json!({"error": {"code": "NotFound", "message": format!("the app is not installed for {what}")}}),
                ),
            }
        };
        let mut last = json!({"status": status, "body": body});
        if let Some(u) = &s.user {
            let u = self.text(u)?;
            let chat = read_tenant(self.emulator.state(), |t| {
                let user = queries::user(t, &u).ok()?;
                let chat = chat_with_bot(t, user.id, self.bot.app_id)?;
                Some((user.id, chat.id.clone(), chat.conversation_id.clone()))
            });
            if let Some((user, chat_id, conversation_id)) = chat {
                last["chat_id"] = json!(chat_id);
                last["conversation_id"] = json!(conversation_id);
                last["installation_id"] = json!(crate::ids::installation_id(
                    &user.to_string(),
                    catalog.parse().unwrap_or_default()
                ));
            }
        }
        self.set_last(last);
        if status == expected {
            Ok(())
        } else {
            let verb = if install { "install" } else { "uninstall" };
            Err(Failure::new(
                format!("Graph to answer {expected} to the {verb} for {what}"),
                vec![format!("{status} {body}")],
            ))
        }
    }

    async fn http_step(
        &mut self,
        h: &HttpStep,
        url: String,
        token: Option<String>,
    ) -> Result<(), Failure> {
        let body = match &h.body {
            Some(b) => Some(interpolate_value(b, &self.context).map_err(Failure::plain)?),
            None => None,
        };
        let timeout = h
            .timeout
            .as_deref()
            .map(parse_duration)
            .transpose()
            .map_err(Failure::plain)?
            .unwrap_or(Duration::from_secs(60));
        let (status, answer) = self.call(&h.method, &url, token, body, timeout).await?;
        let last = json!({"status": status, "body": answer});
        if let Some(name) = &h.save {
            self.context["saved"][name] = last.clone();
        }
        self.set_last(last);
        let status_ok = match h.expect_status {
            Some(s) => status == s,
            None => (200..300).contains(&status),
        };
        let expected_json = match &h.expect_json {
            Some(j) => Some(interpolate_value(j, &self.context).map_err(Failure::plain)?),
            None => None,
        };
        let json_ok = expected_json
            .as_ref()
            .is_none_or(|j| partial_match(j, &answer));
        if status_ok && json_ok {
            return Ok(());
        }
        let mut expected = format!(
            "{} {} to answer {}",
            h.method.to_ascii_uppercase(),
            h.path,
            h.expect_status
                .map(|s| s.to_string())
                .unwrap_or_else(|| "2xx".into())
        );
        if let Some(j) = expected_json {
            expected.push_str(&format!(" with JSON containing {j}"));
        }
        Err(Failure::new(
            expected,
            vec![format!("{status} {}", truncate(&answer.to_string(), 2000))],
        ))
    }
}

fn percent(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}
