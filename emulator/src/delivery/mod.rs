//! Activities to bots: [`activities`] turns [`crate::tenant::TeamsEvent`]s into Teams-shaped
//! activities; [`Delivery`] queues them per bot, signs them with a channel JWT, POSTs them to
//! the bot's messaging endpoint, and records every outcome and every activity of either
//! direction (the transcript).
//!
//! Delivery owns what it needs (the signing key, the HTTP client, the clock, its queues and
//! records): its workers hold nothing of the rest of the emulator, and stop on the emulator's
//! [`Shutdown`]. Each conversation's activities go through one queue and one worker, so they
//! reach the bot in the order they happened, while the call that caused them returns at once
//! (as in Teams); a bot's conversations share [`WORKERS_PER_BOT`] queues, so a broadcast is not
//! one long line. A bot that is down or answers an error is a recorded failed delivery, never
//! silence. Like the Bot Framework's channel, delivery signs a token per bot and service URL
//! and reuses it until it nears expiry.
//!
//! The transcript and the delivery records are logs, bounded by a retention (`--retain N`):
//! past it the oldest entries go and a count says how many did.

pub mod activities;

pub use activities::{activities_for, envelope, stamp, user_account, with};

use crate::clock::Clock;
use crate::identity::BotAuth;
use crate::identity::SigningKey;
use crate::identity::tokens::channel_token;
use crate::shutdown::Shutdown;
use crate::tenant::StoredActivity;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use uuid::Uuid;

/// How long a bot has to answer one activity.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(15);

/// Queues (and workers) a bot's conversations are spread over.
pub const WORKERS_PER_BOT: usize = 8;

/// A channel token is signed again once this much of its lifetime has passed.
const TOKEN_REUSE: chrono::Duration = chrono::Duration::minutes(30);

/// Transcript entries and delivery records kept unless told otherwise.
pub const DEFAULT_RETAIN: usize = 10_000;

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

/// A record as kept: the activity is the transcript's own copy.
struct Kept {
    seq: usize,
    bot: Uuid,
    endpoint: Option<String>,
    signed: bool,
    status: Option<u16>,
    error: Option<String>,
    latency_ms: u64,
    at: DateTime<Utc>,
    activity: StoredActivity,
}

impl Kept {
    fn render(&self) -> DeliveryRecord {
        let activity = self.activity.value();
        let text = |pointer: &str| {
            activity
                .pointer(pointer)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        DeliveryRecord {
            seq: self.seq,
            bot: self.bot,
            endpoint: self.endpoint.clone(),
            activity_type: text("/type"),
            activity_id: text("/id"),
            conversation_id: text("/conversation/id"),
            signed: self.signed,
            status: self.status,
            ok: self.status.is_some_and(|s| (200..300).contains(&s)),
            error: self.error.clone(),
            latency_ms: self.latency_ms,
            at: self.at,
            activity,
        }
    }
}

/// A queued activity: its compact JSON and the few fields its request needs (a queue that
/// falls behind a broadcast holds many).
struct Job {
    seq: usize,
    bot: Uuid,
    endpoint: Option<String>,
    conversation_id: String,
    tenant_id: String,
    service_url: String,
    stored: StoredActivity,
}

/// A log that keeps the newest `retain` entries and counts the ones it let go.
struct Bounded<T> {
    entries: VecDeque<T>,
    dropped: usize,
}

impl<T> Default for Bounded<T> {
    fn default() -> Self {
        Self {
            entries: VecDeque::new(),
            dropped: 0,
        }
    }
}

impl<T> Bounded<T> {
    fn push(&mut self, entry: T, retain: usize) {
        if retain == 0 {
            self.dropped += 1;
            return;
        }
        while self.entries.len() >= retain {
            self.entries.pop_front();
            self.dropped += 1;
        }
        self.entries.push_back(entry);
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.dropped = 0;
    }
}

/// How many entries the bounded logs let go.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Dropped {
    pub transcript: usize,
    pub deliveries: usize,
}

/// A channel token (by bot and service URL) and when it was signed.
type SignedToken = (String, DateTime<Utc>);

struct Inner {
    key: SigningKey,
    bot_auth: BotAuth,
    clock: Clock,
    client: reqwest::Client,
    retain: usize,
    shutdown: Shutdown,
    queues: Mutex<HashMap<(Uuid, usize), mpsc::UnboundedSender<Job>>>,
    tokens: Mutex<HashMap<(Uuid, String), SignedToken>>,
    workers: Mutex<Vec<JoinHandle<()>>>,
    records: Mutex<Bounded<Kept>>,
    transcript: Mutex<Bounded<StoredActivity>>,
    pending: AtomicUsize,
    next_seq: AtomicUsize,
    idle: Notify,
}

/// The delivery queues, their outcomes, and the transcript of both directions.
#[derive(Clone)]
pub struct Delivery(Arc<Inner>);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // every change under these locks is one step: the data stays consistent after a panic
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Delivery {
    pub fn new(
        key: SigningKey,
        bot_auth: BotAuth,
        clock: Clock,
        retain: usize,
        shutdown: Shutdown,
    ) -> Self {
        let client = reqwest::Client::builder()
            .timeout(DELIVERY_TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_default();
        Self(Arc::new(Inner {
            key,
            bot_auth,
            clock,
            client,
            retain,
            shutdown,
            queues: Mutex::default(),
            tokens: Mutex::default(),
            workers: Mutex::default(),
            records: Mutex::default(),
            transcript: Mutex::default(),
            pending: AtomicUsize::new(0),
            next_seq: AtomicUsize::new(0),
            idle: Notify::new(),
        }))
    }

    pub fn records(&self) -> Vec<DeliveryRecord> {
        lock(&self.0.records)
            .entries
            .iter()
            .map(Kept::render)
            .collect()
    }

    /// Every activity to and from bots, in order: a Bot Framework `.transcript`.
    pub fn transcript(&self) -> Vec<Value> {
        lock(&self.0.transcript)
            .entries
            .iter()
            .map(StoredActivity::value)
            .collect()
    }

    /// How many transcript entries and delivery records the retention let go.
    pub fn dropped(&self) -> Dropped {
        Dropped {
            transcript: lock(&self.0.transcript).dropped,
            deliveries: lock(&self.0.records).dropped,
        }
    }

    pub fn retain(&self) -> usize {
        self.0.retain
    }

    /// Records an activity a bot sent through the Connector (the chat's own copy).
    pub fn record_from_bot(&self, activity: StoredActivity) {
        lock(&self.0.transcript).push(activity, self.0.retain);
    }

    /// Forgets outcomes and the transcript (activities still queued are delivered).
    pub fn clear(&self) {
        lock(&self.0.records).clear();
        lock(&self.0.transcript).clear();
    }

    /// The sequence number of the latest queued activity (0 before any).
    pub fn last_seq(&self) -> usize {
        self.0.next_seq.load(Ordering::SeqCst)
    }

    pub fn pending(&self) -> usize {
        self.0.pending.load(Ordering::SeqCst)
    }

    /// Waits until every queued activity has been delivered (or failed), up to `timeout`.
    /// Returns whether the queues are empty.
    pub async fn settle(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.0.idle.notified();
            if self.pending() == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.pending() == 0;
            }
        }
    }

    /// Waits for the workers to stop (after the shutdown signal), up to `timeout`.
    pub async fn join(&self, timeout: Duration) {
        let workers: Vec<_> = lock(&self.0.workers).drain(..).collect();
        let all = futures::future::join_all(workers);
        let _ = tokio::time::timeout(timeout, all).await;
    }

    /// Queues `activity` for the bot `bot`; the bot's worker delivers it in order.
    pub fn enqueue(&self, bot: Uuid, endpoint: Option<String>, mut activity: Value) {
        let d = &self.0;
        if d.shutdown.is_triggered() {
            return;
        }
        let seq = d.next_seq.fetch_add(1, Ordering::SeqCst) + 1;
        if activity.get("id").is_none() {
            // Derived from the sequence, so the same run gives the same ids and transcripts diff cleanly.
            activity["id"] = json!(format!(
                "f:{}",
                crate::ids::derived_guid("activity", &seq.to_string())
            ));
        }
        let stored = StoredActivity::new(&activity);
        let field = |pointer: &str| {
            activity
                .pointer(pointer)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let conversation_id = field("/conversation/id");
        let shard = shard_of(Some(&conversation_id));
        d.pending.fetch_add(1, Ordering::SeqCst);
        lock(&d.transcript).push(stored.clone(), d.retain);
        let job = Job {
            seq,
            bot,
            endpoint,
            tenant_id: field("/conversation/tenantId"),
            service_url: field("/serviceUrl"),
            conversation_id,
            stored,
        };
        let mut queues = lock(&d.queues);
        let sender = queues
            .entry((bot, shard))
            .or_insert_with(|| self.start_worker());
        if sender.send(job).is_err() {
            d.pending.fetch_sub(1, Ordering::SeqCst);
            d.idle.notify_waiters();
        }
    }

    fn start_worker(&self) -> mpsc::UnboundedSender<Job> {
        let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
        let inner = self.0.clone();
        let worker = tokio::spawn(async move {
            loop {
                let job = tokio::select! {
                    biased;
                    () = inner.shutdown.triggered() => break,
                    job = rx.recv() => match job {
                        Some(job) => job,
                        None => break,
                    },
                };
                let kept = send(&inner, job).await;
                log_outcome(&kept);
                lock(&inner.records).push(kept, inner.retain);
                inner.pending.fetch_sub(1, Ordering::SeqCst);
                inner.idle.notify_waiters();
            }
            // what is still queued will not go out: it no longer counts as pending
            rx.close();
            while rx.try_recv().is_ok() {
                inner.pending.fetch_sub(1, Ordering::SeqCst);
            }
            inner.idle.notify_waiters();
        });
        lock(&self.0.workers).push(worker);
        tx
    }
}

/// The queue of a conversation: the same conversation always the same one.
fn shard_of(conversation: Option<&str>) -> usize {
    use std::hash::{Hash, Hasher};
    // threads of a channel are one conversation for ordering, as for Teams' limits
    let base = conversation
        .unwrap_or_default()
        .split(";messageid=")
        .next()
        .unwrap_or_default();
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    base.hash(&mut hasher);
    (hasher.finish() % WORKERS_PER_BOT as u64) as usize
}

impl Inner {
    /// The channel's token for `bot` at `service_url`, signed again once it is half-way through
    /// its life (an RSA signature costs more than the delivery itself).
    fn channel_token(&self, bot: Uuid, service_url: &str, now: DateTime<Utc>) -> String {
        let key = (bot, service_url.to_string());
        let mut tokens = lock(&self.tokens);
        if let Some((token, signed_at)) = tokens.get(&key)
            && *signed_at <= now
            && now - *signed_at < TOKEN_REUSE
        {
            return token.clone();
        }
        let token = channel_token(&self.key, now, bot, service_url);
        tokens.insert(key, (token.clone(), now));
        token
    }
}

fn log_outcome(r: &Kept) {
    if r.status.is_some_and(|s| (200..300).contains(&s)) {
        tracing::debug!(bot = %r.bot, status = ?r.status, "delivered");
    } else {
        tracing::warn!(bot = %r.bot, status = ?r.status, error = ?r.error, "delivery failed");
    }
}

async fn send(d: &Inner, job: Job) -> Kept {
    let signed = d.bot_auth == BotAuth::Signed;
    let now = d.clock.now();
    let mut kept = Kept {
        seq: job.seq,
        bot: job.bot,
        endpoint: job.endpoint.clone(),
        signed,
        status: None,
        error: None,
        latency_ms: 0,
        at: now,
        activity: job.stored,
    };
    let Some(endpoint) = job.endpoint else {
        kept.error = Some("the bot's app registration has no messaging endpoint".into());
        return kept;
    };
    let mut request = d
        .client
        .post(&endpoint)
        .header("content-type", "application/json; charset=utf-8")
        .header("x-ms-conversation-id", job.conversation_id)
        .header("x-ms-tenant-id", job.tenant_id)
        .body(kept.activity.as_str().to_string());
    if signed {
        request = request.bearer_auth(d.channel_token(job.bot, &job.service_url, now));
    }
    let started = Instant::now();
    let sent = tokio::select! {
        biased;
        () = d.shutdown.triggered() => {
            kept.error = Some("the emulator shut down before the bot answered".into());
            return kept;
        }
        sent = request.send() => sent,
    };
    match sent {
        Ok(response) => {
            let status = response.status();
            kept.status = Some(status.as_u16());
            if !status.is_success() {
                let body = response.text().await.unwrap_or_default();
                let snippet: String = body.chars().take(300).collect();
                kept.error = Some(format!("the bot answered {status}: {snippet}"));
            }
        }
        Err(e) => {
            kept.error = Some(if e.is_timeout() {
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
    kept.latency_ms = started.elapsed().as_millis() as u64;
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bounded_log_keeps_the_newest_and_counts_the_rest() {
        let mut log = Bounded::default();
        for i in 0..10 {
            log.push(i, 3);
        }
        assert_eq!(log.entries.iter().copied().collect::<Vec<_>>(), [7, 8, 9]);
        assert_eq!(log.dropped, 7);
        log.clear();
        assert_eq!((log.entries.len(), log.dropped), (0, 0));
    }

    #[test]
    fn a_conversation_and_its_threads_share_one_queue() {
        let channel = "19:abc@thread.tacv2";
        assert_eq!(
            shard_of(Some(channel)),
            shard_of(Some(&format!("{channel};messageid=1700000000000")))
        );
        let spread: std::collections::BTreeSet<usize> =
            (0..64).map(|i| shard_of(Some(&format!("a:{i}")))).collect();
        assert!(spread.len() > 1, "conversations spread over the queues");
    }

    #[test]
    fn a_channel_token_is_reused_until_half_its_life_has_passed() {
        let clock = Clock::manual(Utc::now());
        let delivery = Delivery::new(
            SigningKey::embedded(),
            BotAuth::Signed,
            clock.clone(),
            10,
            Shutdown::new(),
        );
        let (bot, url) = (Uuid::from_u128(7), "http://127.0.0.1:1/amer/");
        let first = delivery.0.channel_token(bot, url, clock.now());
        clock.advance(chrono::Duration::minutes(29));
        assert_eq!(delivery.0.channel_token(bot, url, clock.now()), first);
        assert_ne!(
            delivery
                .0
                .channel_token(Uuid::from_u128(8), url, clock.now()),
            first,
            "each bot has its own"
        );
        clock.advance(chrono::Duration::minutes(2));
        assert_ne!(delivery.0.channel_token(bot, url, clock.now()), first);
    }

    #[tokio::test]
    async fn a_bot_that_is_down_is_a_failed_record_and_retention_bounds_the_logs() {
        let shutdown = Shutdown::new();
        let delivery = Delivery::new(
            SigningKey::embedded(),
            BotAuth::None,
            Clock::system(),
            2,
            shutdown.clone(),
        );
        let bot = Uuid::nil();
        for i in 0..3 {
            delivery.enqueue(
                bot,
                None,
                json!({"type": "message", "text": i, "conversation": {"id": "a:1"}}),
            );
        }
        assert!(delivery.settle(Duration::from_secs(5)).await);
        let records = delivery.records();
        assert_eq!(records.len(), 2);
        assert!(records.iter().all(|r| !r.ok && r.error.is_some()));
        assert_eq!(records[1].conversation_id, "a:1");
        assert_eq!(
            delivery.dropped(),
            Dropped {
                transcript: 1,
                deliveries: 1
            }
        );
        shutdown.trigger();
        delivery.join(Duration::from_secs(5)).await;
        delivery.enqueue(bot, None, json!({"type": "message"}));
        assert_eq!(delivery.pending(), 0, "nothing is queued after shutdown");
    }
}
