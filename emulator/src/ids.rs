//! Deterministic identifiers in Teams' formats.
//!
//! Every id the emulator hands out is derived from names (and the tenant), never from
//! randomness, so two runs of the same scenario produce transcripts that diff cleanly.

use base64::Engine;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// The namespace under which all name-derived GUIDs live.
const NAMESPACE: Uuid = Uuid::from_u128(0x6f1c_2d3e_4a5b_4c6d_8e7f_9a0b_1c2d_3e4f);

/// A stable GUID for `kind` named `name` (e.g. `("user", "tenant/megan")`).
pub fn derived_guid(kind: &str, name: &str) -> Uuid {
    Uuid::new_v5(&NAMESPACE, format!("{kind}:{name}").as_bytes())
}

fn digest(input: &str) -> [u8; 32] {
    Sha256::digest(input.as_bytes()).into()
}

/// A user's Bot Framework id (`29:…`). Real ones are opaque; ours are stable per tenant and user.
pub fn user_mri(tenant: Uuid, user: Uuid) -> String {
    format!(
        "29:1{}",
        URL_SAFE_NO_PAD.encode(digest(&format!("user:{tenant}:{user}")))
    )
}

/// A bot's Bot Framework id (`28:{appId}`).
pub fn bot_mri(app_id: Uuid) -> String {
    format!("28:{app_id}")
}

/// A Graph 1:1 chat id between a bot and a user, in the form Graph uses.
pub fn one_on_one_chat_id(bot_app_id: Uuid, user: Uuid) -> String {
    format!("19:{bot_app_id}_{user}@unq.gbl.spaces")
}

/// The Connector's personal conversation id (`a:…`) for the same 1:1 chat.
pub fn personal_conversation_id(chat_id: &str) -> String {
    format!(
        "a:1{}",
        URL_SAFE_NO_PAD.encode(&digest(&format!("conversation:{chat_id}"))[..24])
    )
}

/// A team's (and its General channel's) thread id.
pub fn team_thread_id(team: Uuid) -> String {
    format!(
        "19:{}@thread.tacv2",
        hex32(&digest(&format!("team:{team}")))
    )
}

/// A non-General channel's thread id.
pub fn channel_thread_id(team: Uuid, channel_name: &str) -> String {
    format!(
        "19:{}@thread.tacv2",
        hex32(&digest(&format!("channel:{team}:{channel_name}")))
    )
}

fn hex32(bytes: &[u8]) -> String {
    bytes[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// An installation id: opaque to clients; Graph's examples decode to `{scopeId}##{teamsAppId}`.
/// URL-safe base64, so the id never puts a `/` into a path.
pub fn installation_id(scope_id: &str, catalog_app: Uuid) -> String {
    URL_SAFE.encode(format!("{scope_id}##{catalog_app}"))
}

/// An app definition id: Graph's examples decode to `{teamsAppId}##{version}`.
pub fn app_definition_id(catalog_app: Uuid, version: &str) -> String {
    URL_SAFE.encode(format!("{catalog_app}##{version}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_in_teams_formats() {
        let tenant = derived_guid("tenant", "contoso");
        let user = derived_guid("user", "contoso/megan");
        assert_eq!(user, derived_guid("user", "contoso/megan"));
        assert_ne!(user, derived_guid("user", "contoso/adele"));
        let mri = user_mri(tenant, user);
        assert!(mri.starts_with("29:1") && mri.len() > 20, "{mri}");
        let chat = one_on_one_chat_id(tenant, user);
        assert!(chat.starts_with("19:") && chat.ends_with("@unq.gbl.spaces"));
        let conv = personal_conversation_id(&chat);
        assert!(conv.starts_with("a:1"));
        assert_eq!(conv, personal_conversation_id(&chat));
        assert!(team_thread_id(user).ends_with("@thread.tacv2"));
        assert_ne!(team_thread_id(user), channel_thread_id(user, "Research"));
    }
}
