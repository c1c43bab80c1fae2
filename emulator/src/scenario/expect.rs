//! The expectations of a scenario: each polls what the emulator recorded until it holds or its
//! deadline passes, and on failure says what it expected and lists what it saw instead.

use super::matching::{interpolate_value, parse_duration, partial_match};
use super::model::{ExpectActivity, ExpectDelivery, ExpectFault, MessageQuery, Since};
use super::queries::{self, chat_with_bot, read_tenant};
use super::run::{Failure, Run, key};
pub use crate::summary::{summarize_activity, truncate, visible_text};
use crate::tenant::Conversation;
use serde_json::Value;
use std::time::{Duration, Instant};

/// How often expectations look again.
pub(super) const POLL_EVERY: Duration = Duration::from_millis(50);
/// How long a count must hold before `expect_count` believes it.
const QUIET_PERIOD: Duration = Duration::from_millis(500);

impl Run<'_> {
    pub(super) async fn expect_activity(&mut self, a: &ExpectActivity) -> Result<(), Failure> {
        let within = self.within(&a.within)?;
        let expected = match &a.matching {
            Some(m) => Some(interpolate_value(m, &self.context).map_err(Failure::plain)?),
            None => None,
        };
        let describe = format!(
            "an activity delivered to the bot{}{}",
            a.kind
                .as_ref()
                .map(|k| format!(" of type '{k}'"))
                .unwrap_or_default(),
            expected
                .as_ref()
                .map(|m| format!(" matching {m}"))
                .unwrap_or_default()
        );
        let since = a.since;
        self.poll(within, &describe, |run| {
            let window = run.deliveries(since);
            // Delivered means the bot took it (2xx): one it refused did not arrive.
            let found = window.iter().any(|r| {
                r.ok && a.kind.as_ref().is_none_or(|k| &r.activity_type == k)
                    && expected
                        .as_ref()
                        .is_none_or(|m| partial_match(m, &r.activity))
            });
            let seen = window
                .iter()
                .map(|r| match (r.ok, r.status) {
                    (true, _) => summarize_activity(&r.activity),
                    (false, Some(status)) => format!(
                        "{} (the bot answered {status})",
                        summarize_activity(&r.activity)
                    ),
                    (false, None) => format!(
                        "{} (not delivered: {})",
                        summarize_activity(&r.activity),
                        r.error.clone().unwrap_or_default()
                    ),
                })
                .collect();
            (found, seen)
        })
        .await
    }

    pub(super) async fn expect_fault(&mut self, e: &ExpectFault) -> Result<(), Failure> {
        // The count must be reached and then hold: a fault may still be firing.
        let within = self.within(&e.within)?;
        let describe = format!("the latest fault to have fired exactly {} time(s)", e.fired);
        let deadline = Instant::now() + within;
        let mut reached: Option<Instant> = None;
        loop {
            let fired = self
                .emulator
                .state()
                .limits
                .faults()
                .last()
                .map(|f| f.fired)
                .unwrap_or(0);
            let seen = vec![format!("fired {fired} time(s)")];
            if fired > e.fired {
                return Err(Failure::new(describe, seen));
            }
            if fired == e.fired {
                if reached.get_or_insert_with(Instant::now).elapsed() >= QUIET_PERIOD {
                    return Ok(());
                }
            } else if Instant::now() >= deadline {
                return Err(Failure::new(describe, seen));
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    }

    pub(super) async fn expect_retries_honoured(&mut self) -> Result<(), Failure> {
        // Retries made by work still under way count too: watch for a moment.
        let deadline = Instant::now() + QUIET_PERIOD * 2;
        loop {
            let early = self.emulator.state().limits.early_retries();
            if !early.is_empty() {
                let seen = early
                    .iter()
                    .map(|e| {
                        format!(
                            "{:?} about {} retried {} ms before its Retry-After had passed",
                            e.operation, e.about, e.early_by_ms
                        )
                    })
                    .collect();
                return Err(Failure::new(
                    "every retry to wait for the Retry-After it was given",
                    seen,
                ));
            }
            if Instant::now() >= deadline {
                return Ok(());
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    }

    pub(super) async fn expect_delivery(&mut self, d: &ExpectDelivery) -> Result<(), Failure> {
        let within = self.within(&d.within)?;
        let describe = format!(
            "a delivery{}{}{}",
            d.kind
                .as_ref()
                .map(|k| format!(" of '{k}'"))
                .unwrap_or_default(),
            d.ok.map(|ok| if ok {
                " that the bot accepted (2xx)"
            } else {
                " that failed"
            })
            .unwrap_or_default(),
            d.status
                .map(|s| format!(" answered {s}"))
                .unwrap_or_default()
        );
        let since = d.since;
        self.poll(within, &describe, |run| {
            let window = run.deliveries(since);
            let found = window.iter().any(|r| {
                d.kind.as_ref().is_none_or(|k| &r.activity_type == k)
                    && d.ok.is_none_or(|ok| r.ok == ok)
                    && d.status.is_none_or(|s| r.status == Some(s))
            });
            let seen = window
                .iter()
                .map(|r| {
                    format!(
                        "{} → {}",
                        r.activity_type,
                        r.status
                            .map(|s| s.to_string())
                            .or(r.error.clone())
                            .unwrap_or_default()
                    )
                })
                .collect();
            (found, seen)
        })
        .await
    }

    /// Deliveries in the window an expectation looks at.
    fn deliveries(&self, since: Since) -> Vec<crate::delivery::DeliveryRecord> {
        let mark = if since == Since::Start {
            0
        } else {
            self.delivery_mark
        };
        let mut records = self.emulator.state().delivery.records();
        records.retain(|r| r.seq > mark);
        records
    }

    fn within(&self, within: &Option<String>) -> Result<Duration, Failure> {
        Ok(within
            .as_deref()
            .map(parse_duration)
            .transpose()
            .map_err(Failure::plain)?
            .unwrap_or(Duration::from_secs(5)))
    }

    /// The conversation an expectation names.
    fn conversation(&self, q: &MessageQuery) -> Result<(Option<Conversation>, String), Failure> {
        if let Some(u) = &q.user {
            let u = self.text(u)?;
            return read_tenant(self.emulator.state(), |t| {
                let user = queries::user(t, &u).map_err(Failure::plain)?;
                let chat = chat_with_bot(t, user.id, self.bot.app_id);
                let label = format!("{}'s chat with the bot", user.display_name);
                Ok((
                    chat.map(|c| Conversation::Personal { chat: c.id.clone() }),
                    label,
                ))
            });
        }
        let team = self.text(q.team.as_deref().unwrap_or_default())?;
        read_tenant(self.emulator.state(), |t| {
            let team = queries::team(t, &team).map_err(Failure::plain)?;
            let channel = queries::channel(team, q.channel.as_deref())
                .ok_or_else(|| Failure::plain("no such channel"))?;
            let label = format!("{} › {}", team.display_name, channel.display_name);
            Ok((
                Some(Conversation::Channel {
                    team: team.id,
                    channel: channel.id.clone(),
                    thread: None,
                }),
                label,
            ))
        })
    }

    /// Bot messages in the window: (matching, all seen as text).
    fn bot_messages(
        &self,
        q: &MessageQuery,
        conversation: &Option<Conversation>,
    ) -> Result<(usize, Vec<String>), Failure> {
        let Some(conversation) = conversation else {
            return Ok((0, vec![]));
        };
        let since = if q.since == Since::Start {
            0
        } else {
            self.message_marks
                .get(&key(conversation))
                .copied()
                .unwrap_or(0)
        };
        let regex = q
            .text_matches
            .as_deref()
            .map(regex::Regex::new)
            .transpose()
            .map_err(|e| Failure::plain(e.to_string()))?;
        let card = match &q.card {
            Some(c) => Some(interpolate_value(c, &self.context).map_err(Failure::plain)?),
            None => None,
        };
        let text_eq = q.text.as_deref().map(|t| self.text(t)).transpose()?;
        let contains = q
            .text_contains
            .as_deref()
            .map(|t| self.text(t))
            .transpose()?;
        let activities = read_tenant(self.emulator.state(), |t| {
            queries::bot_activities(t, conversation, self.bot.app_id, since)
        });
        let mut matching = 0;
        let mut seen = Vec::new();
        for activity in &activities {
            let text = visible_text(activity);
            let attachments: Vec<&Value> = activity
                .get("attachments")
                .and_then(Value::as_array)
                .map(|a| a.iter().collect())
                .unwrap_or_default();
            let ok = text_eq.as_ref().is_none_or(|e| text.trim() == e.trim())
                && contains.as_ref().is_none_or(|c| text.contains(c.as_str()))
                && regex.as_ref().is_none_or(|r| r.is_match(&text))
                && q.attachment_type.as_ref().is_none_or(|ty| {
                    attachments
                        .iter()
                        .any(|a| a["contentType"].as_str() == Some(ty))
                })
                && card
                    .as_ref()
                    .is_none_or(|c| attachments.iter().any(|a| partial_match(c, &a["content"])));
            if ok {
                matching += 1;
            }
            let types: Vec<&str> = attachments
                .iter()
                .filter_map(|a| a["contentType"].as_str())
                .collect();
            let mut line = format!("\"{}\"", truncate(&text.replace('\n', " ⏎ "), 300));
            if !types.is_empty() {
                line.push_str(&format!(" [{}]", types.join(", ")));
            }
            seen.push(line);
        }
        Ok((matching, seen))
    }

    fn describe(q: &MessageQuery) -> String {
        let mut parts = Vec::new();
        if let Some(t) = &q.text {
            parts.push(format!("text \"{t}\""));
        }
        if let Some(t) = &q.text_contains {
            parts.push(format!("text containing \"{t}\""));
        }
        if let Some(t) = &q.text_matches {
            parts.push(format!("text matching /{t}/"));
        }
        if let Some(t) = &q.attachment_type {
            parts.push(format!("an attachment of type {t}"));
        }
        if let Some(c) = &q.card {
            parts.push(format!("a card containing {c}"));
        }
        if parts.is_empty() {
            String::new()
        } else {
            format!(" with {}", parts.join(" and "))
        }
    }

    pub(super) async fn expect_message(&mut self, q: &MessageQuery) -> Result<(), Failure> {
        let within = self.within(&q.within)?;
        let (_, label) = self.conversation(q)?;
        let describe = format!(
            "a bot message in {label}{} within {within:?}",
            Self::describe(q)
        );
        self.poll(within, &describe, |run| {
            match run
                .conversation(q)
                .and_then(|(c, _)| run.bot_messages(q, &c))
            {
                Ok((n, seen)) => (n > 0, seen),
                Err(f) => (false, vec![f.expected]),
            }
        })
        .await
    }

    pub(super) async fn expect_no_message(&mut self, q: &MessageQuery) -> Result<(), Failure> {
        let watch = q
            .watch
            .as_deref()
            .map(parse_duration)
            .transpose()
            .map_err(Failure::plain)?
            .unwrap_or(Duration::from_secs(1));
        let (_, label) = self.conversation(q)?;
        let deadline = Instant::now() + watch;
        loop {
            let (conversation, _) = self.conversation(q)?;
            let (n, seen) = self.bot_messages(q, &conversation)?;
            if n > 0 {
                return Err(Failure::new(
                    format!(
                        "no bot message in {label}{} for {watch:?}",
                        Self::describe(q)
                    ),
                    seen,
                ));
            }
            if Instant::now() >= deadline {
                return Ok(());
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    }

    /// Waits for the count, then for it to stay put a moment: a duplicate often comes right after.
    pub(super) async fn expect_count(&mut self, q: &MessageQuery) -> Result<(), Failure> {
        let within = self.within(&q.within)?;
        let quiet = match &q.watch {
            Some(w) => parse_duration(w).map_err(Failure::plain)?,
            None => within.min(QUIET_PERIOD),
        };
        let wanted = q.messages.unwrap_or(0);
        let (_, label) = self.conversation(q)?;
        let describe = format!(
            "exactly {wanted} bot message(s) in {label}{}",
            Self::describe(q)
        );
        let deadline = Instant::now() + within;
        let mut reached: Option<Instant> = None;
        loop {
            let (conversation, _) = self.conversation(q)?;
            let (n, seen) = self.bot_messages(q, &conversation)?;
            if n > wanted {
                return Err(Failure::new(format!("{describe}, but there are {n}"), seen));
            }
            if n == wanted && self.emulator.state().delivery.pending() == 0 {
                let since = *reached.get_or_insert_with(Instant::now);
                if since.elapsed() >= quiet {
                    return Ok(());
                }
            } else {
                reached = None;
            }
            if Instant::now() >= deadline + quiet {
                return Err(Failure::new(
                    format!("{describe} within {within:?}, but there are {n}"),
                    seen,
                ));
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    }

    /// Polls `check` until it holds or `within` passes; then reports what was seen.
    async fn poll(
        &self,
        within: Duration,
        describe: &str,
        check: impl Fn(&Self) -> (bool, Vec<String>),
    ) -> Result<(), Failure> {
        let deadline = Instant::now() + within;
        loop {
            let (ok, seen) = check(self);
            if ok {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Failure::new(describe, seen));
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    }
}
