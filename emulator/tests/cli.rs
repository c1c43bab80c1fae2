//! The command line as scripts use it: `serve` prints its ready line and stops on SIGTERM;
//! `validate` and `run` exit 0 / 1 / 2 and name file, line and column.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_teams-emulator"))
}

/// A fresh folder for this test's files.
fn temp_dir(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("teams-emulator-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write");
    p
}

#[test]
fn serve_prints_one_ready_line_answers_and_stops_on_sigterm() {
    let mut child = bin()
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("serve starts");
    let mut first = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut first)
        .expect("ready line");
    let url = first
        .trim()
        .strip_prefix("teams-emulator listening on ")
        .unwrap_or_else(|| panic!("ready line: {first:?}"))
        .to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let health: serde_json::Value = rt
        .block_on(async {
            reqwest::get(format!("{url}/_emulator/health"))
                .await?
                .json()
                .await
        })
        .expect("health");
    assert_eq!(health["status"], "ok");
    // SIGTERM: graceful shutdown, exit 0.
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .expect("kill");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            assert!(status.success(), "{status}");
            break;
        }
        assert!(Instant::now() < deadline, "serve did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn serve_rejects_a_broken_config_with_file_field_and_reason() {
    let dir = temp_dir("config");
    let config = write(
        &dir,
        "tenant.yaml",
        "tenants:\n  - name: Fabrikam\n    users: [{name: Ann Lee}]\n    teams: [{name: Ops, members: [bob]}]\n",
    );
    let out = bin()
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("tenant.yaml")
            && err.contains("tenants[0].teams[0].members[0]")
            && err.contains("bob"),
        "{err}"
    );
    let out = bin()
        .args(["serve", "--bot-endpoint", "not a url"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn validate_names_file_line_column_and_exits_2() {
    let dir = temp_dir("validate");
    write(
        &dir,
        "good.yaml",
        "name: good\nsteps:\n  - install: { user: megan }\n",
    );
    let out = bin().arg("validate").arg(&dir).output().expect("runs");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bad = write(
        &dir,
        "bad.yaml",
        "name: bad\nsteps:\n  - install: { user: megan }\n  - say: { user: megan, txt: stop }\n",
    );
    let out = bin().arg("validate").arg(&bad).output().expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.yaml:4:"), "{err}");
    assert!(
        err.contains("txt"),
        "the reason names the unknown field: {err}"
    );
    let out = bin()
        .args(["validate", "/no/such/place"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn run_exits_1_on_a_failed_scenario_and_writes_junit_and_transcripts() {
    let dir = temp_dir("run");
    write(
        &dir,
        "passes.yaml",
        "name: passes\nsteps:\n  - install: { user: megan }\n  - expect_message: { user: megan }\n",
    );
    write(
        &dir,
        "fails.yaml",
        "name: fails\nsteps:\n  - install: { user: adele }\n  - expect_no_message: { user: adele, for: 2s }\n",
    );
    let junit = dir.join("out/junit.xml");
    let transcripts = dir.join("transcripts");
    let out = bin()
        .arg("run")
        .arg(&dir)
        .arg("--junit")
        .arg(&junit)
        .arg("--transcripts")
        .arg(&transcripts)
        .arg("--html")
        .arg(dir.join("report.html"))
        .env("NO_COLOR", "1")
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("PASS  passes") && stdout.contains("FAIL  fails"),
        "{stdout}"
    );
    assert!(
        stdout.lines().any(|l| l == "1 passed, 1 failed"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("\u{1b}["),
        "no colour when not on a terminal"
    );
    let xml = std::fs::read_to_string(&junit).expect("junit written");
    assert!(
        xml.contains("<testsuite name=\"scenarios\" tests=\"2\" failures=\"1\""),
        "{xml}"
    );
    let html = std::fs::read_to_string(dir.join("report.html")).expect("html written");
    assert!(
        html.contains("1 passed") && html.contains("<details open>"),
        "{html}"
    );
    let t: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(transcripts.join("passes.transcript")).expect("transcript"),
    )
    .expect("JSON");
    assert!(
        t.as_array()
            .is_some_and(|a| a.iter().any(|x| x["type"] == "installationUpdate")),
        "{t}"
    );

    let out = bin()
        .arg("run")
        .arg(dir.join("passes.yaml"))
        .output()
        .expect("runs");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = bin()
        .arg("run")
        .arg(&dir)
        .args(["--filter", "nothing-matches"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
}
