//! Personal installs through Graph: the welcome in signed mode, `/api/install` for the whole
//! tenant (idempotent), and uninstall followed by a reinstall without `conversationUpdate`.

use anyhow::{Result, ensure};
use end_to_end::{DEADLINE, OPT_OUT, Stack, is_welcome, message_text, poll_until, upn};
use serde_json::json;
use teams_emulator::EmulatorConfig;

/// Waits until the bot has sent `n` welcomes to the user's chat (Graph), and returns them.
async fn welcomes(stack: &Stack, user: &str, n: usize) -> Result<Vec<serde_json::Value>> {
    poll_until(
        &format!("{n} welcome(s) in {user}'s chat"),
        DEADLINE,
        || async {
            let found: Vec<_> = stack
                .client
                .bot_messages_to(user)
                .await?
                .into_iter()
                .filter(is_welcome)
                .collect();
            Ok((found.len() >= n).then_some(found))
        },
    )
    .await
}

#[tokio::test]
async fn a_graph_install_welcomes_the_user_through_signed_delivery() -> Result<()> {
    let stack = Stack::start().await?;
    stack.client.install_for_user("megan").await?;

    let welcome = welcomes(&stack, "megan", 1).await?.remove(0);
    let text = message_text(&welcome);
    ensure!(
        text.contains(OPT_OUT),
        "the welcome has no opt-out line: {text}"
    );
    ensure!(
        welcome["from"]["application"]["displayName"] == "Proactive Bot",
        "the welcome is not from the app: {welcome}"
    );

    stack.assert_deliveries_ok().await?;
    let records = stack.emulator.deliveries();
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
    install_tenant_twice(EmulatorConfig::default_tenant()).await
}

#[tokio::test]
async fn install_for_the_whole_tenant_welcomes_each_user_once_when_conversation_update_never_comes()
-> Result<()> {
    let mut config = EmulatorConfig::default_tenant();
    config.behaviour.conversation_update_never = true;
    install_tenant_twice(config).await
}

async fn install_tenant_twice(config: EmulatorConfig) -> Result<()> {
    let stack = Stack::with_config(config).await?;
    let users = ["megan", "adele", "alex", "lee", "nestor", "patti"];

    let first = stack.bot_api.install(&json!({})).await?;
    ensure!(
        first.count("sent") == users.len() as u64 && first.count("failed") == 0,
        "first run: {:#}",
        first.0
    );
    ensure!(
        first.0["installed"] == users.len(),
        "first run: {:#}",
        first.0
    );
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
            stack.client.installation_for_user(user).await?.is_some(),
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

    stack.client.install_for_user("megan").await?;
    welcomes(&stack, "megan", 1).await?;
    stack.client.uninstall_for_user("megan").await?;
    stack.assert_deliveries_ok().await?;
    let before = stack.client.bot_messages_to("megan").await?.len();

    let report = stack
        .bot_api
        .notify(&json!({"title": "After the uninstall"}))
        .await?;
    let megan = stack.client.user_id("megan").await?;
    let outcome = report.outcome_of(&upn("megan"), &megan);
    ensure!(
        report.count("sent") == 0 && matches!(outcome.as_deref(), None | Some("not_installed")),
        "nothing may be sent after the uninstall: {:#}",
        report.0
    );
    ensure!(
        stack.client.bot_messages_to("megan").await?.len() == before,
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
        let messages = stack.client.bot_messages_to("megan").await?;
        Ok(messages
            .iter()
            .any(|m| message_text(m).contains("After the reinstall"))
            .then_some(()))
    })
    .await?;
    stack.shutdown().await
}

#[tokio::test]
async fn the_bot_refuses_activities_without_the_channel_token() -> Result<()> {
    let stack = Stack::start().await?;
    let activity = json!({
        "type": "message", "id": "1", "text": "help", "channelId": "msteams",
        "serviceUrl": stack.emulator.service_url(),
        "from": {"id": "29:someone"}, "recipient": {"id": format!("28:{}", teams_emulator::defaults::BOT_APP_ID)},
        "conversation": {"id": "a:forged", "conversationType": "personal"},
    });
    let http = reqwest::Client::new();
    let unsigned = http
        .post(stack.bot_endpoint())
        .json(&activity)
        .send()
        .await?;
    ensure!(unsigned.status() == 401, "unsigned: {}", unsigned.status());
    // A token from the emulator's token endpoint is the bot's own, not the channel's.
    let own = stack
        .client
        .app_token(
            teams_emulator::defaults::BOT_APP_ID,
            teams_emulator::defaults::BOT_APP_SECRET,
            teams_emulator::client::BOT_FRAMEWORK_SCOPE,
        )
        .await?;
    let wrong = http
        .post(stack.bot_endpoint())
        .bearer_auth(own)
        .json(&activity)
        .send()
        .await?;
    ensure!(wrong.status() == 401, "wrong token: {}", wrong.status());
    stack.shutdown().await
}

#[tokio::test]
async fn a_missed_uninstall_is_learned_from_the_403_and_install_reaches_the_user_through_the_chat_id()
-> Result<()> {
    let stack = Stack::start().await?;
    let megan = stack.client.user_id("megan").await?;
    stack.client.install_for_user("megan").await?;
    welcomes(&stack, "megan", 1).await?;
    stack.assert_deliveries_ok().await?;

    // The uninstall event never reaches the bot.
    stack.deliver_to(Some(&end_to_end::unreachable_endpoint()?))?;
    stack.client.uninstall_for_user("megan").await?;
    stack.settle().await?;
    stack.deliver_to(None)?;
    let before = stack.client.bot_messages_to("megan").await?.len();

    let report = stack.bot_api.notify(&json!({"title": "Missed"})).await?;
    ensure!(
        report.outcome_of(&upn("megan"), &megan).as_deref() == Some("not_installed"),
        "the Connector's 403 tells the bot: {:#}",
        report.0
    );
    let report = stack
        .bot_api
        .notify(&json!({"title": "Missed again"}))
        .await?;
    ensure!(
        report.outcome_of(&upn("megan"), &megan).as_deref() == Some("not_installed"),
        "{:#}",
        report.0
    );
    ensure!(stack.client.bot_messages_to("megan").await?.len() == before);

    // Reinstalled by the bot, and again no install event arrives: the welcome goes to the
    // chat id Graph names.
    stack.deliver_to(Some(&end_to_end::unreachable_endpoint()?))?;
    let report = stack
        .bot_api
        .install(&json!({"users": [upn("megan")]}))
        .await?;
    stack.settle().await?;
    stack.deliver_to(None)?;
    let result = &report.0["results"][0];
    ensure!(
        result["outcome"] == "sent"
            && result["conversationId"]
                .as_str()
                .is_some_and(|c| c.starts_with("19:") && c.ends_with("@unq.gbl.spaces"))
            && report.0["installed"] == 1,
        "welcomed through Graph's chat id: {:#}",
        report.0
    );
    ensure!(welcomes(&stack, "megan", 2).await?.len() == 2);

    // Megan answers in the chat; the bot hears her and notify reaches her once.
    stack.client.user_says("megan", "help").await?;
    poll_until("the bot's help reply", DEADLINE, || async {
        let messages = stack.client.bot_messages_to("megan").await?;
        Ok(messages
            .iter()
            .any(|m| message_text(m).contains("**help**: show this message"))
            .then_some(()))
    })
    .await?;
    let report = stack
        .bot_api
        .notify(&json!({"title": "Back again"}))
        .await?;
    ensure!(report.count("sent") == 1, "{:#}", report.0);
    let got = stack
        .client
        .bot_messages_to("megan")
        .await?
        .iter()
        .filter(|m| message_text(m).contains("Back again"))
        .count();
    ensure!(got == 1, "megan got the notification {got} times");
    stack.shutdown().await
}
