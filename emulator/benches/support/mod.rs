//! What the benches share: servers as child processes (their memory and CPU read from
//! `/proc/{pid}`), a generated tenant file, tokens and Graph calls, and number formatting.
//! Each bench uses a part of it.
#![allow(dead_code)]

use anyhow::{Context, Result, ensure};
use serde_json::Value;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use teams_emulator::config::{AppRegistrationSpec, TenantSpec, UserSpec};
use teams_emulator::{EmulatorConfig, defaults};

pub const EMULATOR_READY: &str = "teams-emulator listening on http://";
pub const EMULATOR: &str = env!("CARGO_BIN_EXE_teams-emulator");

/// A server child process, killed on drop.
pub struct Server {
    pub name: String,
    pub child: Child,
    pub addr: SocketAddr,
}

impl Server {
    /// This bench binary again, told by `env` to serve something else; how long it took from
    /// exec to its ready line.
    pub fn this_binary(name: &str, env: &[(&str, &str)], ready: &str) -> Result<(Self, Duration)> {
        let mut command = Command::new(std::env::current_exe()?);
        command.envs(env.iter().copied());
        Self::spawn(name, command, ready)
    }

    /// `teams-emulator serve --listen 127.0.0.1:0 ARGS [--config FILE]`, and how long it took
    /// from exec to its ready line.
    pub fn emulator(
        name: &str,
        args: &[&str],
        config: Option<&std::path::Path>,
    ) -> Result<(Self, Duration)> {
        let mut command = Command::new(EMULATOR);
        command
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(args);
        // every install's delivery fails on purpose; a warning for each would bury the figures
        command.env("RUST_LOG", "error");
        if let Some(config) = config {
            command.arg("--config").arg(config);
        }
        Self::spawn(name, command, EMULATOR_READY)
    }

    pub fn spawn(name: &str, mut command: Command, ready: &str) -> Result<(Self, Duration)> {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let started = Instant::now();
        let mut child = command
            .spawn()
            .with_context(|| format!("cannot start the {name} ({command:?})"))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let read = reader.read_line(&mut line).map(|_| line);
            let _ = tx.send((read, Instant::now()));
            // keep the pipe drained so the server never blocks on stdout
            let _ = std::io::copy(&mut reader, &mut std::io::sink());
        });
        let fail = |mut child: Child, why: String| -> anyhow::Error {
            let _ = child.kill();
            let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
            anyhow::anyhow!("the {name} did not start: {why} ({status}; {command:?})")
        };
        let (line, at) = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok((Ok(line), at)) => (line, at),
            Ok((Err(e), _)) => return Err(fail(child, format!("reading its stdout: {e}"))),
            Err(_) => return Err(fail(child, "no ready line within 30 s".into())),
        };
        let addr = line
            .trim_end()
            .strip_prefix(ready)
            .and_then(|a| a.parse::<SocketAddr>().ok());
        let Some(addr) = addr else {
            return Err(fail(
                child,
                format!("expected a line `{ready}HOST:PORT`, got {line:?}"),
            ));
        };
        let server = Self {
            name: name.to_string(),
            child,
            addr,
        };
        Ok((server, at - started))
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn proc_file(&self, file: &str) -> Result<String> {
        let path = format!("/proc/{}/{file}", self.child.id());
        std::fs::read_to_string(&path)
            .with_context(|| format!("the {} is gone ({path})", self.name))
    }

    pub fn rss_kib(&self) -> Result<u64> {
        self.status_kib("VmRSS:")
    }

    /// The most it was ever resident (VmHWM).
    pub fn peak_rss_kib(&self) -> Result<u64> {
        self.status_kib("VmHWM:")
    }

    fn status_kib(&self, field: &str) -> Result<u64> {
        let status = self.proc_file("status")?;
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .with_context(|| format!("no {field} in /proc/PID/status"))
    }

    /// User plus system time of the process, in clock ticks.
    pub fn cpu_ticks(&self) -> Result<u64> {
        Ok(cpu_ticks_in(&self.proc_file("stat")?))
    }
}

/// User plus system time in a `/proc/{pid}/stat` line, in clock ticks.
pub fn cpu_ticks_in(stat: &str) -> u64 {
    // fields after the parenthesised command name; utime and stime are the 14th and 15th
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    field(11).unwrap_or(0) + field(12).unwrap_or(0)
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// A loopback URL where nothing listens: a port that was free a moment ago.
pub fn unreachable_endpoint() -> Result<String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let endpoint = format!("http://{}/api/messages", listener.local_addr()?);
    drop(listener);
    Ok(endpoint)
}

/// The default tenant with `users` generated users (`User 000000`, key `user000000`, the first
/// an administrator) and no teams, its bot delivering to `endpoint`: built in code, since a
/// `serve --config` file stops at about 50,000 users (the YAML reader's node budget).
pub fn generated_tenant(users: usize, endpoint: Option<String>) -> EmulatorConfig {
    let mut config = EmulatorConfig::default_tenant();
    let base = config.tenants[0].clone();
    config.tenants = vec![TenantSpec {
        users: (0..users)
            .map(|i| UserSpec {
                name: format!("User {i:06}"),
                key: Some(format!("user{i:06}")),
                upn: None,
                id: None,
                password: None,
                admin: i == 0,
                job_title: None,
            })
            .collect(),
        teams: vec![],
        apps: vec![AppRegistrationSpec {
            messaging_endpoint: endpoint,
            ..base.apps[0].clone()
        }],
        ..base
    }];
    config
}

/// A tenant file (`serve --config`) of `users` users and the reference bot's app, with the
/// default tenant's ids and the bot's messaging endpoint at `endpoint`.
pub fn tenant_file(users: usize, endpoint: &str) -> Result<tempfile::NamedTempFile> {
    let mut yaml = format!(
        "tenants:\n  - name: Bench\n    id: {}\n    domain: bench.onmicrosoft.com\n    users:\n",
        defaults::TENANT_ID
    );
    yaml.reserve(users * 48);
    for k in 0..users {
        writeln!(yaml, "      - {{ name: Bench User {k:06}, key: u{k:06} }}")?;
    }
    write!(
        yaml,
        "    apps:\n      - name: Proactive Bot\n        client_id: {bot}\n        client_secret: {secret}\n        \
         messaging_endpoint: {endpoint}\n        permissions: [TeamsAppInstallation.ReadWriteSelfForUser.All, \
         Chat.Read.All, AppCatalog.Read.All, User.Read.All]\n    catalog:\n      - name: Proactive Bot\n        \
         manifest_id: {manifest}\n        bot_id: {bot}\n        web_application_id: {bot}\n",
        bot = defaults::BOT_APP_ID,
        secret = defaults::BOT_APP_SECRET,
        manifest = defaults::MANIFEST_ID,
    )?;
    let file = tempfile::Builder::new()
        .prefix("bench-")
        .suffix(".tenant.yaml")
        .tempfile()?;
    std::fs::write(file.path(), yaml)?;
    Ok(file)
}

pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| String::from("unknown CPU"))
}

/// Other work on the machine skews every figure: say how busy it was.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| {
            let mut f = s.split_whitespace();
            Some(format!(
                "load average {} {} {}",
                f.next()?,
                f.next()?,
                f.next()?
            ))
        })
        .unwrap_or_default()
}

pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub async fn token(http: &reqwest::Client, url: String, scope: &str) -> Result<String> {
    let client_id = defaults::BOT_APP_ID.to_string();
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", client_id.as_str()),
        ("client_secret", defaults::BOT_APP_SECRET),
        ("scope", scope),
    ];
    let response = http.post(&url).form(&form).send().await?;
    let status = response.status();
    let body: Value = response.json().await?;
    ensure!(status.is_success(), "POST {url}: {status} {body}");
    body["access_token"]
        .as_str()
        .map(str::to_string)
        .with_context(|| format!("POST {url}: no access_token in {body}"))
}

/// GET or POST through Graph, expecting `expect`; the JSON answer.
pub async fn graph(
    http: &reqwest::Client,
    token: &str,
    url: String,
    body: Option<&Value>,
    expect: u16,
) -> Result<Value> {
    let request = match body {
        Some(body) => http.post(&url).json(body),
        None => http.get(&url),
    };
    let response = request.bearer_auth(token).send().await?;
    let status = response.status();
    let text = response.text().await?;
    ensure!(
        status.as_u16() == expect,
        "{url}: expected {expect}, got {status}: {text}"
    );
    Ok(if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text)?
    })
}
