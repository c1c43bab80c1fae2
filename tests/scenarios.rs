//! Every shipped scenario passes against the reference bot, and scenarios that must fail
//! produce reports that say what was expected and what was seen.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use teams_emulator::scenario::matching::visible_text;
use teams_emulator::scenario::run::{RunOptions, ScenarioResult, StepStatus, run_scenario};
use teams_emulator::scenario::{self, report};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate is in the workspace")
        .to_path_buf()
}

/// Runs the scenarios in `dir`, two at a time, in file order.
async fn run_all(dir: &Path) -> Vec<ScenarioResult> {
    let files = scenario::discover(&[dir.to_path_buf()]).expect("the folder lists");
    assert!(!files.is_empty(), "no scenarios in {}", dir.display());
    let semaphore = Arc::new(tokio::sync::Semaphore::new(2));
    let mut tasks = Vec::new();
    for file in files {
        let s = scenario::load(&file).unwrap_or_else(|e| panic!("{e}"));
        let semaphore = semaphore.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = semaphore.acquire_owned().await.expect("semaphore open");
            run_scenario(&s, &RunOptions::default()).await
        }));
    }
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.expect("scenario task"));
    }
    results
}

fn text(r: &ScenarioResult) -> String {
    report::scenario_text(r, report::Style { colour: false })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_shipped_scenario_passes_against_the_reference_bot() {
    let results = run_all(&repo().join("scenarios")).await;
    let failed: Vec<String> = results.iter().filter(|r| !r.passed()).map(text).collect();
    assert!(
        failed.is_empty(),
        "{} of {} scenarios failed:\n{}",
        failed.len(),
        results.len(),
        failed.join("\n")
    );
    assert!(results.len() >= 11, "the guidance's flows are all shipped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_scenarios_report_what_was_expected_and_seen() {
    let results = run_all(&repo().join("tests/failing-scenarios")).await;
    let by_name = |name: &str| {
        results
            .iter()
            .find(|r| r.name.contains(name))
            .unwrap_or_else(|| panic!("no result for {name}"))
    };
    for r in &results {
        assert!(!r.passed(), "{} should fail:\n{}", r.name, text(r));
    }

    let r = by_name("welcome text");
    let t = text(r);
    assert!(t.contains("step 2 `expect_message` at"), "{t}");
    assert!(t.contains("welcome-without-expected-text.yaml:4:5"), "{t}");
    assert!(t.contains("expected: a bot message in Megan Bowen's chat with the bot with text containing \"this sentence is never sent\""), "{t}");
    assert!(
        t.contains("seen:") && t.contains("stop"),
        "the welcome that did arrive is shown: {t}"
    );
    assert!(
        t.contains("→ installationUpdate (add)"),
        "activities to the bot are listed: {t}"
    );
    assert!(
        t.contains("← message:"),
        "activities from the bot are listed: {t}"
    );
    assert!(t.contains("1 later step(s) skipped"), "{t}");
    assert!(matches!(r.steps[2].status, StepStatus::Skipped));

    let t = text(by_name("silence"));
    assert!(
        t.contains("expected: no bot message in Adele Vance's chat with the bot for 2s"),
        "{t}"
    );
    assert!(t.contains("seen:     \""), "{t}");

    let t = text(by_name("does not exist"));
    assert!(
        t.contains(
            "expected: POST /api/does-not-exist to answer 2xx with JSON containing {\"sent\":1}"
        ),
        "{t}"
    );
    assert!(t.contains("seen:     404"), "{t}");

    let r = by_name("exits at once");
    let t = text(r);
    assert!(
        t.contains("exited") && t.contains("starting"),
        "the bot's own output is shown: {t}"
    );
    assert!(r.steps.is_empty());

    let t = text(by_name("activity Teams does not send"));
    assert!(
        t.contains("expected: an activity delivered to the bot of type 'messageReaction'"),
        "{t}"
    );
    assert!(t.contains("seen:     installationUpdate (add)"), "{t}");

    let t = text(by_name("throttled Graph call"));
    assert!(
        t.contains("expected: every retry to wait for the Retry-After it was given"),
        "{t}"
    );
    assert!(
        t.contains("retried") && t.contains("ms before its Retry-After had passed"),
        "{t}"
    );

    // The JUnit report of these failures is well-formed XML with one failure per scenario.
    let xml = report::junit_xml(&results).expect("junit");
    let mut reader = quick_xml::Reader::from_reader(xml.as_slice());
    let (mut cases, mut failures) = (0, 0);
    let mut buf = Vec::new();
    loop {
        match reader.read_event_into(&mut buf).expect("well-formed XML") {
            quick_xml::events::Event::Start(e) if e.name().as_ref() == b"testcase" => cases += 1,
            quick_xml::events::Event::Start(e) if e.name().as_ref() == b"failure" => failures += 1,
            quick_xml::events::Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    assert_eq!((cases, failures), (results.len(), results.len()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_botbuilder_js_example_passes_the_docs_sample_scenario_unchanged() {
    end_to_end::NodeBot::ensure_installed()
        .await
        .expect("node and the example's packages");
    let s = scenario::load(&repo().join("scenarios/notify-sample.yaml"))
        .expect("the sample scenario loads");
    let command = format!(
        "node {}",
        end_to_end::NodeBot::folder().join("index.js").display()
    );
    let r = run_scenario(
        &s,
        &RunOptions {
            bot_cmd: Some(command),
            ..Default::default()
        },
    )
    .await;
    assert!(r.passed(), "{}", text(&r));
    let from_node = r
        .transcript
        .iter()
        .any(|a| visible_text(a).contains("Proactive hello from botbuilder-js"));
    assert!(
        from_node,
        "the message came from the SDK bot: {:?}",
        r.transcript
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bot_command_is_told_the_emulator_under_botbuilders_names() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("env.yaml");
    // A stand-in bot: it prints its environment and accepts connections on PORT.
    std::fs::write(
        &file,
        "name: env\nbot:\n  command: \"env | sort; exec python3 -m http.server $PORT --bind 127.0.0.1\"\nsteps:\n  - wait: 10ms\n",
    )
    .expect("write");
    let s = scenario::load(&file).expect("loads");
    let r = run_scenario(&s, &RunOptions::default()).await;
    assert!(r.passed(), "{}", text(&r));
    let env = &r.bot_output;
    let url = |name: &str| {
        env.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("{name} not set:\n{env}"))
            .to_string()
    };
    assert_eq!(
        url("MicrosoftAppId"),
        "b0f1e2d3-c4b5-4a69-8788-99aabbccddee"
    );
    assert_eq!(
        url("ToBotFromChannelTokenIssuer"),
        "https://api.botframework.com"
    );
    assert!(
        url("ToBotFromChannelOpenIdMetadataUrl").ends_with("/v1/.well-known/openidconfiguration")
    );
    assert_eq!(
        url("TO_BOT_FROM_CHANNEL_OPENID_METADATA_URL"),
        url("ToBotFromChannelOpenIdMetadataUrl")
    );
    assert!(url("ToChannelFromBotLoginUrl").ends_with("/botframework.com"));
    for name in [
        "ToChannelFromBotOAuthScope",
        "ToBotFromEmulatorOpenIdMetadataUrl",
        "OAuthUrl",
        "CallerId",
        "MicrosoftAppPassword",
        "PORT",
    ] {
        assert!(!url(name).is_empty(), "{name}");
    }
}
