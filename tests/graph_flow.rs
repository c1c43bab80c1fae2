//! Personal installs through Graph: the welcome in signed mode, `/api/install` for the whole
//! tenant (idempotent), and uninstall followed by a reinstall without `conversationUpdate`.

use anyhow::{Result, ensure};
use end_to_end::{DEADLINE, OPT_OUT, Stack, is_welcome, message_text, poll_until, upn};
use serde_json::json;
use teams_emulator::EmulatorConfig;

/// Waits until the bot has sent `n` welcomes to the user's chat (Graph), and returns them.
async fn welcomes(stack: &Stack, user: &str, n: usize) -> Result<Vec<serde_json::Value>> {
    poll_until(&format!("{n} welcome(s) in {user}'s chat"), DEADLINE, || async {
        let found: Vec<_> = stack
            .graph
            .bot_messages_to(user)
            .await?
            .into_iter()
            .filter(is_welcome)
            .collect();
        Ok((found.len() >= n).then_some(found))
    })
    .await
}

#[tokio::test]
async fn a_graph_install_welcomes_the_user_through_signed_delivery() -> Result<()> {
    let stack = Stack::start().await?;
    stack.graph.install_for_user("megan").await?;

    let welcome = welcomes(&stack, "megan", 1).await?.remove(0);
    let text = message_text(&welcome);
    ensure!(text.contains(OPT_OUT), "the welcome has no opt-out line: {text}");
    ensure!(
        welcome["from"]["application"]["displayName"] == "Proactive Bot",
        "the welcome is not from the app: {welcome}"
    );

    stack.assert_deliveries_ok().await?;
    let records = stack.emulator.state().delivery.records();
    let kinds: Vec<&str> = records.iter().map(|r| r.activity_type.as_str()).collect();
    ensure!(
        kinds.contains(&"installationUpdate") && kinds.contains(&"conversationUpdate"),
        "the bot should have received both install events, got {kinds:?}"
    );
    ensure!(
        records
            .iter()
            .all(|r| r.signed && r.status.is_some_and(|s| (200..300).contains(&s))),
        "every delivery signed and answered 2xx: {records:#?}"
    );
    // Both events arrived, yet the user is welcomed once.
    stack.settle().await?;
    ensure!(welcomes(&stack, "megan", 1).await?.len() == 1);
    stack.shutdown().await
}

#[tokio::test]
async fn install_for_the_whole_tenant_welcomes_each_user_exactly_once_even_when_run_twice()
-> Result<()> {
    let stack = Stack::start().await?;
    let users = ["megan", "adele", "alex", "lee", "nestor", "patti"];

    let first = stack.bot_api.install(&json!({})).await?;
    ensure!(
        first.count("sent") == users.len() as u64 && first.count("failed") == 0,
        "first run: {:#}",
        first.0
    );
    ensure!(first.0["installed"] == users.len(), "first run: {:#}", first.0);
    stack.settle().await?;

    let second = stack.bot_api.install(&json!({})).await?;
    ensure!(
        second.count("already_welcomed") == users.len() as u64 && second.count("sent") == 0,
        "second run: {:#}",
        second.0
    );
    ensure!(second.0["installed"] == 0, "second run: {:#}", second.0);
    stack.assert_deliveries_ok().await?;

    for user in users {
        ensure!(
            stack.graph.user_installation(user).await?.is_some(),
            "the app is not installed for {user}"
        );
        let found = welcomes(&stack, user, 1).await?;
        ensure!(
            found.len() == 1,
            "{} welcomed {} times: {found:#?}",
            upn(user),
            found.len()
        );
    }
    stack.shutdown().await
}

#[tokio::test]
async fn after_an_uninstall_the_bot_stops_and_a_reinstall_without_conversation_update_reaches_the_user()
-> Result<()> {
    let mut config = EmulatorConfig::default_tenant();
    config.behaviour.conversation_update_never = true;
    let stack = Stack::with_config(config).await?;

    stack.graph.install_for_user("megan").await?;
    welcomes(&stack, "megan", 1).await?;
    stack.graph.uninstall_for_user("megan").await?;
    stack.assert_deliveries_ok().await?;
    let before = stack.graph.bot_messages_to("megan").await?.len();

    let report = stack
        .bot_api
        .notify(&json!({"title": "After the uninstall"}))
        .await?;
    let megan = stack.graph.user_id("megan").await?;
    let outcome = report.outcome_of(&upn("megan"), &megan);
    ensure!(
        report.count("sent") == 0
            && matches!(outcome.as_deref(), None | Some("not_installed")),
        "nothing may be sent after the uninstall: {:#}",
        report.0
    );
    ensure!(
        stack.graph.bot_messages_to("megan").await?.len() == before,
        "a message reached megan after the uninstall"
    );

    // Reinstalled by the bot itself; Teams sends no conversationUpdate this time.
    let report = stack
        .bot_api
        .install(&json!({"users": [upn("megan")]}))
        .await?;
    ensure!(
        report.count("sent") == 1 && report.0["installed"] == 1,
        "reinstall: {:#}",
        report.0
    );
    let found = welcomes(&stack, "megan", 2).await?;
    stack.assert_deliveries_ok().await?;
    ensure!(found.len() == 2, "one welcome per install: {found:#?}");

    let report = stack
        .bot_api
        .notify(&json!({"title": "After the reinstall"}))
        .await?;
    ensure!(
        report.outcome_of(&upn("megan"), &megan).as_deref() == Some("sent"),
        "notify after the reinstall: {:#}",
        report.0
    );
    poll_until("the notification in megan's chat", DEADLINE, || async {
        let messages = stack.graph.bot_messages_to("megan").await?;
        Ok(messages
            .iter()
            .any(|m| message_text(m).contains("After the reinstall"))
            .then_some(()))
    })
    .await?;
    stack.shutdown().await
}
