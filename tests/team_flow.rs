//! Team installs: the channel introduction in General, the cached roster that lets notify reach
//! every member 1:1, and the welcomes for a member who joins later.

use anyhow::{Context, Result, ensure};
use end_to_end::{DEADLINE, Graph, Stack, message_text, poll_until, upn};
use serde_json::{Value, json};

/// Waits until the team's General channel has a message from the bot containing `needle`.
async fn channel_says(
    graph: &Graph,
    team: &str,
    general: &str,
    needle: &str,
) -> Result<Vec<Value>> {
    poll_until(
        &format!("a channel message with {needle:?}"),
        DEADLINE,
        || async {
            let found: Vec<Value> = graph
                .channel_messages(team, general)
                .await?
                .into_iter()
                .filter(end_to_end::from_bot)
                .filter(|m| message_text(m).contains(needle))
                .collect();
            Ok((!found.is_empty()).then_some(found))
        },
    )
    .await
}

async fn chat_says(stack: &Stack, user: &str, needle: &str) -> Result<Vec<Value>> {
    poll_until(
        &format!("a message with {needle:?} in {user}'s chat"),
        DEADLINE,
        || async {
            let found: Vec<Value> = stack
                .graph
                .bot_messages_to(user)
                .await?
                .into_iter()
                .filter(|m| message_text(m).contains(needle))
                .collect();
            Ok((!found.is_empty()).then_some(found))
        },
    )
    .await
}

#[tokio::test]
async fn a_team_install_welcomes_the_channel_caches_the_roster_and_welcomes_new_members()
-> Result<()> {
    let stack = Stack::start().await?;
    let (team_id, general) = {
        let world = stack.emulator.state().world();
        let team = &world.tenants[0].teams[0];
        let general = team
            .channels
            .iter()
            .find(|c| c.general)
            .context("the team has a General channel")?;
        (team.id.to_string(), general.id.clone())
    };
    // Channel messages are read as a member of the team (delegated token).
    let megan = Graph::user(&stack.emulator, "megan").await?;

    stack.graph.install_for_team(&team_id).await?;
    let intro = channel_says(&megan, &team_id, &general, "was added to this team").await?;
    ensure!(intro.len() == 1, "one introduction: {intro:#?}");
    stack.assert_deliveries_ok().await?;

    let title = "Sprint review moved to Friday";
    let report = stack.bot_api.notify(&json!({"title": title})).await?;
    let members = ["megan", "adele", "alex", "lee"];
    for user in members {
        let id = stack.graph.user_id(user).await?;
        ensure!(
            report.outcome_of(&upn(user), &id).as_deref() == Some("sent"),
            "{user} is a member and should be reached: {:#}",
            report.0
        );
    }
    ensure!(
        report.count("sent") == members.len() as u64,
        "only the members: {:#}",
        report.0
    );
    for user in members {
        chat_says(&stack, user, title).await?;
    }
    ensure!(
        stack.graph.bot_chat("nestor").await?.is_none(),
        "nestor is not a member and has no chat with the bot"
    );

    stack.control.add_member("mark8", "nestor").await?;
    let greeting = channel_says(&megan, &team_id, &general, "Nestor Wilke").await?;
    ensure!(
        message_text(&greeting[0]).contains("Welcome"),
        "{greeting:#?}"
    );
    let personal = chat_says(&stack, "nestor", "new-member guide").await?;
    ensure!(personal.len() == 1, "one personal welcome: {personal:#?}");
    stack.assert_deliveries_ok().await?;

    // The new member is on the roster now.
    let title = "Launch date confirmed";
    let report = stack.bot_api.notify(&json!({"title": title})).await?;
    ensure!(
        report.count("sent") == 5 && report.count("failed") == 0,
        "the four members and nestor: {:#}",
        report.0
    );
    chat_says(&stack, "nestor", title).await?;
    stack.shutdown().await
}
