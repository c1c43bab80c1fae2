//! The Connector send path side by side with a bare axum handler, under one load generator in
//! one run: requests per second, p50/p99 latency and the emulator/bare ratio at 1, 10 and 64
//! keep-alive connections; memory per stored message; a soak of a million sends; and how soon
//! `teams-emulator serve` prints its ready line. Each figure is printed beside its target.
//!
//! `cargo bench -p teams-emulator --bench send_path`
//!
//! Every server is a child process, so resident memory is read the same way for each
//! (`/proc/{pid}/status`): the emulator is the `teams-emulator` binary, the bare server is this
//! bench binary run again with `SEND_PATH_BARE_SERVER=1`. The load generator is a minimal
//! HTTP/1.1 client on tokio (one request in flight per connection, each connection a closed
//! loop), so it costs the shared cores as little as possible.
//!
//! Scale it with `BENCH_SECS` (measured seconds per run, default 5), `BENCH_WARMUP_SECS` (1),
//! `BENCH_CONNECTIONS` (`1,10,64`), `SOAK_MESSAGES` (1,000,000), `SOAK_SAMPLE_EVERY` (100,000),
//! `SOAK_STORED_MESSAGES` (a fifth of `SOAK_MESSAGES`), `SOAK_CONNECTIONS` (10) and
//! `READY_STARTS` (10). Run without `--bench` (`cargo test --benches`) it makes a quick pass.
//!
//! Missed targets never fail the run: these are measurements. A server that does not start, or
//! any request that fails or answers other than 2xx, ends it with a non-zero exit.

use anyhow::{Context, Result, bail, ensure};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::json;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use teams_emulator::defaults;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Set in the environment of the child that serves the bare handler.
const BARE_SERVER_ENV: &str = "SEND_PATH_BARE_SERVER";
const BARE_READY: &str = "send-path bare server listening on http://";

/// Users installed in the bench tenant: one 1:1 chat for each connection at the widest level.
const USERS: usize = 64;
const MESSAGE: &str = r#"{"type":"message","text":"hi"}"#;
const TYPING: &str = r#"{"type":"typing"}"#;

mod support;
use support::{
    EMULATOR, Server, clock_ticks_per_second, cpu_model, graph, load_average, mib, tenant_file,
    thousands, token, unreachable_endpoint,
};

fn main() -> ExitCode {
    if std::env::var_os(BARE_SERVER_ENV).is_some() {
        return bare::serve();
    }
    let settings = Settings::from_env();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(bench(settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("\nsend_path bench FAILED: {e:#}");
            ExitCode::FAILURE
        }
    }
}

struct Settings {
    quick: bool,
    warmup: Duration,
    window: Duration,
    levels: Vec<usize>,
    soak_messages: u64,
    soak_every: u64,
    soak_stored: u64,
    soak_connections: usize,
    ready_starts: usize,
}

impl Settings {
    fn from_env() -> Self {
        // cargo passes `--bench` to a harness-less bench under `cargo bench`, not under `cargo test`
        let quick = !std::env::args().any(|a| a == "--bench");
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let secs = |name: &str, full: f64, smoke: f64| {
            let s = var(name).and_then(|v| v.parse::<f64>().ok());
            Duration::from_secs_f64(s.unwrap_or(if quick { smoke } else { full }).max(0.01))
        };
        let count = |name: &str, full: u64, smoke: u64| {
            var(name)
                .and_then(|v| v.replace(['_', ','], "").parse::<u64>().ok())
                .unwrap_or(if quick { smoke } else { full })
        };
        let levels = var("BENCH_CONNECTIONS")
            .map(|v| {
                v.split(',')
                    .filter_map(|n| n.trim().parse().ok())
                    .filter(|&n| n > 0)
                    .collect::<Vec<usize>>()
            })
            .filter(|l| !l.is_empty())
            .unwrap_or_else(|| vec![1, 10, 64]);
        let soak_messages = count("SOAK_MESSAGES", 1_000_000, 20_000);
        let soak_every = count("SOAK_SAMPLE_EVERY", 100_000, 5_000).clamp(1, soak_messages.max(1));
        Self {
            quick,
            warmup: secs("BENCH_WARMUP_SECS", 1.0, 0.1),
            window: secs("BENCH_SECS", 5.0, 0.3),
            levels,
            soak_messages,
            soak_every,
            soak_stored: count("SOAK_STORED_MESSAGES", soak_messages / 5, 4_000),
            soak_connections: count("SOAK_CONNECTIONS", 10, 4).max(1) as usize,
            ready_starts: count("READY_STARTS", 10, 3).max(1) as usize,
        }
    }
}

async fn bench(settings: Settings) -> Result<()> {
    let started = Instant::now();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("send path, side by side: the same load generator against each server, in one run");
    println!(
        "machine: {cores} cores, {}; {}",
        cpu_model(),
        load_average()
    );
    if settings.quick {
        println!("(quick pass: run with `cargo bench` for the full figures)");
    }
    let retain = emulator_has_flag("--retain")?;

    // 1. exec → ready line, before anything else loads the machine
    let mut ready = Vec::new();
    for _ in 0..settings.ready_starts {
        let (server, took) = Server::emulator("ready-line probe", &["--bot-auth", "none"], None)?;
        drop(server);
        ready.push(took);
    }
    ready.sort();
    let ready_min = ready[0];
    let ready_median = ready[ready.len() / 2];

    // 2. the three servers, each with every user's 1:1 chat in place
    let tenant = tenant_file(USERS, &unreachable_endpoint()?)?;
    let http = reqwest::Client::builder().no_proxy().build()?;
    let bare = Server::this_binary("bare axum server", &[(BARE_SERVER_ENV, "1")], BARE_READY)?.0;
    let none = Server::emulator(
        "emulator --bot-auth none",
        &["--bot-auth", "none", "--no-throttling"],
        Some(tenant.path()),
    )?
    .0;
    let signed = Server::emulator(
        "emulator --bot-auth signed",
        &["--bot-auth", "signed", "--no-throttling"],
        Some(tenant.path()),
    )?
    .0;
    println!(
        "servers: bare pid {}, --bot-auth none pid {}, signed pid {} (for a profiler to attach)",
        bare.child.id(),
        none.child.id(),
        signed.child.id()
    );
    let chats_none = install_for_every_user(&http, &none.base()).await?;
    let chats_signed = install_for_every_user(&http, &signed.base()).await?;
    let token = bot_token(&http, &signed.base()).await?;
    let targets = [
        Target::new("bare axum handler", &bare, &chats_none, MESSAGE, None),
        Target::new(
            "Connector, --bot-auth none",
            &none,
            &chats_none,
            MESSAGE,
            None,
        ),
        Target::new(
            "Connector, signed token",
            &signed,
            &chats_signed,
            MESSAGE,
            Some(&token),
        ),
    ];
    let servers = [&bare, &none, &signed];
    let rss_before: Vec<u64> = servers.iter().map(|s| s.rss_kib()).collect::<Result<_>>()?;
    let mut stored = [0u64; 3];

    let mut rows: Vec<Row> = Vec::new();
    for &connections in &settings.levels {
        for (i, target) in targets.iter().enumerate() {
            let cpu_before = servers[i].cpu_ticks()?;
            let tally = run_for(target, connections, settings.warmup, settings.window).await?;
            let cpu = servers[i].cpu_ticks()? - cpu_before;
            tally.check(&format!("{} at {connections} connections", target.name))?;
            stored[i] += tally.ok;
            rows.push(Row::new(i, connections, tally, settings.window, cpu));
        }
    }
    let rss_after: Vec<u64> = servers.iter().map(|s| s.rss_kib()).collect::<Result<_>>()?;
    drop((bare, none, signed));

    let mut out = String::new();
    let w = &mut out;
    writeln!(w)?;
    writeln!(
        w,
        "## Throughput and latency: {:.1} s measured per run after {:.1} s of warm-up",
        settings.window.as_secs_f64(),
        settings.warmup.as_secs_f64()
    )?;
    writeln!(
        w,
        "body {MESSAGE}; connection k sends to user k's 1:1 chat ({USERS} users installed), so no \
         two connections share a conversation, as in a broadcast"
    )?;
    writeln!(
        w,
        "server CPU = the server process's user+system time per request (10 ms ticks); the load \
         generator shares the same {cores} cores"
    )?;
    writeln!(w)?;
    writeln!(
        w,
        "{:>5}  {:<28} {:>9} {:>9} {:>9} {:>8}  {:>12}",
        "conns", "server", "req/s", "p50 µs", "p99 µs", "vs bare", "server CPU µs"
    )?;
    for row in &rows {
        let bare_rate = rows
            .iter()
            .find(|r| r.target == 0 && r.connections == row.connections)
            .map_or(f64::NAN, |r| r.rate);
        let ratio = if row.target == 0 {
            String::from("1.00×")
        } else {
            format!("{:.2}×", row.rate / bare_rate)
        };
        writeln!(
            w,
            "{:>5}  {:<28} {:>9.0} {:>9.0} {:>9.0} {:>8}  {:>12.1}",
            row.connections,
            targets[row.target].name,
            row.rate,
            row.p50_us,
            row.p99_us,
            ratio,
            row.cpu_us_per_request
        )?;
    }
    writeln!(w)?;
    writeln!(w, "## Memory of each server (VmRSS)")?;
    writeln!(
        w,
        "{:<28} {:>11} {:>11} {:>13} {:>15}",
        "server", "before MiB", "after MiB", "2xx answered", "bytes/message"
    )?;
    for (i, target) in targets.iter().enumerate() {
        let per = if i == 0 {
            String::from("(keeps none)")
        } else {
            format!(
                "{:.0}",
                bytes_per(rss_before[i], rss_after[i], stored[i].max(1))
            )
        };
        writeln!(
            w,
            "{:<28} {:>11.1} {:>11.1} {:>13} {:>15}",
            target.name,
            mib(rss_before[i]),
            mib(rss_after[i]),
            thousands(stored[i]),
            per
        )?;
    }
    writeln!(
        w,
        "(each 201 of the emulator is a message kept in the chat and a transcript entry; RSS also \
         holds connection buffers and allocator slack, so this is an upper bound)"
    )?;
    print!("{out}");

    // 3. the soak, against a fresh emulator
    let soak = soak(&http, &settings, tenant.path(), retain).await?;

    // 4. targets
    let mut t = String::new();
    let w = &mut t;
    writeln!(w)?;
    writeln!(w, "## Targets")?;
    let rate = |target: usize, connections: usize| {
        rows.iter()
            .find(|r| r.target == target && r.connections == connections)
    };
    for (target, label) in [(1, "--bot-auth none"), (2, "signed token")] {
        for connections in [10, 64] {
            if let (Some(r), Some(b)) = (rate(target, connections), rate(0, connections)) {
                let ratio = r.rate / b.rate;
                target_line(
                    w,
                    &format!("Connector send ≥ 50 % of bare at {connections} conns ({label})"),
                    &format!("{:.0} %", ratio * 100.0),
                    ratio >= 0.5,
                )?;
            }
        }
        if let (Some(at64), Some(at10)) = (rate(target, 64), rate(target, 10)) {
            target_line(
                w,
                &format!("throughput at 64 conns ≥ at 10 ({label})"),
                &format!("{:.0} vs {:.0} req/s", at64.rate, at10.rate),
                at64.rate >= at10.rate,
            )?;
        }
        if let Some(r) = rate(target, 10) {
            target_line(
                w,
                &format!("p99 < 2 ms at 10 conns ({label})"),
                &format!("{:.2} ms", r.p99_us / 1000.0),
                r.p99_us < 2000.0,
            )?;
        }
    }
    for (i, label) in [(1, "--bot-auth none"), (2, "signed token")] {
        let per = bytes_per(rss_before[i], rss_after[i], stored[i].max(1));
        target_line(
            w,
            &format!("≤ 1 KB per stored small message ({label}, load runs)"),
            &format!("{per:.0} B"),
            per <= 1024.0,
        )?;
    }
    if let Some(per) = soak.message_bytes {
        target_line(
            w,
            "≤ 1 KB per stored small message (soak, message path)",
            &format!("{per:.0} B"),
            per <= 1024.0,
        )?;
    }
    if let Some(deviation) = soak.max_deviation {
        target_line(
            w,
            "soak RSS flat ±10 % (typing activities)",
            &format!("{:+.1} %", deviation * 100.0),
            deviation.abs() <= 0.10,
        )?;
    }
    target_line(
        w,
        "ready line < 20 ms (median)",
        &format!(
            "{:.1} ms (min {:.1} ms, {} starts)",
            ms(ready_median),
            ms(ready_min),
            ready.len()
        ),
        ready_median < Duration::from_millis(20),
    )?;
    writeln!(w)?;
    writeln!(
        w,
        "bench took {:.0} s; no request failed; {}",
        started.elapsed().as_secs_f64(),
        load_average()
    )?;
    print!("{t}");
    Ok(())
}

struct SoakResult {
    max_deviation: Option<f64>,
    message_bytes: Option<f64>,
}

/// A million typing activities at default retention, sampling resident memory; then messages,
/// which the chat keeps, for the message path's growth.
async fn soak(
    http: &reqwest::Client,
    settings: &Settings,
    tenant: &std::path::Path,
    retain: bool,
) -> Result<SoakResult> {
    let server = Server::emulator(
        "emulator for the soak",
        &["--bot-auth", "none", "--no-throttling"],
        Some(tenant),
    )?
    .0;
    let chats = install_for_every_user(http, &server.base()).await?;
    let connections = settings.soak_connections;
    let typing = Target::new("soak", &server, &chats, TYPING, None);
    let mut pool = typing.open(connections).await?;
    let mut out = String::new();
    let w = &mut out;
    writeln!(w)?;
    writeln!(
        w,
        "## Soak: {} typing activities, {connections} connections (own chat each), fresh \
         emulator at default retention",
        thousands(settings.soak_messages)
    )?;
    writeln!(
        w,
        "Teams does not keep typing activities in the chat, so only the emulator's transcript and \
         delivery records can grow here; {}",
        if retain {
            "this binary bounds them with `--retain N` (its default is used)"
        } else {
            "this binary has no `--retain N` yet, so they are unbounded today"
        }
    )?;
    writeln!(
        w,
        "{:>11} {:>9} {:>12} {:>9}",
        "sent", "RSS MiB", "vs baseline", "sends/s"
    )?;
    let start_rss = server.rss_kib()?;
    writeln!(w, "{:>11} {:>9.1} {:>12} {:>9}", 0, mib(start_rss), "", "")?;
    print!("{out}");
    let (mut sent, mut baseline, mut max_deviation) = (0u64, None::<u64>, None::<f64>);
    while sent < settings.soak_messages {
        let n = settings.soak_every.min(settings.soak_messages - sent);
        let t = Instant::now();
        let (back, tally) = run_count(pool, n).await;
        pool = back;
        tally.check("the soak (typing)")?;
        sent += n;
        let rss = server.rss_kib()?;
        let rate = n as f64 / t.elapsed().as_secs_f64();
        let versus = match baseline {
            None => {
                baseline = Some(rss);
                String::from("baseline")
            }
            Some(b) => {
                let d = rss as f64 / b as f64 - 1.0;
                if max_deviation.is_none_or(|m| d.abs() > m.abs()) {
                    max_deviation = Some(d);
                }
                format!("{:+.1} %", d * 100.0)
            }
        };
        println!(
            "{:>11} {:>9.1} {:>12} {:>9.0}",
            thousands(sent),
            mib(rss),
            versus,
            rate
        );
    }
    let typing_end = server.rss_kib()?;
    if let Some(b) = baseline {
        println!(
            "max deviation from the first sample after warm-up ({} sent): {:+.1} % (target ±10 %); \
             {:.0} bytes per typing activity since then",
            thousands(settings.soak_every.min(settings.soak_messages)),
            max_deviation.unwrap_or(0.0) * 100.0,
            bytes_per(
                b,
                typing_end,
                settings
                    .soak_messages
                    .saturating_sub(settings.soak_every)
                    .max(1)
            )
        );
    }

    // the message path: messages are tenant state (a chat keeps them), so they must grow
    let mut message_bytes = None;
    if settings.soak_stored > 0 {
        println!();
        println!(
            "then the message path: {} messages (body {MESSAGE}), which the chat keeps as Teams does",
            thousands(settings.soak_stored)
        );
        let message = Target::new("soak", &server, &chats, MESSAGE, None);
        drop(pool);
        let mut pool = message.open(connections).await?;
        let step = (settings.soak_stored / 5).max(1);
        let (mut sent, before) = (0u64, typing_end);
        while sent < settings.soak_stored {
            let n = step.min(settings.soak_stored - sent);
            let t = Instant::now();
            let (back, tally) = run_count(pool, n).await;
            pool = back;
            tally.check("the soak (messages)")?;
            sent += n;
            let rss = server.rss_kib()?;
            println!(
                "{:>11} {:>9.1} {:>12} {:>9.0}",
                thousands(sent),
                mib(rss),
                format!("{:+.1} MiB", mib(rss) - mib(before)),
                n as f64 / t.elapsed().as_secs_f64()
            );
        }
        let per = bytes_per(before, server.rss_kib()?, settings.soak_stored);
        println!(
            "message path growth: {per:.0} bytes per stored message (chat message + transcript entry)"
        );
        message_bytes = Some(per);
    }
    Ok(SoakResult {
        max_deviation,
        message_bytes,
    })
}

fn target_line(w: &mut String, what: &str, figure: &str, met: bool) -> std::fmt::Result {
    writeln!(
        w,
        "{what:<58} {figure:>26}  {}",
        if met { "MET" } else { "MISSED" }
    )
}

/// One line of the throughput table.
struct Row {
    target: usize,
    connections: usize,
    rate: f64,
    p50_us: f64,
    p99_us: f64,
    cpu_us_per_request: f64,
}

impl Row {
    fn new(
        target: usize,
        connections: usize,
        mut tally: Tally,
        window: Duration,
        cpu: u64,
    ) -> Self {
        tally.latencies.sort_unstable();
        let pct = |q: f64| {
            let v = &tally.latencies;
            if v.is_empty() {
                return f64::NAN;
            }
            let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
            v[rank - 1] as f64 / 1000.0
        };
        let ticks = clock_ticks_per_second();
        Self {
            target,
            connections,
            rate: tally.measured as f64 / window.as_secs_f64(),
            p50_us: pct(0.50),
            p99_us: pct(0.99),
            cpu_us_per_request: cpu as f64 * 1e6 / ticks / tally.ok.max(1) as f64,
        }
    }
}

/// What a run saw: answers, latencies of the measured window, and every failure by kind.
#[derive(Default)]
struct Tally {
    /// 2xx answers over the whole run, warm-up included.
    ok: u64,
    /// 2xx answers to requests sent inside the measured window.
    measured: u64,
    /// Nanoseconds, for the requests counted in `measured`.
    latencies: Vec<u64>,
    failures: BTreeMap<String, u64>,
    first_failure: Option<String>,
}

impl Tally {
    fn fail(&mut self, kind: String, detail: impl FnOnce() -> String) {
        *self.failures.entry(kind.clone()).or_default() += 1;
        if self.first_failure.is_none() {
            self.first_failure = Some(format!("{kind}: {}", detail()));
        }
    }

    fn merge(&mut self, other: Tally) {
        self.ok += other.ok;
        self.measured += other.measured;
        self.latencies.extend(other.latencies);
        for (kind, n) in other.failures {
            *self.failures.entry(kind).or_default() += n;
        }
        if self.first_failure.is_none() {
            self.first_failure = other.first_failure;
        }
    }

    /// Any failed request ends the bench: figures over errors measure nothing.
    fn check(&self, what: &str) -> Result<()> {
        if self.failures.is_empty() {
            return Ok(());
        }
        let kinds: Vec<String> = self
            .failures
            .iter()
            .map(|(k, n)| format!("{n} × {k}"))
            .collect();
        bail!(
            "{what}: {} request(s) failed ({}); first: {}{}",
            self.failures.values().sum::<u64>(),
            kinds.join(", "),
            self.first_failure.as_deref().unwrap_or("?"),
            if self.failures.keys().any(|k| k == "HTTP 429") {
                " (429: throttling was not off)"
            } else {
                ""
            }
        )
    }
}

/// A server and the requests to send it, one per conversation.
struct Target {
    name: &'static str,
    addr: SocketAddr,
    requests: Vec<Arc<[u8]>>,
}

impl Target {
    fn new(
        name: &'static str,
        server: &Server,
        chats: &[String],
        body: &str,
        token: Option<&str>,
    ) -> Self {
        let requests = chats
            .iter()
            .map(|chat| {
                let mut r = format!(
                    "POST /amer/v3/conversations/{}/activities HTTP/1.1\r\nHost: {}\r\n\
                     Content-Type: application/json\r\nContent-Length: {}\r\n",
                    utf8_percent_encode(chat, NON_ALPHANUMERIC),
                    server.addr,
                    body.len()
                );
                if let Some(token) = token {
                    r.push_str(&format!("Authorization: Bearer {token}\r\n"));
                }
                r.push_str("\r\n");
                r.push_str(body);
                Arc::from(r.into_bytes())
            })
            .collect();
        Self {
            name,
            addr: server.addr,
            requests,
        }
    }

    /// Connection k sends to conversation k (wrapping when there are more connections).
    async fn open(&self, connections: usize) -> Result<Vec<Connection>> {
        let mut pool = Vec::with_capacity(connections);
        for k in 0..connections {
            let request = self.requests[k % self.requests.len()].clone();
            pool.push(Connection::open(self.addr, request).await?);
        }
        Ok(pool)
    }
}

/// Every connection in a closed loop until the window ends; latencies only inside the window.
async fn run_for(
    target: &Target,
    connections: usize,
    warmup: Duration,
    window: Duration,
) -> Result<Tally> {
    let pool = target.open(connections).await?;
    let measure_from = Instant::now() + warmup;
    let end = measure_from + window;
    let tasks: Vec<_> = pool
        .into_iter()
        .map(|mut connection| {
            tokio::spawn(async move {
                let mut tally = Tally::default();
                tally
                    .latencies
                    .reserve((window.as_secs_f64() * 20_000.0) as usize);
                loop {
                    let sent = Instant::now();
                    if sent >= end {
                        break;
                    }
                    match connection.round_trip().await {
                        Ok(status) if (200..300).contains(&status) => {
                            tally.ok += 1;
                            if sent >= measure_from {
                                tally.measured += 1;
                                tally.latencies.push(sent.elapsed().as_nanos() as u64);
                            }
                        }
                        Ok(status) => tally.fail(format!("HTTP {status}"), || connection.body()),
                        Err(e) => {
                            tally.fail(String::from("I/O error"), || e.to_string());
                            break;
                        }
                    }
                }
                tally
            })
        })
        .collect();
    let mut total = Tally::default();
    for task in tasks {
        total.merge(task.await?);
    }
    Ok(total)
}

/// Exactly `n` requests over the pool's connections; the pool comes back for the next batch.
async fn run_count(pool: Vec<Connection>, n: u64) -> (Vec<Connection>, Tally) {
    let claimed = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = pool
        .into_iter()
        .map(|mut connection| {
            let claimed = claimed.clone();
            tokio::spawn(async move {
                let mut tally = Tally::default();
                while claimed.fetch_add(1, Ordering::Relaxed) < n {
                    match connection.round_trip().await {
                        Ok(status) if (200..300).contains(&status) => tally.ok += 1,
                        Ok(status) => tally.fail(format!("HTTP {status}"), || connection.body()),
                        Err(e) => {
                            tally.fail(String::from("I/O error"), || e.to_string());
                            return (None, tally);
                        }
                    }
                }
                (Some(connection), tally)
            })
        })
        .collect();
    let (mut pool, mut total) = (Vec::new(), Tally::default());
    for task in tasks {
        match task.await {
            Ok((connection, tally)) => {
                pool.extend(connection);
                total.merge(tally);
            }
            Err(e) => total.fail(String::from("load task panicked"), || e.to_string()),
        }
    }
    (pool, total)
}

/// A keep-alive HTTP/1.1 connection that sends one prepared request at a time.
struct Connection {
    stream: TcpStream,
    request: Arc<[u8]>,
    buf: Vec<u8>,
    body_at: usize,
}

impl Connection {
    async fn open(addr: SocketAddr, request: Arc<[u8]>) -> Result<Self> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            request,
            buf: Vec::with_capacity(4096),
            body_at: 0,
        })
    }

    /// Sends the request and reads the whole response; its status.
    async fn round_trip(&mut self) -> std::io::Result<u16> {
        self.stream.write_all(&self.request).await?;
        self.buf.clear();
        let head_end = loop {
            self.fill().await?;
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
        };
        let head = std::str::from_utf8(&self.buf[..head_end]).map_err(invalid)?;
        let mut lines = head.split("\r\n");
        let status: u16 = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| invalid(format!("bad status line in {head:?}")))?;
        let (mut length, mut chunked, mut close) = (None, false, false);
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = Some(value.parse::<usize>().map_err(invalid)?);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.to_ascii_lowercase().contains("chunked");
            } else if name.eq_ignore_ascii_case("connection") {
                close = value.eq_ignore_ascii_case("close");
            }
        }
        self.body_at = head_end;
        match (length, chunked) {
            (Some(n), false) => {
                while self.buf.len() < head_end + n {
                    self.fill().await?;
                }
            }
            (_, true) => {
                while chunked_len(&self.buf[head_end..])?.is_none() {
                    self.fill().await?;
                }
            }
            (None, false) => return Err(invalid("a response without a length")),
        }
        if close {
            return Err(invalid(format!(
                "the server closed the connection after HTTP {status}"
            )));
        }
        Ok(status)
    }

    async fn fill(&mut self) -> std::io::Result<()> {
        self.buf.reserve(4096);
        if self.stream.read_buf(&mut self.buf).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        Ok(())
    }

    /// The last response's body, for error messages.
    fn body(&self) -> String {
        let body = String::from_utf8_lossy(&self.buf[self.body_at.min(self.buf.len())..]);
        body.chars().take(300).collect()
    }
}

fn invalid(e: impl ToString) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The length of a complete chunked body at the start of `body`, `None` while incomplete.
fn chunked_len(body: &[u8]) -> std::io::Result<Option<usize>> {
    let mut at = 0;
    loop {
        let Some(line) = find(&body[at..], b"\r\n") else {
            return Ok(None);
        };
        let size = std::str::from_utf8(&body[at..at + line]).map_err(invalid)?;
        let size = size.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size, 16).map_err(invalid)?;
        at += line + 2;
        if size == 0 {
            // no trailers from these servers: the terminating empty line follows
            return Ok((body.len() >= at + 2).then_some(at + 2));
        }
        if body.len() < at + size + 2 {
            return Ok(None);
        }
        at += size + 2;
    }
}

/// Whether `teams-emulator serve --help` lists a flag.
fn emulator_has_flag(flag: &str) -> Result<bool> {
    let help = Command::new(EMULATOR)
        .args(["serve", "--help"])
        .output()
        .with_context(|| format!("cannot run {EMULATOR} serve --help"))?;
    ensure!(
        help.status.success(),
        "{EMULATOR} serve --help failed ({})",
        help.status
    );
    Ok(String::from_utf8_lossy(&help.stdout).contains(flag))
}

async fn bot_token(http: &reqwest::Client, base: &str) -> Result<String> {
    token(
        http,
        format!("{base}/botframework.com/oauth2/v2.0/token"),
        "https://api.botframework.com/.default",
    )
    .await
}

/// Installs the bot for every user through Graph, as a proactive bot does; each user's 1:1 chat id.
async fn install_for_every_user(http: &reqwest::Client, base: &str) -> Result<Vec<String>> {
    let token = token(
        http,
        format!("{base}/{}/oauth2/v2.0/token", defaults::TENANT_ID),
        "https://graph.microsoft.com/.default",
    )
    .await?;
    let v1 = format!("{base}/v1.0");
    let users = graph(
        http,
        &token,
        format!("{v1}/users?$select=id&$top=999"),
        None,
        200,
    )
    .await?;
    let users: Vec<String> = users["value"]
        .as_array()
        .context("users: no value")?
        .iter()
        .filter_map(|u| u["id"].as_str().map(str::to_string))
        .collect();
    ensure!(
        users.len() == USERS,
        "expected {USERS} users, got {}",
        users.len()
    );
    let catalog = graph(
        http,
        &token,
        format!(
            "{v1}/appCatalogs/teamsApps?$filter=externalId eq '{}'",
            defaults::MANIFEST_ID
        ),
        None,
        200,
    )
    .await?;
    let app = catalog["value"][0]["id"]
        .as_str()
        .context("the app is not in the catalog")?
        .to_string();
    let bind = json!({
        "teamsApp@odata.bind": format!("https://graph.microsoft.com/v1.0/appCatalogs/teamsApps/{app}")
    });
    let mut chats = Vec::with_capacity(users.len());
    for user in &users {
        let apps = format!("{v1}/users/{user}/teamwork/installedApps");
        graph(http, &token, apps.clone(), Some(&bind), 201).await?;
        let listed = graph(
            http,
            &token,
            format!("{apps}?$expand=teamsApp&$filter=teamsApp/id eq '{app}'"),
            None,
            200,
        )
        .await?;
        let installation = listed["value"][0]["id"]
            .as_str()
            .context("the installation is not listed")?;
        let chat = graph(
            http,
            &token,
            format!("{apps}/{installation}/chat"),
            None,
            200,
        )
        .await?;
        chats.push(chat["id"].as_str().context("no chat id")?.to_string());
    }
    Ok(chats)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn bytes_per(before_kib: u64, after_kib: u64, n: u64) -> f64 {
    (after_kib as f64 - before_kib as f64) * 1024.0 / n as f64
}

/// The reference point: an axum handler that parses the JSON body and answers 201, nothing else.
mod bare {
    use axum::Json;
    use axum::extract::Path;
    use axum::http::StatusCode;
    use axum::routing::post;
    use serde_json::{Value, json};
    use std::io::Write;
    use std::process::ExitCode;

    pub fn serve() -> ExitCode {
        // the same runtime `#[tokio::main]` gives the emulator's binary
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let served: std::io::Result<()> = runtime.block_on(async {
            let app = axum::Router::new().route(
                "/amer/v3/conversations/{conversation}/activities",
                post(send_to_conversation),
            );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            println!("{}{}", super::BARE_READY, listener.local_addr()?);
            std::io::stdout().flush()?;
            axum::serve(listener, app).await
        });
        match served {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("bare server: {e}");
                ExitCode::FAILURE
            }
        }
    }

    async fn send_to_conversation(
        Path(_conversation): Path<String>,
        Json(_activity): Json<Value>,
    ) -> (StatusCode, Json<Value>) {
        (StatusCode::CREATED, Json(json!({"id": "1"})))
    }
}
