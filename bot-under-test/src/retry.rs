//! Behaving well under Teams' and Graph's limits: bounded retries with jittered exponential
//! backoff, `Retry-After` on any status that carries it (nothing goes to the throttled
//! conversation, or Graph app, before it is over), and per-conversation pacing of every try.
//!
//! [`Outbound::send`] is the one place outbound requests are sent and retried; the Graph and
//! Connector clients and the token provider build a request and hand it here. A response that is
//! not worth retrying (success, or a 4xx other than 412/429) is returned at once; so is the last
//! response once the tries run out. A 401 renews the bearer token once.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use rand::Rng;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{RequestBuilder, StatusCode};
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::Instant;

use crate::token::TokenProvider;

/// How often and how patiently to retry.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Most tries, the first one included (at least 1).
    pub max_attempts: u32,
    /// Backoff before the second try; doubles after each further failure.
    pub base_delay: Duration,
    /// Longest single wait. A server's `Retry-After` is never cut short: a longer one ends the
    /// tries instead.
    pub max_delay: Duration,
}

impl RetryPolicy {
    /// Full-jitter exponential backoff: a random wait in `[delay/2, delay]`, where `delay` is
    /// `base * 2^(attempt-1)` capped at `max_delay`. `attempt` counts failed tries so far (1-based).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(20);
        let delay = self
            .base_delay
            .saturating_mul(1u32 << exp)
            .min(self.max_delay);
        let half = delay / 2;
        let jitter = rand::thread_rng().gen_range(0..=half.as_millis().max(1) as u64);
        half + Duration::from_millis(jitter).min(half.max(Duration::from_millis(1)))
    }
}

/// Statuses that a Teams/Graph client retries with backoff (429 is handled via `Retry-After`).
pub fn is_transient(status: StatusCode) -> bool {
    matches!(status.as_u16(), 412 | 429 | 502 | 503 | 504)
}

/// Reads `Retry-After` as delta-seconds or an HTTP date; `None` if absent or unreadable.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    if let Ok(seconds) = value.parse::<f64>()
        && seconds.is_finite()
        && seconds >= 0.0
    {
        return Some(Duration::from_secs_f64(seconds));
    }
    let when = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = when.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

/// Why a request produced no response worth reading.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Could not connect, timed out, or the connection broke, on every try.
    #[error("{attempts} tries failed, last: {source}")]
    Transport {
        attempts: u32,
        #[source]
        source: reqwest::Error,
    },
    /// The request could not be built (a bug or a bad URL).
    #[error("request could not be built: {0}")]
    Build(String),
    /// The bearer token for the request could not be had.
    #[error("{0}")]
    Token(String),
    /// A request that must not be sent twice went out and no answer came (a timeout or a broken
    /// connection): the service may or may not have acted on it, so it was not sent again.
    #[error(
        "outcome unknown: no answer after the request was sent ({source}); not sent again so it cannot arrive twice"
    )]
    OutcomeUnknown {
        attempts: u32,
        #[source]
        source: reqwest::Error,
    },
    /// The service asked (`Retry-After`, on a 429 or another status) for a longer pause than
    /// the policy waits; the request was not sent.
    #[error("throttled: the service asked for no requests for another {}s", .wait.as_secs_f64().ceil())]
    Throttled { wait: Duration },
    /// The conversation's send limits leave no room for longer than the policy waits; the
    /// request was not sent.
    #[error("throttled: the conversation's send limits leave no room for another {}s; not sent", .wait.as_secs_f64().ceil())]
    OverLimit { wait: Duration },
}

/// A response, read to the end, together with how many tries it took.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub attempts: u32,
}

/// The client-credential token an outbound call carries.
#[derive(Debug, Clone, Copy)]
struct Bearer<'a> {
    tokens: &'a TokenProvider,
    tenant: &'a str,
    scope: &'a str,
}

/// One outbound call to Graph, the Connector or the login service, and everything it shares with
/// other calls: the retry policy, the bearer token (a 401 invalidates it and the call is tried
/// once more with a new one) and the concurrency permits, one taken for each try.
#[derive(Debug, Clone, Copy)]
pub struct Outbound<'a> {
    policy: &'a RetryPolicy,
    bearer: Option<Bearer<'a>>,
    permits: Option<&'a Semaphore>,
    /// Whether the request may be sent again after it went out unanswered; `None`: everything
    /// but POST may.
    repeatable: Option<bool>,
    /// Every try waits out the pauses a 429 asked for on this key; with `true`, it also counts
    /// against the key's send limits.
    paced: Option<(&'a ConversationPacer, &'a str, bool)>,
}

impl<'a> Outbound<'a> {
    pub fn new(policy: &'a RetryPolicy) -> Self {
        Outbound {
            policy,
            bearer: None,
            permits: None,
            repeatable: None,
            paced: None,
        }
    }

    /// Paces every try, the first and each retry, as a send to `key` (a conversation, or the
    /// member or channel a conversation is created for).
    pub fn paced(mut self, pacer: &'a ConversationPacer, key: &'a str) -> Self {
        self.paced = Some((pacer, key, true));
        self
    }

    /// Every try waits out the pause a 429 asked for on `key` (a conversation, or an app in a
    /// tenant for Graph), and a 429 to this call pauses every call on `key`; the tries do not
    /// count as sends.
    pub fn held(mut self, pacer: &'a ConversationPacer, key: &'a str) -> Self {
        self.paced = Some((pacer, key, false));
        self
    }

    /// Waits until a try may go out: it fits the pacer's windows and a permit is free. The
    /// permit is not held while waiting for the pacer, and the send is recorded only once the
    /// permit is had, so the record is the time the try goes out. A wait longer than the
    /// policy's `max_delay` is not waited: the try fails as [`SendError::Throttled`] (a pause a
    /// service asked for) or [`SendError::OverLimit`] (the send windows are full).
    async fn admit(&self) -> Result<Option<SemaphorePermit<'a>>, SendError> {
        loop {
            if let Some((pacer, key, counts)) = self.paced {
                if let Some(wait) = pacer.held_for(key)
                    && wait > self.policy.max_delay
                {
                    return Err(SendError::Throttled { wait });
                }
                while let Some(wait) = pacer.wait_for(key, counts) {
                    if wait > self.policy.max_delay {
                        return Err(SendError::OverLimit { wait });
                    }
                    tokio::time::sleep(wait).await;
                }
            }
            let permit = match self.permits {
                Some(permits) => Some(permits.acquire().await.expect("semaphore never closed")),
                None => None,
            };
            match self.paced {
                Some((pacer, key, counts)) if pacer.try_send(key, counts).is_some() => drop(permit),
                _ => return Ok(permit),
            }
        }
    }

    /// Says whether sending the request twice is harmless (a token request, an install that
    /// answers 409 the second time) even though it is a POST, or harmful though it is not.
    pub fn repeatable(mut self, repeatable: bool) -> Self {
        self.repeatable = Some(repeatable);
        self
    }

    /// Sends `Authorization: Bearer` with the token for (`tenant`, `scope`).
    pub fn bearer(mut self, tokens: &'a TokenProvider, tenant: &'a str, scope: &'a str) -> Self {
        self.bearer = Some(Bearer {
            tokens,
            tenant,
            scope,
        });
        self
    }

    /// Takes one of `permits` to send.
    pub fn permits(mut self, permits: &'a Semaphore) -> Self {
        self.permits = Some(permits);
        self
    }

    /// Sends the request built by `build` until it succeeds, fails for good, or the tries run
    /// out, and reads the answer.
    ///
    /// - 401 with a bearer token: the token is invalidated and the call tried once more.
    /// - `Retry-After` on any error status (429, but also 412, 502, 503, 504 or another): waits
    ///   that long before a retry and, with a pacer, holds every call to the same key as long.
    ///   A `Retry-After` longer than `max_delay` is not waited out: the answer is returned, and
    ///   later calls to the key fail at once as [`SendError::Throttled`] until the pause is
    ///   over. The next try never goes early.
    /// - 429 without `Retry-After`: the backoff, held for the key as above.
    /// - 412, 502, 503, 504 without `Retry-After`, and connection errors: jittered exponential
    ///   backoff.
    /// - A timeout or broken connection after the request went out: retried only when the
    ///   request is repeatable; a POST such as a message could otherwise arrive twice.
    /// - Anything else: returned at once.
    pub async fn send(&self, build: impl Fn() -> RequestBuilder) -> Result<Reply, SendError> {
        let policy = self.policy;
        let max = policy.max_attempts.max(1);
        let mut attempt = 0;
        let mut refreshed = false;
        loop {
            attempt += 1;
            let token = match &self.bearer {
                // Boxed: the token provider itself sends through here (without a bearer).
                Some(b) => Some(
                    Box::pin(b.tokens.token(b.tenant, b.scope))
                        .await
                        .map_err(|e| SendError::Token(e.to_string()))?,
                ),
                None => None,
            };
            let mut builder = build();
            if let Some(token) = &token {
                builder = builder.bearer_auth(token);
            }
            let (client, request) = builder.build_split();
            let request = request.map_err(|e| SendError::Build(e.to_string()))?;
            let method = request.method().clone();
            let url = request.url().clone();
            let repeatable = self.repeatable.unwrap_or(method != reqwest::Method::POST);
            // A permit for this try only: it is given back before any wait below, so a throttled
            // call does not keep other calls from going out while it waits.
            let permit = self.admit().await?;
            let result = match client.execute(request).await {
                Ok(response) => {
                    let status = response.status();
                    let headers = response.headers().clone();
                    response.bytes().await.map(|body| Reply {
                        status,
                        headers,
                        body: body.to_vec(),
                        attempts: attempt,
                    })
                }
                Err(error) => Err(error),
            };
            drop(permit);
            match result {
                Ok(reply) => {
                    let status = reply.status;
                    if status == StatusCode::UNAUTHORIZED
                        && !refreshed
                        && let (Some(b), Some(token)) = (&self.bearer, &token)
                    {
                        tracing::debug!(%method, %url, "token rejected; trying once with a new one");
                        b.tokens.invalidate(b.tenant, b.scope, token).await;
                        refreshed = true;
                        // The refresh is not one of the tries the policy counts.
                        attempt -= 1;
                        continue;
                    }
                    // A `Retry-After` is honoured whatever status carried it (a 503 or 412 may
                    // ask for a pause as a 429 does); without one, a 429 holds the key for the
                    // backoff and the other transient statuses just back off.
                    let asked = (!status.is_success())
                        .then(|| retry_after(&reply.headers))
                        .flatten();
                    let held = match asked {
                        Some(asked) => Some(asked),
                        None if status == StatusCode::TOO_MANY_REQUESTS => {
                            Some(policy.backoff(attempt))
                        }
                        None => None,
                    };
                    if let Some(held) = held {
                        // Nothing more goes to this conversation (or Graph app) until then.
                        if let Some((pacer, key, _)) = self.paced {
                            pacer.hold(key, held);
                        }
                    }
                    if asked.is_some_and(|asked| asked > policy.max_delay) {
                        tracing::debug!(%method, %url, %status, ?asked, "asked to wait longer than the policy waits");
                        return Ok(reply);
                    }
                    let wait = held.unwrap_or_else(|| policy.backoff(attempt));
                    if !is_transient(status) || attempt >= max {
                        return Ok(reply);
                    }
                    tracing::debug!(%method, %url, %status, attempt, ?wait, "retrying");
                    tokio::time::sleep(wait).await;
                }
                // Not connected means not sent; anything later may have reached the service.
                Err(error) if !repeatable && !error.is_connect() => {
                    return Err(SendError::OutcomeUnknown {
                        attempts: attempt,
                        source: error,
                    });
                }
                Err(error) if attempt >= max || !is_retryable_transport(&error) => {
                    return Err(SendError::Transport {
                        attempts: attempt,
                        source: error,
                    });
                }
                Err(error) => {
                    let wait = policy.backoff(attempt);
                    tracing::debug!(%method, %url, %error, attempt, ?wait, "retrying after a connection error");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }
}

/// [`Outbound::send`] without a token or permits, for requests that may be repeated (the login
/// service's token requests).
pub async fn send_with_retry(
    policy: &RetryPolicy,
    build: impl Fn() -> RequestBuilder,
) -> Result<Reply, SendError> {
    Outbound::new(policy).repeatable(true).send(build).await
}

/// Connection failures and timeouts are worth another try; a body or redirect error is not.
fn is_retryable_transport(error: &reqwest::Error) -> bool {
    error.is_connect() || error.is_timeout() || error.is_request()
}

/// Teams' per-bot, per-conversation limits for sending and creating conversations:
/// (most sends, window).
pub const TEAMS_SEND_LIMITS: &[(usize, Duration)] = &[
    (7, Duration::from_secs(1)),
    (8, Duration::from_secs(2)),
    (60, Duration::from_secs(30)),
    (1800, Duration::from_secs(3600)),
];

/// How often the pacer forgets conversations it has not sent to for longer than its longest
/// window.
const PACER_SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Keeps each conversation under Teams' per-thread send limits by waiting before a send that
/// would exceed one of them. Sliding windows, one history a conversation; a conversation not
/// sent to for longer than the longest window is forgotten.
#[derive(Debug)]
pub struct ConversationPacer {
    limits: Vec<(usize, Duration)>,
    longest: Duration,
    tracks: std::sync::Mutex<Tracks>,
}

#[derive(Debug)]
struct Tracks {
    by_key: HashMap<String, Track>,
    swept_at: Instant,
}

/// What the pacer knows of one conversation (or Graph app).
#[derive(Debug, Default)]
struct Track {
    /// Send times, oldest first, within the longest window.
    sends: VecDeque<Instant>,
    /// A 429 asked for nothing to be sent before this.
    not_before: Option<Instant>,
}

impl Track {
    fn held_for(&self, now: Instant) -> Option<Duration> {
        self.not_before
            .map(|t| t.saturating_duration_since(now))
            .filter(|wait| !wait.is_zero())
    }
}

impl Default for ConversationPacer {
    fn default() -> Self {
        ConversationPacer::new(TEAMS_SEND_LIMITS.to_vec())
    }
}

impl ConversationPacer {
    pub fn new(limits: Vec<(usize, Duration)>) -> Self {
        let longest = limits.iter().map(|l| l.1).max().unwrap_or_default();
        ConversationPacer {
            limits,
            longest,
            tracks: std::sync::Mutex::new(Tracks {
                by_key: HashMap::new(),
                swept_at: Instant::now(),
            }),
        }
    }

    /// Waits until one more send to `conversation_id` fits every window, then records it.
    pub async fn pace(&self, conversation_id: &str) {
        while let Some(wait) = self.try_send(conversation_id, true) {
            tokio::time::sleep(wait).await;
        }
    }

    /// Whether a request to `key` may go now: not while a 429's pause lasts, nor (with `counts`)
    /// beyond a send window. If it may, it is recorded (as a send with `counts`) and `None` is
    /// returned; otherwise nothing is recorded and the wait is returned.
    pub fn try_send(&self, key: &str, counts: bool) -> Option<Duration> {
        let mut tracks = self.tracks.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        self.sweep(&mut tracks, now);
        let track = tracks.by_key.entry(key.to_owned()).or_default();
        while track
            .sends
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.longest)
        {
            track.sends.pop_front();
        }
        let wait = self.wait_in(track, now, counts);
        if wait.is_none() && counts {
            track.sends.push_back(now);
        }
        wait
    }

    /// How long until a request to `key` may go (see [`ConversationPacer::try_send`]), recording
    /// nothing.
    pub fn wait_for(&self, key: &str, counts: bool) -> Option<Duration> {
        let tracks = self.tracks.lock().unwrap_or_else(|e| e.into_inner());
        let track = tracks.by_key.get(key)?;
        self.wait_in(track, Instant::now(), counts)
    }

    /// Nothing goes to `key` for `wait` from now (a 429's `Retry-After`); a longer pause already
    /// asked for stays.
    pub fn hold(&self, key: &str, wait: Duration) {
        let mut tracks = self.tracks.lock().unwrap_or_else(|e| e.into_inner());
        let until = Instant::now() + wait;
        let track = tracks.by_key.entry(key.to_owned()).or_default();
        track.not_before = Some(track.not_before.map_or(until, |t| t.max(until)));
    }

    /// What is left of a pause a 429 asked for on `key`.
    pub fn held_for(&self, key: &str) -> Option<Duration> {
        let tracks = self.tracks.lock().unwrap_or_else(|e| e.into_inner());
        tracks.by_key.get(key)?.held_for(Instant::now())
    }

    fn wait_in(&self, track: &Track, now: Instant, counts: bool) -> Option<Duration> {
        let held = track.held_for(now);
        let paced = counts
            .then(|| self.wait_needed(&track.sends, now))
            .flatten();
        held.max(paced)
    }

    /// Forgets the conversations whose last send is older than the longest window and that
    /// are not paused by a 429.
    fn sweep(&self, tracks: &mut Tracks, now: Instant) {
        if now.duration_since(tracks.swept_at) < PACER_SWEEP_EVERY {
            return;
        }
        tracks.swept_at = now;
        let longest = self.longest;
        tracks.by_key.retain(|_, track| {
            track
                .sends
                .back()
                .is_some_and(|t| now.duration_since(*t) < longest)
                || track.held_for(now).is_some()
        });
    }

    /// How many conversations the pacer remembers.
    #[cfg(test)]
    fn remembered(&self) -> usize {
        self.tracks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .by_key
            .len()
    }

    /// How long until a send fits all windows, given the send times in `sends` (oldest first).
    fn wait_needed(&self, sends: &VecDeque<Instant>, now: Instant) -> Option<Duration> {
        let mut wait = Duration::ZERO;
        for &(max, window) in &self.limits {
            let in_window: Vec<&Instant> = sends
                .iter()
                .filter(|t| now.duration_since(**t) < window)
                .collect();
            if in_window.len() >= max {
                // The send that must age out of the window before another fits.
                let oldest_that_matters = in_window[in_window.len() - max];
                let free_at = *oldest_that_matters + window;
                wait = wait.max(free_at.saturating_duration_since(now));
            }
        }
        (wait > Duration::ZERO).then_some(wait)
    }
}

/// Test helpers shared by the clients' tests.
#[cfg(test)]
pub(crate) mod testing {
    use wiremock::{Request, Respond, ResponseTemplate};

    /// Answers with `template` and says so on a channel as soon as a request arrives, so a test
    /// can act while the request is in flight or once it has been answered.
    /// Each arrival is sent as the time it came.
    pub(crate) struct Signal {
        pub(crate) template: ResponseTemplate,
        pub(crate) arrived: tokio::sync::mpsc::UnboundedSender<std::time::Instant>,
    }

    impl Signal {
        pub(crate) fn new(
            template: ResponseTemplate,
        ) -> (
            Signal,
            tokio::sync::mpsc::UnboundedReceiver<std::time::Instant>,
        ) {
            let (arrived, arrivals) = tokio::sync::mpsc::unbounded_channel();
            (Signal { template, arrived }, arrivals)
        }
    }

    impl Respond for Signal {
        fn respond(&self, _: &Request) -> ResponseTemplate {
            let _ = self.arrived.send(std::time::Instant::now());
            self.template.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("2"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(2)));

        let later = chrono::Utc::now() + chrono::Duration::seconds(30);
        let date = later.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
        headers.insert(RETRY_AFTER, HeaderValue::from_str(&date).unwrap());
        let wait = retry_after(&headers).expect("an HTTP date parses");
        assert!(wait > Duration::from_secs(25) && wait <= Duration::from_secs(30));

        headers.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&headers), Some(Duration::ZERO));

        headers.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn backoff_grows_and_stays_within_its_cap() {
        let policy = RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        };
        for _ in 0..50 {
            let first = policy.backoff(1);
            assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
            let third = policy.backoff(3);
            assert!(third >= Duration::from_millis(200) && third <= Duration::from_millis(400));
            assert!(policy.backoff(30) <= Duration::from_secs(1));
        }
    }

    #[test]
    fn transient_statuses_are_the_ones_teams_clients_retry() {
        for code in [412, 429, 502, 503, 504] {
            assert!(is_transient(StatusCode::from_u16(code).unwrap()), "{code}");
        }
        for code in [200, 201, 400, 401, 403, 404, 409, 413, 500] {
            assert!(!is_transient(StatusCode::from_u16(code).unwrap()), "{code}");
        }
    }

    #[test]
    fn pacer_computes_the_wait_for_the_tightest_window() {
        let pacer = ConversationPacer::default();
        let now = Instant::now();
        let mut sends = VecDeque::new();
        for _ in 0..6 {
            sends.push_back(now);
        }
        assert_eq!(
            pacer.wait_needed(&sends, now),
            None,
            "6 sends leave room for a 7th"
        );
        sends.push_back(now);
        let wait = pacer
            .wait_needed(&sends, now)
            .expect("the 8th in 1 s must wait");
        assert_eq!(wait, Duration::from_secs(1));

        // 8 sends spread over the last 2 s: the 2 s window is full until the oldest ages out.
        let mut spread = VecDeque::new();
        let start = now - Duration::from_millis(1500);
        for i in 0..8 {
            spread.push_back(start + Duration::from_millis(i * 10));
        }
        let wait = pacer
            .wait_needed(&spread, now)
            .expect("the 2 s window is full");
        assert_eq!(wait, Duration::from_millis(500));
    }

    #[tokio::test(start_paused = true)]
    async fn the_pacer_forgets_conversations_idle_for_longer_than_its_longest_window() {
        let pacer = ConversationPacer::default();
        pacer.pace("a:old").await;
        tokio::time::advance(Duration::from_secs(1800)).await;
        pacer.pace("a:recent").await;
        tokio::time::advance(Duration::from_secs(1801)).await;
        pacer.pace("a:new").await;
        assert_eq!(pacer.remembered(), 2, "a:old is forgotten, a:recent is not");
        tokio::time::advance(Duration::from_secs(3600)).await;
        pacer.pace("a:new").await;
        assert_eq!(pacer.remembered(), 1);

        // A conversation paused by a 429 is remembered for as long as the pause.
        pacer.hold("a:paused", Duration::from_secs(7200));
        tokio::time::advance(Duration::from_secs(3601)).await;
        pacer.pace("a:new").await;
        assert_eq!(pacer.held_for("a:paused"), Some(Duration::from_secs(3599)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_hold_keeps_every_request_to_its_key_back() {
        let pacer = ConversationPacer::default();
        pacer.hold("a:conv", Duration::from_secs(2));
        pacer.hold("a:conv", Duration::from_secs(1));
        assert_eq!(
            pacer.wait_for("a:conv", false),
            Some(Duration::from_secs(2))
        );
        assert_eq!(pacer.try_send("a:conv", true), Some(Duration::from_secs(2)));
        let start = Instant::now();
        pacer.pace("a:conv").await;
        assert!(Instant::now().duration_since(start) >= Duration::from_secs(2));
        assert_eq!(pacer.wait_for("a:other", false), None);
    }

    #[tokio::test(start_paused = true)]
    async fn pacer_never_lets_more_than_seven_through_in_a_second() {
        let pacer = ConversationPacer::default();
        let start = Instant::now();
        for _ in 0..8 {
            pacer.pace("a:conversation").await;
        }
        assert!(Instant::now().duration_since(start) >= Duration::from_secs(1));
        // Another conversation has its own budget.
        let before = Instant::now();
        pacer.pace("a:other").await;
        assert_eq!(Instant::now(), before);
    }
}
