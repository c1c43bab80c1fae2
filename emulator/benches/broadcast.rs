//! The reference bot's broadcast end to end, at tenant size: `POST /api/install` on the bot
//! installs the app for every user of a generated tenant through Graph, the emulator delivers
//! each install's `installationUpdate` and `conversationUpdate` (signed), and every user gets one
//! welcome through the Connector. Prints the wall time from the install request until the last
//! delivery settled, welcomes per second, and the emulator's peak memory, beside the targets. A failed welcome ends
//! the run with a non-zero exit; a missed target or an exhausted time budget does not.
//!
//! `cargo bench -p teams-emulator --bench broadcast`
//!
//! The emulator runs in a child process of its own (so its memory is its own, read from
//! `/proc/{pid}/status`): this bench binary again, with `BROADCAST_EMULATOR_USERS=N`, serving
//! the library's `Emulator` with a tenant built through `EmulatorConfig` (a `serve --config` file
//! stops at about 50,000 users: the YAML reader's node budget), signed delivery, limits off.
//! The bot runs in this process with its SQLite store in a temporary folder, as `proactive-bot`
//! would. `BROADCAST_USERS` sets the tenant sizes
//! (default `10000,100000`), `BROADCAST_BOT_CONCURRENCY` the bot's calls in flight (its default,
//! 8, unless set), `BROADCAST_BUDGET_SECS` how long a size may run (300): past it the
//! run stops and reports how many users were welcomed by then.
//! Run without `--bench` (`cargo test --benches`) it makes a quick pass with 200 users.

mod support;

use anyhow::{Context, Result, bail, ensure};
use proactive_bot::{Bot, BotHandle, Config};
use serde_json::{Value, json};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use support::{
    Server, clock_ticks_per_second, cpu_model, cpu_ticks_in, graph, load_average, mib, thousands,
    token,
};
use teams_emulator::{BotAuth, Emulator, defaults};

/// The targets at 100,000 users.
const TARGET_WALL: Duration = Duration::from_secs(60);
const TARGET_PEAK_MIB: f64 = 400.0;
const TARGET_USERS: usize = 100_000;
/// How often progress is printed (and the budget checked).
const PROGRESS_EVERY: Duration = Duration::from_secs(15);

/// Set in the environment of the child that serves the emulator: the tenant's size.
const EMULATOR_USERS_ENV: &str = "BROADCAST_EMULATOR_USERS";
/// How many calls the bot makes at once (its own default unless set; limits are off here).
const BOT_CONCURRENCY_ENV: &str = "BROADCAST_BOT_CONCURRENCY";
/// And the bot's messaging endpoint.
const BOT_ENDPOINT_ENV: &str = "BROADCAST_BOT_ENDPOINT";
const EMULATOR_READY: &str = "broadcast emulator listening on http://";

#[tokio::main]
async fn main() -> ExitCode {
    if let Ok(users) = std::env::var(EMULATOR_USERS_ENV) {
        return serve_emulator(&users).await;
    }
    match bench().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("\nbroadcast bench FAILED: {e:#}");
            ExitCode::FAILURE
        }
    }
}

struct Figures {
    users: usize,
    /// Whether every user was welcomed within the budget.
    finished: bool,
    welcomed: usize,
    startup: Duration,
    install_answered: Duration,
    settled: Duration,
    by_event: usize,
    rss_start_kib: u64,
    peak_kib: u64,
    emulator_cpu: f64,
    bench_cpu: f64,
}

async fn bench() -> Result<()> {
    let quick = !std::env::args().any(|a| a == "--bench");
    let sizes: Vec<usize> = std::env::var("BROADCAST_USERS")
        .ok()
        .map(|v| {
            v.split(',')
                .filter_map(|n| n.trim().replace('_', "").parse().ok())
                .filter(|&n| n > 0)
                .collect()
        })
        .filter(|s: &Vec<usize>| !s.is_empty())
        .unwrap_or_else(|| {
            if quick {
                vec![200]
            } else {
                vec![10_000, TARGET_USERS]
            }
        });
    let budget = Duration::from_secs(
        std::env::var("BROADCAST_BUDGET_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(300),
    );
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("the reference bot's broadcast: POST /api/install for every user, limits off");
    println!(
        "machine: {cores} cores, {}; {}",
        cpu_model(),
        load_average()
    );
    if quick {
        println!("(quick pass: run with `cargo bench` for the full figures)");
    }
    let mut all = Vec::new();
    for &users in &sizes {
        let figures = broadcast(users, budget).await?;
        all.push(figures);
    }

    println!();
    println!(
        "{:>8} {:>9} {:>11} {:>11} {:>11} {:>10} {:>10} {:>10} {:>14}",
        "users",
        "start s",
        "install s",
        "settled s",
        "welcomes/s",
        "by event",
        "RSS MiB",
        "peak MiB",
        "CPU s emu/bot"
    );
    for f in &all {
        let over = |d: Duration| {
            if f.finished {
                format!("{:.1}", d.as_secs_f64())
            } else {
                format!("> {:.0}", d.as_secs_f64())
            }
        };
        println!(
            "{:>8} {:>9.2} {:>11} {:>11} {:>11.0} {:>10} {:>10.1} {:>10.1} {:>14}",
            thousands(f.users as u64),
            f.startup.as_secs_f64(),
            over(f.install_answered),
            over(f.settled),
            f.welcomed as f64 / f.settled.as_secs_f64(),
            thousands(f.by_event as u64),
            mib(f.rss_start_kib),
            mib(f.peak_kib),
            format!("{:.0}/{:.0}", f.emulator_cpu, f.bench_cpu)
        );
    }
    println!(
        "start = exec to ready line (tenant built); install = until the bot answered \
         /api/install; settled = until the emulator had no delivery pending; by event = users \
         welcomed from conversationUpdate rather than by the install run; RSS = the emulator's \
         after start-up, peak = its VmHWM; CPU = seconds of the emulator process / of this one \
         (bot and client)"
    );
    println!();
    println!("## Targets");
    match all.iter().find(|f| f.users == TARGET_USERS) {
        Some(f) => {
            let verdict = |met: bool| if met { "MET" } else { "MISSED" };
            let figure = if f.finished {
                format!("{:.1} s", f.settled.as_secs_f64())
            } else {
                format!(
                    "> {:.0} s ({} welcomed)",
                    f.settled.as_secs_f64(),
                    thousands(f.welcomed as u64)
                )
            };
            println!(
                "{:<50} {:>12}  {}",
                "100,000 users installed and welcomed < 60 s",
                figure,
                verdict(f.finished && f.settled < TARGET_WALL)
            );
            println!(
                "{:<50} {:>12}  {}",
                "emulator peak RSS < 400 MB at 100,000 users",
                format!("{:.0} MiB", mib(f.peak_kib)),
                verdict(mib(f.peak_kib) < TARGET_PEAK_MIB)
            );
        }
        None => println!("(the targets are at 100,000 users; not run at that size)"),
    }
    println!("{}", load_average());
    Ok(())
}

async fn broadcast(users: usize, budget: Duration) -> Result<Figures> {
    println!();
    println!("{} users:", thousands(users as u64));
    let dir = tempfile::tempdir()?;
    // the bot's port, reserved so the tenant file can name its messaging endpoint
    let bot_addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let endpoint = format!("http://{bot_addr}/api/messages");
    let (emulator, startup) = Server::this_binary(
        "emulator for the broadcast",
        &[
            (EMULATOR_USERS_ENV, &users.to_string()),
            (BOT_ENDPOINT_ENV, &endpoint),
        ],
        EMULATOR_READY,
    )?;
    let rss_start_kib = emulator.rss_kib()?;
    println!(
        "  emulator ready in {:.2} s, {:.1} MiB",
        startup.as_secs_f64(),
        mib(rss_start_kib)
    );

    let mut config = Config::for_emulator(&emulator.base());
    if let Some(n) = std::env::var(BOT_CONCURRENCY_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
    {
        config.max_concurrency = n.max(1);
    }
    println!(
        "  the bot makes at most {} Graph/Connector calls at once ({BOT_CONCURRENCY_ENV})",
        config.max_concurrency
    );
    config.listen = bot_addr;
    config.database_path = dir.path().join("bot.sqlite3");
    let bot = Bot::start(config).await.context("starting the bot")?;
    let http = reqwest::Client::builder().no_proxy().build()?;

    let (emulator_cpu0, bench_cpu0) = (emulator.cpu_ticks()?, self_cpu_ticks());
    let started = Instant::now();
    let install = tokio::spawn({
        let (http, url) = (http.clone(), format!("{}/api/install", bot.url()));
        async move {
            let response = http.post(url).json(&json!({})).send().await?;
            let status = response.status();
            let report: Value = response.json().await?;
            ensure!(
                status.is_success(),
                "POST /api/install answered {status}: {report}"
            );
            Ok::<Value, anyhow::Error>(report)
        }
    });
    tokio::pin!(install);
    // progress from the bot's store, which also shows whether the pace holds as the tenant fills
    let report = loop {
        tokio::select! {
            done = &mut install => break Some(done.context("the install request")??),
            _ = tokio::time::sleep(PROGRESS_EVERY) => {
                let welcomed = welcomed(&bot).await?;
                println!(
                    "  {:>6.0} s: {} of {} welcomed",
                    started.elapsed().as_secs_f64(),
                    thousands(welcomed as u64),
                    thousands(users as u64)
                );
                if started.elapsed() > budget {
                    break None;
                }
            }
        }
    };
    let install_answered = started.elapsed();
    let ticks = clock_ticks_per_second();
    let Some(report) = report else {
        // over budget: a measurement all the same, not a failure
        let welcomed = welcomed(&bot).await?;
        let figures = Figures {
            users,
            finished: false,
            welcomed,
            startup,
            install_answered,
            settled: install_answered,
            by_event: 0,
            rss_start_kib,
            peak_kib: emulator.peak_rss_kib()?,
            emulator_cpu: (emulator.cpu_ticks()? - emulator_cpu0) as f64 / ticks,
            bench_cpu: (self_cpu_ticks() - bench_cpu0) as f64 / ticks,
        };
        println!(
            "  not finished within the {} s budget (BROADCAST_BUDGET_SECS): {} of {} welcomed",
            budget.as_secs(),
            thousands(welcomed as u64),
            thousands(users as u64)
        );
        // the bot's install run is abandoned: stop the emulator under it, then the bot
        install.abort();
        drop(emulator);
        drop(bot);
        return Ok(figures);
    };
    println!(
        "  the bot answered /api/install after {:.1} s",
        install_answered.as_secs_f64()
    );
    let health = format!("{}/_emulator/health", emulator.base());
    loop {
        let h: Value = http.get(&health).send().await?.json().await?;
        if h["pendingDeliveries"].as_u64() == Some(0) {
            break;
        }
        if started.elapsed() > budget + Duration::from_secs(60) {
            bail!("deliveries still pending a minute past the budget: {h}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let settled = started.elapsed();
    let emulator_cpu = (emulator.cpu_ticks()? - emulator_cpu0) as f64 / ticks;
    let bench_cpu = (self_cpu_ticks() - bench_cpu0) as f64 / ticks;
    let peak_kib = emulator.peak_rss_kib()?;

    let count = |k: &str| report[k].as_u64().unwrap_or(0) as usize;
    let results = report["results"].as_array().context("no results")?;
    if count("sent") != users || count("failed") > 0 || results.len() != users {
        let first = results
            .iter()
            .find(|r| r["outcome"] != "sent")
            .cloned()
            .unwrap_or(Value::Null);
        bail!(
            "not every user was welcomed: sent {}, failed {}, not_installed {}, {} results; first: {first}",
            count("sent"),
            count("failed"),
            count("not_installed"),
            results.len()
        );
    }
    let by_event = results
        .iter()
        .filter(|r| {
            r["reason"]
                .as_str()
                .is_some_and(|s| s.contains("installation event"))
        })
        .count();
    check_sample(&http, &emulator.base(), results).await?;
    println!(
        "  every user welcomed and settled after {:.1} s (emulator peak {:.1} MiB)",
        settled.as_secs_f64(),
        mib(peak_kib)
    );
    bot.shutdown().await?;
    drop(emulator);
    Ok(Figures {
        users,
        finished: true,
        welcomed: users,
        startup,
        install_answered,
        settled,
        by_event,
        rss_start_kib,
        peak_kib,
        emulator_cpu,
        bench_cpu,
    })
}

/// Reads a few users' chats through Graph: each holds exactly the one welcome.
async fn check_sample(http: &reqwest::Client, base: &str, results: &[Value]) -> Result<()> {
    let token = token(
        http,
        format!("{base}/{}/oauth2/v2.0/token", defaults::TENANT_ID),
        "https://graph.microsoft.com/.default",
    )
    .await?;
    let step = (results.len() / 20).max(1);
    for result in results.iter().step_by(step) {
        let chat = result["conversationId"]
            .as_str()
            .with_context(|| format!("no conversation in {result}"))?;
        let messages = graph(
            http,
            &token,
            format!("{base}/v1.0/chats/{chat}/messages"),
            None,
            200,
        )
        .await?;
        let n = messages["value"].as_array().map_or(0, Vec::len);
        ensure!(n == 1, "chat {chat} holds {n} messages, not one welcome");
    }
    Ok(())
}

/// Users the bot has welcomed (or is welcoming) so far, from its store.
async fn welcomed(bot: &BotHandle) -> Result<usize> {
    let state = bot.state().clone();
    let users = tokio::task::spawn_blocking(move || state.store.users()).await??;
    Ok(users.iter().filter(|u| u.welcomed).count())
}

fn self_cpu_ticks() -> u64 {
    cpu_ticks_in(&std::fs::read_to_string("/proc/self/stat").unwrap_or_default())
}

/// The child: the default tenant's bot and catalog, `users` generated users, until killed.
async fn serve_emulator(users: &str) -> ExitCode {
    let Ok(users) = users.parse::<usize>() else {
        eprintln!("{EMULATOR_USERS_ENV} must be a number, not {users:?}");
        return ExitCode::FAILURE;
    };
    let endpoint = std::env::var(BOT_ENDPOINT_ENV).ok();
    let config = support::generated_tenant(users, endpoint);
    let started = Emulator::builder()
        .config(config)
        .bot_auth(BotAuth::Signed)
        .throttling(false)
        .start()
        .await;
    match started {
        Ok(emulator) => {
            println!("{EMULATOR_READY}{}", emulator.addr());
            let _ = std::io::Write::flush(&mut std::io::stdout());
            std::future::pending::<()>().await;
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("broadcast emulator: {e}");
            ExitCode::FAILURE
        }
    }
}
