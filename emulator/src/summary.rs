//! How an activity reads to a person: the text it shows (its text, then its cards' titles and
//! texts) and one line that sums it up, for scenario reports and failed expectations alike.

use serde_json::Value;

/// What a person reads in a message: its text, then the texts and titles of its cards.
pub fn visible_text(activity: &Value) -> String {
    let mut parts = Vec::new();
    if let Some(t) = activity.get("text").and_then(Value::as_str)
        && !t.is_empty()
    {
        parts.push(t.to_string());
    }
    for a in activity
        .get("attachments")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        collect_card_text(a.get("content").unwrap_or(&Value::Null), &mut parts);
    }
    parts.join("\n")
}

fn collect_card_text(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("title" | "subtitle" | "text", Value::String(s)) => out.push(s.clone()),
                    (_, v) => collect_card_text(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| collect_card_text(i, out)),
        _ => {}
    }
}

/// One line for an activity in a report.
pub fn summarize_activity(a: &Value) -> String {
    let kind = a["type"].as_str().unwrap_or("?");
    let mut line = kind.to_string();
    if let Some(action) = a["action"].as_str() {
        line.push_str(&format!(" ({action})"));
    }
    if let Some(event) = a.pointer("/channelData/eventType").and_then(Value::as_str) {
        line.push_str(&format!(" [{event}]"));
    }
    let text = visible_text(a);
    if !text.is_empty() {
        line.push_str(&format!(
            ": \"{}\"",
            truncate(&text.replace('\n', " ⏎ "), 160)
        ));
    }
    line
}

/// At most `max` characters of `s`, with an ellipsis when cut.
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(max).collect::<String>())
    }
}
