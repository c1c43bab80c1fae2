//! Figures at tenant size: an emulated tenant of 100,000 users (set `TENANT_USERS` for another
//! size). Prints start-up time and memory, paging through every user with Graph, installing the
//! app for a slice of them, and sending through the Connector.
//!
//! `cargo bench -p teams-emulator --bench tenant_size`

mod support;

use serde_json::{Value, json};
use std::time::{Duration, Instant};
use teams_emulator::{BotAuth, Emulator, defaults};

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map(|kib| kib / 1024.0)
        .unwrap_or(f64::NAN)
}

fn line(what: &str, n: usize, took: Duration) {
    let per = took.as_secs_f64() / n.max(1) as f64;
    println!(
        "{what:<44} {n:>7}  {:>9.3} s  {:>9.1} µs each  {:>9.0}/s",
        took.as_secs_f64(),
        per * 1e6,
        1.0 / per
    );
}

#[tokio::main]
async fn main() {
    let users: usize = std::env::var("TENANT_USERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let installs: usize = (users / 100).clamp(10, 2_000);
    println!("teams-emulator at tenant size: {users} users");
    let before = rss_mib();
    let started = Instant::now();
    let emulator = Emulator::builder()
        .config(support::generated_tenant(users, None))
        .bot_auth(BotAuth::Signed)
        .throttling(false)
        .start()
        .await
        .expect("start");
    line("start-up (build tenant, bind)", 1, started.elapsed());
    println!(
        "{:<44} {:>9.1} MiB (was {before:.1} MiB)",
        "resident memory after start-up",
        rss_mib()
    );

    let http = reqwest::Client::new();
    let token = |scope: &'static str, path: String| {
        let http = http.clone();
        async move {
            let form = [
                ("grant_type", "client_credentials"),
                ("client_id", &defaults::BOT_APP_ID.to_string()),
                ("client_secret", defaults::BOT_APP_SECRET),
                ("scope", scope),
            ];
            let body: Value = http
                .post(path)
                .form(&form)
                .send()
                .await
                .expect("token")
                .json()
                .await
                .expect("json");
            body["access_token"]
                .as_str()
                .expect("access_token")
                .to_string()
        }
    };
    let graph_token = token(
        "https://graph.microsoft.com/.default",
        emulator.token_url(defaults::TENANT_ID),
    )
    .await;
    let bot_token = token(
        "https://api.botframework.com/.default",
        format!("{}/botframework.com/oauth2/v2.0/token", emulator.url()),
    )
    .await;

    // Page through every user, as a bot does before a tenant-wide install.
    let t = Instant::now();
    let mut next = Some(format!(
        "{}/users?$select=id,userPrincipalName&$top=999",
        emulator.graph_url()
    ));
    let (mut seen, mut pages) = (0, 0);
    let mut ids = Vec::new();
    while let Some(url) = next {
        let page: Value = http
            .get(&url)
            .bearer_auth(&graph_token)
            .send()
            .await
            .expect("users")
            .json()
            .await
            .expect("json");
        let values = page["value"].as_array().expect("value");
        seen += values.len();
        pages += 1;
        if ids.len() < installs {
            ids.extend(
                values
                    .iter()
                    .filter_map(|u| u["id"].as_str().map(str::to_string)),
            );
        }
        next = page["@odata.nextLink"].as_str().map(str::to_string);
    }
    assert_eq!(seen, users, "every user exactly once");
    line(
        &format!("GET /users, all pages ({pages} pages of 999)"),
        seen,
        t.elapsed(),
    );

    let catalog: Value = http
        .get(format!(
            "{}/appCatalogs/teamsApps?$filter=externalId eq '{}'",
            emulator.graph_url(),
            defaults::MANIFEST_ID
        ))
        .bearer_auth(&graph_token)
        .send()
        .await
        .expect("catalog")
        .json()
        .await
        .expect("json");
    let app = catalog["value"][0]["id"]
        .as_str()
        .expect("catalog id")
        .to_string();
    let bind = json!({"teamsApp@odata.bind": format!("https://graph.microsoft.com/v1.0/appCatalogs/teamsApps/{app}")});

    let t = Instant::now();
    for id in ids.iter().take(installs) {
        let r = http
            .post(format!(
                "{}/users/{id}/teamwork/installedApps",
                emulator.graph_url()
            ))
            .bearer_auth(&graph_token)
            .json(&bind)
            .send()
            .await
            .expect("install");
        assert_eq!(r.status(), 201);
    }
    line(
        "POST installedApps (install for a user)",
        installs,
        t.elapsed(),
    );

    let t = Instant::now();
    let mut chats = Vec::new();
    for id in ids.iter().take(installs) {
        let list: Value = http
            .get(format!("{}/users/{id}/teamwork/installedApps?$expand=teamsApp&$filter=teamsApp/id eq '{app}'", emulator.graph_url()))
            .bearer_auth(&graph_token)
            .send()
            .await
            .expect("list")
            .json()
            .await
            .expect("json");
        let installation = list["value"][0]["id"]
            .as_str()
            .expect("installed")
            .to_string();
        let chat: Value = http
            .get(format!(
                "{}/users/{id}/teamwork/installedApps/{installation}/chat",
                emulator.graph_url()
            ))
            .bearer_auth(&graph_token)
            .send()
            .await
            .expect("chat")
            .json()
            .await
            .expect("json");
        chats.push(chat["id"].as_str().expect("chat id").to_string());
    }
    line(
        "GET installedApps?$filter + GET …/chat",
        installs,
        t.elapsed(),
    );

    let t = Instant::now();
    for chat in &chats {
        let url = format!(
            "{}v3/conversations/{chat}/activities",
            emulator.service_url()
        );
        let r = http
            .post(url)
            .bearer_auth(&bot_token)
            .json(&json!({"type": "message", "text": "Hello at tenant size"}))
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 201);
    }
    line(
        "POST v3/conversations/{chat}/activities",
        chats.len(),
        t.elapsed(),
    );
    println!(
        "{:<44} {:>9.1} MiB",
        "resident memory at the end",
        rss_mib()
    );
    emulator.shutdown().await;
}
