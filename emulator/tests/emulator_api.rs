//! The public in-process API: the handle's records, expectations that fail with what did arrive,
//! faults, reset, lookups, and the client's tokens, Graph flow and control calls.

mod common;

use common::*;
use serde_json::{Value, json};
use std::time::Duration;
use teams_emulator::{BotAuth, Fault, Operation, defaults};

const SHORT: Duration = Duration::from_millis(300);

#[tokio::test]
async fn install_for_user_runs_the_graph_flow_and_the_bot_hears_the_install() {
    let env = Env::start(BotAuth::Signed).await;
    let installation = env
        .client
        .install_for_user("megan")
        .await
        .expect("the install");
    let megan = env.emu.user("megan").expect("megan");
    assert_eq!(
        installation.chat_id,
        format!("19:{}_{}@unq.gbl.spaces", defaults::BOT_APP_ID, megan.id)
    );
    assert_eq!(
        env.client.installation_for_user("megan").await.unwrap(),
        Some(installation.id.clone())
    );
    let update = env
        .emu
        .expect_activity("conversationUpdate")
        .for_user("megan")
        .within(DEADLINE)
        .await;
    assert_eq!(update["conversation"]["conversationType"], "personal");
    // the Graph chat id names the same conversation as the Connector's a: id
    let install = env
        .emu
        .expect_activity("installationUpdate")
        .in_conversation(&installation.chat_id)
        .matching(|a| a["action"] == "add")
        .await_ok()
        .await
        .expect("installationUpdate in the chat");
    assert_eq!(install["conversation"]["id"], update["conversation"]["id"]);
    assert!(env.emu.settle(DEADLINE).await);
    let records = env.emu.deliveries();
    assert_eq!(records.len(), 2, "{records:#?}");
    assert!(records.iter().all(|r| r.ok && r.signed));
    assert_eq!(
        env.emu.received_activities(),
        env.bot_activities().await,
        "what the handle says was delivered is what the bot received"
    );
}

#[tokio::test]
async fn a_failed_expectation_lists_every_activity_that_did_arrive() {
    let env = Env::start(BotAuth::None).await;
    env.client.install_for_user("megan").await.expect("install");
    env.client
        .user_says("megan", "hello there")
        .await
        .expect("say");
    let failed = env
        .emu
        .expect_activity("message")
        .for_user("megan")
        .matching(|a| a["text"] == "never written")
        .within(SHORT)
        .await_ok()
        .await
        .expect_err("no such message");
    let conversation = env.emu.received_activities()[0]["conversation"]["id"]
        .as_str()
        .expect("a conversation id")
        .to_string();
    let text = failed.to_string();
    assert!(
        text.starts_with("expected a `message` activity for megan matching the predicate within"),
        "{text}"
    );
    assert!(text.contains("none arrived"), "{text}");
    assert!(text.contains("The bots were sent 3 activities:"), "{text}");
    for line in [
        "1. installationUpdate (add) in ",
        "2. conversationUpdate",
        "3. message: \"hello there\" in ",
    ] {
        assert!(text.contains(line), "{line:?} missing in {text}");
    }
    assert!(text.contains(&conversation), "{text}");
    assert!(text.contains("→ 200"), "{text}");
    assert_eq!(failed.deliveries().len(), 3);
}

#[tokio::test]
async fn an_expectation_on_an_unknown_user_fails_at_once() {
    let env = Env::start(BotAuth::None).await;
    let failed = env
        .emu
        .expect_activity("message")
        .for_user("nobody-at-all")
        .within(DEADLINE)
        .await_ok()
        .await
        .expect_err("no such user");
    assert!(
        failed.to_string().contains("no user 'nobody-at-all'"),
        "{failed}"
    );
    assert!(
        failed
            .to_string()
            .contains("The bots were sent no activity."),
        "{failed}"
    );
}

#[tokio::test]
#[should_panic(expected = "expected a `conversationUpdate` activity for adele")]
async fn awaiting_an_expectation_that_fails_panics_with_the_listing() {
    let env = Env::start(BotAuth::None).await;
    env.client.install_for_user("megan").await.expect("install");
    env.emu
        .expect_activity("conversationUpdate")
        .for_user("adele")
        .within(SHORT)
        .await;
}

#[tokio::test]
async fn expect_no_activity_holds_until_one_arrives() {
    let env = Env::start(BotAuth::None).await;
    env.client.install_for_user("megan").await.expect("install");
    env.emu
        .expect_activity("conversationUpdate")
        .for_user("megan")
        .await;
    env.emu
        .expect_no_activity("message")
        .for_user("megan")
        .within(SHORT)
        .await;
    env.client.user_says("megan", "stop").await.expect("say");
    let failed = env
        .emu
        .expect_no_activity("message")
        .for_user("megan")
        .within(DEADLINE)
        .await_ok()
        .await
        .expect_err("a message arrived");
    let text = failed.to_string();
    assert!(
        text.starts_with("expected no `message` activity for megan within"),
        "{text}"
    );
    assert!(text.contains("one arrived: message: \"stop\""), "{text}");
    // another user's window stays quiet
    env.emu
        .expect_no_activity("message")
        .for_user("adele")
        .within(SHORT)
        .await;
}

#[tokio::test]
async fn a_fault_injected_through_the_handle_fires_and_is_listed() {
    let env = Env::start(BotAuth::Signed).await;
    let installation = env.client.install_for_user("megan").await.expect("install");
    let conversation = env
        .client
        .create_conversation(&env.user_mri(MEGAN))
        .await
        .expect("a conversation");
    // without a Retry-After, so that the next send is not an early retry
    let fault = Fault::on(Operation::Send)
        .status(503)
        .times(1)
        .about("megan");
    env.emu.fault(fault.clone()).expect("a valid fault");
    let refused = env
        .client
        .connector_send(&conversation, &message("first"))
        .await
        .expect_err("the fault fires");
    assert_eq!(refused.status().map(|s| s.as_u16()), Some(503), "{refused}");
    let faults = env.emu.faults();
    assert_eq!(faults.len(), 1);
    assert_eq!(faults[0].fired, 1);
    // listed as the limits match it: megan's chat with the bot
    assert_eq!(faults[0].spec.about, Some(installation.chat_id));
    let sent = env
        .client
        .connector_send(&conversation, &message("second"))
        .await
        .expect("the fault fired once");
    assert!(sent["id"].is_string(), "{sent}");

    let bad = fault.clone().status(200);
    assert!(env.emu.fault(bad).is_err());
    let nobody = fault.about("nobody-at-all");
    let rejected = env.emu.fault(nobody).expect_err("names nobody");
    assert!(rejected.to_string().contains("nobody-at-all"), "{rejected}");
    env.emu.clear_faults();
    assert!(env.emu.faults().is_empty());
}

#[tokio::test]
async fn reset_through_the_handle_forgets_installs_deliveries_and_faults() {
    let env = Env::start(BotAuth::None).await;
    env.client.install_for_user("megan").await.expect("install");
    assert!(env.emu.settle(DEADLINE).await);
    env.emu
        .fault(Fault::on(Operation::Send).status(500))
        .expect("a fault");
    env.emu.reset();
    assert!(env.emu.deliveries().is_empty());
    assert!(env.emu.transcript().is_empty());
    assert!(env.emu.faults().is_empty());
    assert_eq!(
        env.client.installation_for_user("megan").await.unwrap(),
        None
    );
    // and the bot is still where it was
    env.client.install_for_user("megan").await.expect("again");
    env.emu
        .expect_activity("conversationUpdate")
        .for_user("megan")
        .await;
}

#[tokio::test]
async fn users_and_teams_are_found_by_key_upn_and_id() {
    let emu = start().await;
    let megan = emu.user("megan").expect("megan");
    assert_eq!(megan.user_principal_name, MEGAN);
    assert_eq!(megan.tenant_id, defaults::TENANT_ID);
    assert!(megan.mri.starts_with("29:"), "{}", megan.mri);
    for handle in [MEGAN.to_string(), megan.id.to_string(), megan.mri.clone()] {
        assert_eq!(emu.user(&handle).as_ref(), Some(&megan), "{handle}");
    }
    assert_eq!(emu.user("nobody-at-all"), None);

    let team = emu.team("mark8").expect("the team");
    assert_eq!(team.channels.len(), 2);
    assert!(team.channels[0].general);
    assert_eq!(team.channels[0].id, team.general_channel_id);
    assert_eq!(team.members.len(), 4, "megan, adele, alex and lee");
    assert!(team.members.contains(&megan.id));
    assert_eq!(
        emu.team(&team.general_channel_id).map(|t| t.id),
        Some(team.id)
    );
    // Graph knows the team by the id the handle gives
    let graph = emu.client().as_user("megan").await.expect("megan's token");
    let read = graph
        .graph_get(&format!("teams/{}", team.id))
        .await
        .expect("the team through Graph");
    assert_eq!(read["internalId"], team.general_channel_id.as_str());
}

#[tokio::test]
async fn the_clients_tokens_are_the_bots_and_the_users() {
    let emu = start().await;
    let client = emu.client();
    let bot = jwt_claims(&client.bot_token().await.expect("a bot token"));
    assert_eq!(bot["aud"], "https://api.botframework.com");
    assert_eq!(bot["appid"], defaults::BOT_APP_ID.to_string());
    let graph = jwt_claims(&client.graph_token().await.expect("a Graph token"));
    assert_eq!(graph["aud"], "https://graph.microsoft.com");
    assert!(graph["roles"].as_array().is_some_and(|r| !r.is_empty()));
    let user = jwt_claims(&client.user_token("megan").await.expect("megan's token"));
    assert_eq!(user["upn"], MEGAN);
    assert!(user["scp"].is_string(), "{user}");

    let wrong = client
        .app_token(ROLELESS_APP_ID, "not-the-secret", GRAPH_SCOPE)
        .await
        .expect_err("a wrong secret");
    assert_eq!(wrong.status().map(|s| s.as_u16()), Some(401), "{wrong}");

    let me = client.user_id("megan").await.expect("megan's id");
    assert_eq!(me, emu.user("megan").unwrap().id.to_string());
    let missing = client
        .graph_get("users/nobody@contoso.onmicrosoft.com")
        .await
        .expect_err("no such user");
    assert_eq!(missing.status().map(|s| s.as_u16()), Some(404));
    assert!(missing.to_string().contains("404"), "{missing}");
}

#[tokio::test]
async fn the_client_talks_as_users_in_chats_and_channels() {
    let env = Env::start(BotAuth::None).await;
    env.client.install_for_user("megan").await.expect("install");
    let (team, general, _) = env.team();
    env.client
        .install_for_team(&team.to_string())
        .await
        .expect("team install");
    env.client
        .user_says_in_channel("mark8", "General", "adele", "status?", true)
        .await
        .expect("a channel message");
    let heard = env
        .emu
        .expect_activity("message")
        .in_conversation(&general)
        .await;
    assert!(
        heard["text"].as_str().unwrap().ends_with("status?"),
        "{heard}"
    );
    assert_eq!(heard["from"]["id"], env.user_mri(ADELE).as_str());

    env.client
        .add_team_member("mark8", "nestor")
        .await
        .expect("nestor joins");
    env.emu
        .expect_activity("conversationUpdate")
        .for_user("nestor")
        .matching(|a| a["channelData"]["eventType"] == "teamMemberAdded")
        .await;
    env.client
        .remove_team_member("mark8", "nestor")
        .await
        .expect("nestor leaves");
    env.emu
        .expect_activity("conversationUpdate")
        .for_user("nestor")
        .matching(|a| a["channelData"]["eventType"] == "teamMemberRemoved")
        .await;

    env.client.block_bot("megan").await.expect("megan blocks");
    let chat = env.chat_id(MEGAN).await;
    let blocked = env
        .client
        .connector_send(&chat, &message("hi"))
        .await
        .expect_err("blocked");
    assert_eq!(blocked.status().map(|s| s.as_u16()), Some(403), "{blocked}");

    let records = env.client.deliveries(DEADLINE).await.expect("deliveries");
    assert_eq!(records["pending"], 0, "{records}");
    let types: Vec<&Value> = records["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["activityType"])
        .collect();
    assert!(types.contains(&&json!("message")), "{records}");
    env.client
        .uninstall_for_team(&team.to_string())
        .await
        .expect("team uninstall");
    assert_eq!(
        env.client
            .installation_for_team(&team.to_string())
            .await
            .unwrap(),
        None
    );
}
