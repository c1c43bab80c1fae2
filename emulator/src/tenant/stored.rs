//! An activity kept once: its compact JSON, shared (not copied) by the chat or channel that holds
//! the message, the transcript and the delivery records, and rendered on read.
//!
//! A small message costs its JSON text (a few hundred bytes) instead of a tree of maps and
//! strings, and a transcript entry costs a pointer.

use serde_json::Value;
use std::sync::Arc;

#[derive(Clone, PartialEq, Eq)]
pub struct StoredActivity(Arc<str>);

impl StoredActivity {
    pub fn new(activity: &Value) -> Self {
        Self(Arc::from(activity.to_string()))
    }

    /// The activity as JSON (parsed again: readers are rarer than writers).
    pub fn value(&self) -> Value {
        serde_json::from_str(&self.0).unwrap_or(Value::Null)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Bytes kept for this activity (its JSON text).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<Value> for StoredActivity {
    fn from(value: Value) -> Self {
        Self::new(&value)
    }
}

impl std::fmt::Debug for StoredActivity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl serde::Serialize for StoredActivity {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // the text is JSON already: embed it as it is
        let raw: &serde_json::value::RawValue =
            serde_json::from_str(&self.0).map_err(serde::ser::Error::custom)?;
        raw.serialize(serializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_what_it_stored_and_shares_one_copy() {
        let activity = json!({"type": "message", "text": "hi", "from": {"id": "28:x"}});
        let stored = StoredActivity::new(&activity);
        assert_eq!(stored.value(), activity);
        let shared = stored.clone();
        assert!(std::ptr::eq(stored.as_str(), shared.as_str()));
        assert_eq!(serde_json::to_value(&shared).unwrap(), activity);
    }
}
