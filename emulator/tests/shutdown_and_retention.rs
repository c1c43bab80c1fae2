//! Shutdown as one piece (the listener closes, queued deliveries are settled first) and the
//! retention that bounds the transcript and delivery records, seen from outside.

use std::time::{Duration, Instant};
use teams_emulator::{BotAuth, Emulator};

const DEADLINE: Duration = Duration::from_secs(10);

/// Polls until nothing accepts connections at `addr`, or the deadline passes.
async fn closed_within(addr: std::net::SocketAddr, deadline: Duration) -> bool {
    let until = Instant::now() + deadline;
    while Instant::now() < until {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            return true;
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

#[tokio::test]
async fn shutdown_settles_deliveries_then_closes_the_listener() {
    let emulator = Emulator::builder()
        .bot_auth(BotAuth::None)
        .start()
        .await
        .unwrap();
    let addr = emulator.addr();
    // nobody listens at the bot's endpoint: each delivery fails fast, and is recorded
    emulator.client().install_for_user("megan").await.unwrap();
    emulator.shutdown().await;
    assert!(
        closed_within(addr, DEADLINE).await,
        "the listener still accepts after shutdown"
    );
}

#[tokio::test]
async fn dropping_the_handle_stops_the_listener_without_waiting() {
    let emulator = Emulator::start().await.unwrap();
    let addr = emulator.addr();
    drop(emulator);
    assert!(
        closed_within(addr, DEADLINE).await,
        "the listener still accepts after the handle was dropped"
    );
}

#[tokio::test]
async fn retention_keeps_the_newest_entries_and_says_how_many_went() {
    let emulator = Emulator::builder()
        .bot_auth(BotAuth::None)
        .throttling(false)
        .retain(3)
        .start()
        .await
        .unwrap();
    let client = emulator.client();
    let installation = client.install_for_user("megan").await.unwrap();
    assert!(emulator.settle(DEADLINE).await);
    for i in 0..5 {
        client
            .connector_send(
                &installation.chat_id,
                &serde_json::json!({"type": "message", "text": format!("note {i}")}),
            )
            .await
            .unwrap();
    }
    let transcript = emulator.transcript();
    let texts: Vec<&str> = transcript
        .iter()
        .filter_map(|a| a["text"].as_str())
        .collect();
    assert_eq!(texts, ["note 2", "note 3", "note 4"], "{transcript:#?}");
    // two install activities and two of the notes went
    let health = client
        .control(reqwest::Method::GET, "/health", None)
        .await
        .unwrap()
        .json;
    assert_eq!(health["dropped"]["transcript"], 4, "{health}");
    assert_eq!(health["retain"], 3);
    // the chat keeps every message: it is state, not a log
    let messages = client.chat_messages(&installation.chat_id).await.unwrap();
    assert_eq!(messages.len(), 5, "{messages:#?}");
    emulator.shutdown().await;
}
