//! The small languages of scenario files: durations (`500ms`, `5s`, `2m`), partial JSON
//! matches, the visible text of a message, and `${…}` references to known or earlier values.

pub use crate::summary::visible_text;
use crate::tenant::Tenant;
use regex::Regex;
use serde_json::Value;
use std::sync::LazyLock;
use std::time::Duration;

pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (number, unit) = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .map(|i| t.split_at(i))
        .ok_or_else(|| {
            format!("'{text}' is not a duration: give a number and a unit (500ms, 5s, 2m)")
        })?;
    let n: f64 = number.parse().map_err(|_| {
        format!("'{text}' is not a duration: give a number and a unit (500ms, 5s, 2m)")
    })?;
    let secs = match unit.trim() {
        "ms" => n / 1000.0,
        "s" => n,
        "m" | "min" => n * 60.0,
        other => {
            return Err(format!(
                "'{text}' is not a duration: unknown unit '{other}' (use ms, s or m)"
            ));
        }
    };
    if !secs.is_finite() || !(0.0..=3600.0).contains(&secs) {
        return Err(format!("'{text}' is not a duration between 0 and 60m"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// `expected` is contained in `actual`: objects by key, arrays by some element each, scalars
/// equal. An empty expected array means an empty array: `value: []` asks for "none".
pub fn partial_match(expected: &Value, actual: &Value) -> bool {
    match (expected, actual) {
        (Value::Array(e), Value::Array(a)) if e.is_empty() => a.is_empty(),
        (Value::Object(e), Value::Object(a)) => e
            .iter()
            .all(|(k, ev)| a.get(k).is_some_and(|av| partial_match(ev, av))),
        (Value::Array(e), Value::Array(a)) => {
            e.iter().all(|ev| a.iter().any(|av| partial_match(ev, av)))
        }
        (Value::Number(e), Value::Number(a)) => e.as_f64() == a.as_f64(),
        (e, a) => e == a,
    }
}

static REFERENCE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\$\{([^}]*)\}").expect("valid regex"));

const ROOTS: &[&str] = &[
    "users", "teams", "tenant", "bot", "emulator", "last", "saved",
];

/// Checks `${…}` references in `text` that can be checked before running.
pub fn check_references(text: &str, tenant: &Tenant) -> Result<(), String> {
    for cap in REFERENCE.captures_iter(text) {
        let path = cap[1].trim();
        let mut parts = path.split('.');
        let root = parts.next().unwrap_or_default();
        if !ROOTS.contains(&root) {
            return Err(format!(
                "'${{{path}}}': unknown root '{root}' (use one of {})",
                ROOTS.join(", ")
            ));
        }
        match (root, parts.next()) {
            ("users", Some(u)) if super::queries::user(tenant, u).is_err() => {
                return Err(format!("'${{{path}}}': no user '{u}'"));
            }
            ("teams", Some(t)) if super::queries::team(tenant, t).is_err() => {
                return Err(format!("'${{{path}}}': no team '{t}'"));
            }
            ("users" | "teams", None) => {
                return Err(format!(
                    "'${{{path}}}': name a user or team, e.g. users.megan.id"
                ));
            }
            _ => {}
        }
    }
    if text.contains("${") && !REFERENCE.is_match(text) {
        return Err(format!("'{text}': a '${{' is not closed"));
    }
    Ok(())
}

pub fn check_value_references(v: &Value, tenant: &Tenant) -> Result<(), String> {
    match v {
        Value::String(s) => check_references(s, tenant),
        Value::Array(items) => items
            .iter()
            .try_for_each(|i| check_value_references(i, tenant)),
        Value::Object(map) => map
            .values()
            .try_for_each(|i| check_value_references(i, tenant)),
        _ => Ok(()),
    }
}

/// Replaces `${a.b.c}` with values from `context`; a missing value is an error naming it.
pub fn interpolate(text: &str, context: &Value) -> Result<String, String> {
    let mut missing = None;
    let out = REFERENCE.replace_all(text, |cap: &regex::Captures| {
        let path = cap[1].trim();
        let pointer = format!("/{}", path.replace('.', "/"));
        match context.pointer(&pointer) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => {
                missing.get_or_insert_with(|| path.to_string());
                String::new()
            }
            Some(other) => other.to_string(),
        }
    });
    match missing {
        Some(path) => Err(format!("'${{{path}}}' has no value here")),
        None => Ok(out.into_owned()),
    }
}

/// [`interpolate`] in every string of a JSON value; a string that is only a reference takes
/// the referenced value's type.
pub fn interpolate_value(v: &Value, context: &Value) -> Result<Value, String> {
    Ok(match v {
        Value::String(s) => {
            if let Some(cap) = REFERENCE.captures(s)
                && cap.get(0).is_some_and(|m| m.as_str() == s)
            {
                let pointer = format!("/{}", cap[1].trim().replace('.', "/"));
                match context.pointer(&pointer) {
                    Some(found) if !found.is_null() => return Ok(found.clone()),
                    _ => return Err(format!("'{s}' has no value here")),
                }
            }
            Value::String(interpolate(s, context)?)
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|i| interpolate_value(i, context))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), interpolate_value(v, context)?)))
                .collect::<Result<_, String>>()?,
        ),
        other => other.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("5h").is_err());
    }

    #[test]
    fn partial_matches_are_containment() {
        let actual = json!({"type": "conversationUpdate", "membersAdded": [{"id": "28:x"}, {"id": "29:y", "name": "M"}], "n": 1});
        assert!(partial_match(
            &json!({"membersAdded": [{"id": "29:y"}]}),
            &actual
        ));
        assert!(partial_match(&json!({"n": 1.0}), &actual));
        assert!(!partial_match(
            &json!({"membersAdded": [{"id": "29:z"}]}),
            &actual
        ));
        assert!(!partial_match(&json!({"missing": null}), &actual));
        assert!(
            !partial_match(&json!({"membersAdded": []}), &actual),
            "[] means none"
        );
        assert!(partial_match(&json!({"value": []}), &json!({"value": []})));
    }

    #[test]
    fn visible_text_includes_cards() {
        let a = json!({"text": "Hi", "attachments": [{"contentType": "application/vnd.microsoft.card.hero", "content": {"title": "Welcome", "buttons": [{"title": "Help"}]}}]});
        assert_eq!(visible_text(&a), "Hi\nWelcome\nHelp");
    }

    #[test]
    fn references_resolve_or_say_what_is_missing() {
        let ctx = json!({"users": {"megan": {"id": "u1"}}, "last": {"status": 201}});
        assert_eq!(
            interpolate("/users/${users.megan.id}/chats", &ctx).unwrap(),
            "/users/u1/chats"
        );
        assert_eq!(
            interpolate_value(&json!({"s": "${last.status}"}), &ctx).unwrap(),
            json!({"s": 201})
        );
        assert!(
            interpolate("${last.chat_id}", &ctx)
                .unwrap_err()
                .contains("last.chat_id")
        );
    }
}
