//! Team installs: the channel introduction in General, the cached roster that lets notify reach
//! every member 1:1, and the welcomes for a member who joins later.

use anyhow::{Context, Result, ensure};
use end_to_end::{DEADLINE, Stack, message_text, poll_until, upn};
use serde_json::{Value, json};
use teams_emulator::EmulatorClient;

/// Waits until the team's General channel has a message from the bot containing `needle`.
async fn channel_says(
    graph: &EmulatorClient,
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
                .client
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
    let (team_id, general) = mark8(&stack)?;
    // Channel messages are read as a member of the team (delegated token).
    let megan = stack.client.as_user("megan").await?;

    stack.client.install_for_team(&team_id).await?;
    let intro = channel_says(&megan, &team_id, &general, "was added to this team").await?;
    ensure!(intro.len() == 1, "one introduction: {intro:#?}");
    stack.assert_deliveries_ok().await?;

    let title = "Sprint review moved to Friday";
    let report = stack.bot_api.notify(&json!({"title": title})).await?;
    let members = ["megan", "adele", "alex", "lee"];
    for user in members {
        let id = stack.client.user_id(user).await?;
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
        stack.client.chat_with_bot("nestor").await?.is_none(),
        "nestor is not a member and has no chat with the bot"
    );

    stack.client.add_team_member("mark8", "nestor").await?;
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

/// The Mark 8 team's group id and General channel id.
fn mark8(stack: &Stack) -> Result<(String, String)> {
    let team = stack
        .emulator
        .team("mark8")
        .context("the default tenant has the Mark 8 team")?;
    let general = team
        .channels
        .iter()
        .find(|c| c.general)
        .context("the team has a General channel")?;
    Ok((team.id.to_string(), general.id.clone()))
}

#[tokio::test]
async fn channel_notices_go_to_general_and_leavers_and_an_uninstalled_team_are_not_messaged()
-> Result<()> {
    let stack = Stack::start().await?;
    let (team_id, general) = mark8(&stack)?;
    let megan = stack.client.as_user("megan").await?;
    stack.client.install_for_team(&team_id).await?;
    channel_says(&megan, &team_id, &general, "was added to this team").await?;
    stack.assert_deliveries_ok().await?;

    let report = stack
        .bot_api
        .notify(&json!({"channel": true, "title": "Release train leaves at noon"}))
        .await?;
    ensure!(report.count("sent") == 1, "{:#}", report.0);
    channel_says(&megan, &team_id, &general, "Release train leaves at noon").await?;

    // Adele leaves: the bot hears it and no longer has a way to reach her.
    let response = reqwest::Client::new()
        .delete(format!(
            "{}/_emulator/teams/mark8/members/adele",
            stack.emulator.url()
        ))
        .send()
        .await?;
    ensure!(response.status().is_success(), "{}", response.status());
    stack.assert_deliveries_ok().await?;
    let report = stack
        .bot_api
        .notify(&json!({"title": "After Adele left"}))
        .await?;
    let adele = stack.client.user_id("adele").await?;
    ensure!(
        report.count("sent") == 3
            && report
                .outcome_of(&upn("adele"), &adele)
                .is_none_or(|o| o == "not_installed"),
        "{:#}",
        report.0
    );
    let adele_got = stack
        .client
        .bot_messages_to("adele")
        .await?
        .iter()
        .filter(|m| message_text(m).contains("After Adele left"))
        .count();
    ensure!(adele_got == 0, "adele left the team but was messaged");

    // The team removes the app: nothing more goes to the channel or the members.
    let installation = stack
        .client
        .graph_list(&format!("teams/{team_id}/installedApps?$expand=teamsApp"))
        .await?
        .into_iter()
        .find(|i| i["teamsApp"]["externalId"] == teams_emulator::defaults::MANIFEST_ID.to_string())
        .and_then(|i| i["id"].as_str().map(str::to_owned))
        .context("the team installation")?;
    stack
        .client
        .graph_delete(&format!("teams/{team_id}/installedApps/{installation}"))
        .await?;
    stack.assert_deliveries_ok().await?;
    let report = stack
        .bot_api
        .notify(&json!({"channel": true, "title": "Nobody hears this"}))
        .await?;
    ensure!(report.count("sent") == 0, "{:#}", report.0);
    let report = stack
        .bot_api
        .notify(&json!({"title": "Nobody hears this"}))
        .await?;
    ensure!(report.count("sent") == 0, "{:#}", report.0);
    for user in ["megan", "adele", "alex", "lee"] {
        ensure!(
            !stack
                .client
                .bot_messages_to(user)
                .await?
                .iter()
                .any(|m| message_text(m).contains("Nobody hears this")),
            "{user} was messaged after the team uninstalled the app"
        );
    }
    ensure!(
        !megan
            .channel_messages(&team_id, &general)
            .await?
            .iter()
            .any(|m| message_text(m).contains("Nobody hears this")),
        "the channel got a notice after the uninstall"
    );
    stack.shutdown().await
}
