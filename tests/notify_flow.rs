//! `/api/notify`: opted-in users get the notification and opted-out ones do not, and the
//! conversation references survive a restart of the bot (SQLite).

use anyhow::{Result, ensure};
use end_to_end::{DEADLINE, Stack, is_welcome, message_text, poll_until, upn};
use serde_json::json;

/// Waits until a message from the bot containing `needle` is in the user's chat.
async fn bot_said(stack: &Stack, user: &str, needle: &str) -> Result<()> {
    poll_until(
        &format!("a message with {needle:?} in {user}'s chat"),
        DEADLINE,
        || async {
            let messages = stack.client.bot_messages_to(user).await?;
            Ok(messages
                .iter()
                .any(|m| message_text(m).contains(needle))
                .then_some(()))
        },
    )
    .await
}

async fn count_containing(stack: &Stack, user: &str, needle: &str) -> Result<usize> {
    Ok(stack
        .client
        .bot_messages_to(user)
        .await?
        .iter()
        .filter(|m| message_text(m).contains(needle))
        .count())
}

async fn install_and_wait_for_welcomes(stack: &Stack, users: &[&str]) -> Result<()> {
    for user in users {
        stack.client.install_for_user(user).await?;
    }
    for user in users {
        poll_until(&format!("{user}'s welcome"), DEADLINE, || async {
            let messages = stack.client.bot_messages_to(user).await?;
            Ok(messages.iter().any(is_welcome).then_some(()))
        })
        .await?;
    }
    stack.assert_deliveries_ok().await.map(|_| ())
}

#[tokio::test]
async fn notify_reaches_every_opted_in_user_and_no_opted_out_one() -> Result<()> {
    let stack = Stack::start().await?;
    let users = ["megan", "adele", "alex"];
    install_and_wait_for_welcomes(&stack, &users).await?;

    stack.client.user_says("megan", "stop").await?;
    bot_said(&stack, "megan", "You're opted out").await?;

    let title = "Expense report approved";
    let report = stack
        .bot_api
        .notify(&json!({"title": title, "what": "Report #42", "who": "Lee Gu"}))
        .await?;
    for user in users {
        let id = stack.client.user_id(user).await?;
        let expected = if user == "megan" { "opted_out" } else { "sent" };
        ensure!(
            report.outcome_of(&upn(user), &id).as_deref() == Some(expected),
            "{user} should be {expected}: {:#}",
            report.0
        );
    }
    ensure!(
        report.count("sent") == 2 && report.count("opted_out") == 1,
        "{:#}",
        report.0
    );

    for user in ["adele", "alex"] {
        bot_said(&stack, user, title).await?;
        ensure!(count_containing(&stack, user, title).await? == 1);
    }
    stack.assert_deliveries_ok().await?;
    ensure!(
        count_containing(&stack, "megan", title).await? == 0,
        "megan opted out but got the notification"
    );
    stack.shutdown().await
}

#[tokio::test]
async fn after_a_restart_on_the_same_database_notify_still_reaches_everyone() -> Result<()> {
    let mut stack = Stack::start().await?;
    let users = ["megan", "adele", "alex", "lee"];
    install_and_wait_for_welcomes(&stack, &users).await?;

    stack.restart_bot().await?;

    let title = "Still here after a restart";
    let report = stack.bot_api.notify(&json!({"title": title})).await?;
    ensure!(
        report.count("sent") == users.len() as u64 && report.count("failed") == 0,
        "{:#}",
        report.0
    );
    for user in users {
        bot_said(&stack, user, title).await?;
    }
    // Activities reach the new process, and its answers reach the user.
    stack.client.user_says("lee", "help").await?;
    bot_said(&stack, "lee", "**help**: show this message").await?;
    // The restarted bot still knows everyone was welcomed.
    let again = stack
        .bot_api
        .install(&json!({"users": users.iter().map(|u| upn(u)).collect::<Vec<_>>()}))
        .await?;
    ensure!(
        again.count("already_welcomed") == users.len() as u64,
        "{:#}",
        again.0
    );
    stack.shutdown().await
}

#[tokio::test]
async fn a_user_who_blocked_the_bot_is_reported_and_not_tried_again() -> Result<()> {
    let stack = Stack::start().await?;
    install_and_wait_for_welcomes(&stack, &["megan", "adele"]).await?;
    stack.client.block_bot("adele").await?;

    let adele = stack.client.user_id("adele").await?;
    for round in ["First try", "Second try"] {
        let report = stack.bot_api.notify(&json!({"title": round})).await?;
        ensure!(
            report.outcome_of(&upn("adele"), &adele).as_deref() == Some("blocked")
                && report.count("sent") == 1,
            "{round}: {:#}",
            report.0
        );
        bot_said(&stack, "megan", round).await?;
        ensure!(count_containing(&stack, "adele", round).await? == 0);
    }
    stack.shutdown().await
}
