//! The botbuilder-js example on the unmodified npm SDK, without credentials (`--bot-auth none`):
//! installed through Graph, it stores the conversation reference from the install events and
//! sends a proactive message that lands in the user's chat.

use anyhow::{Result, ensure};
use end_to_end::{DEADLINE, NodeBot, message_text, poll_until, start_emulator};
use teams_emulator::{BotAuth, EmulatorConfig, defaults};

#[tokio::test]
async fn the_botbuilder_js_example_sends_a_proactive_message_into_the_users_chat() -> Result<()> {
    // The SDK bot needs nothing from the emulator to start (the serviceUrl comes with each
    // activity), so it starts first and the emulator is told its endpoint afterwards.
    let bot = NodeBot::start().await?;
    let emulator = start_emulator(EmulatorConfig::default_tenant(), BotAuth::None).await?;
    ensure!(
        emulator.set_bot_endpoint(defaults::BOT_APP_ID, &format!("{}/api/messages", bot.url()))
    );
    let graph = emulator.client();

    graph.install_for_user("megan").await?;
    ensure!(
        emulator.settle(DEADLINE).await,
        "install events still pending"
    );
    let records = emulator.deliveries();
    ensure!(
        !records.is_empty() && records.iter().all(|r| r.ok && !r.signed),
        "unsigned deliveries, all accepted: {records:#?}"
    );

    let summary: serde_json::Value = reqwest::get(format!("{}/api/notify", bot.url()))
        .await?
        .error_for_status()?
        .json()
        .await?;
    ensure!(
        summary["sent"] == 1 && summary["failed"] == 0,
        "GET /api/notify: {summary:#}"
    );

    let chat = graph
        .chat_with_bot("megan")
        .await?
        .ok_or_else(|| anyhow::anyhow!("megan has no chat with the bot"))?;
    let message = poll_until(
        "the proactive message in megan's chat",
        DEADLINE,
        || async {
            Ok(graph
                .chat_messages(&chat)
                .await?
                .into_iter()
                .find(|m| message_text(m).contains("Proactive hello from botbuilder-js")))
        },
    )
    .await?;
    ensure!(
        end_to_end::from_bot(&message),
        "the message is from the app: {message:#}"
    );

    // A message from megan is answered in-turn (the SDK's reply path).
    graph.user_says("megan", "hello there").await?;
    poll_until("the SDK bot's reply in megan's chat", DEADLINE, || async {
        Ok(graph
            .chat_messages(&chat)
            .await?
            .into_iter()
            .find(|m| end_to_end::from_bot(m) && message_text(m).contains("You said: hello there"))
            .map(|_| ()))
    })
    .await?;

    // After the uninstall the SDK bot forgets the conversation and sends nothing.
    graph.uninstall_for_user("megan").await?;
    ensure!(emulator.settle(DEADLINE).await);
    let summary: serde_json::Value = reqwest::get(format!("{}/api/notify", bot.url()))
        .await?
        .error_for_status()?
        .json()
        .await?;
    ensure!(
        summary["conversations"] == 0 && summary["sent"] == 0,
        "GET /api/notify after the uninstall: {summary:#}"
    );
    ensure!(
        emulator.deliveries().iter().all(|r| r.ok),
        "every delivery accepted: {:#?}",
        emulator.deliveries()
    );

    bot.stop().await?;
    emulator.shutdown().await;
    Ok(())
}
