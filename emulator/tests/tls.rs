//! HTTPS: the emulator serves TLS with certificates from its local authority; a client that
//! trusts the authority gets tokens and calls Graph, one that does not is refused.

use serde_json::Value;
use teams_emulator::tls::TlsIdentity;
use teams_emulator::{Emulator, defaults};

#[tokio::test]
async fn a_client_that_trusts_the_local_authority_talks_https() {
    let identity = TlsIdentity::generate().expect("an authority");
    let ca = reqwest::Certificate::from_pem(identity.ca_pem.as_bytes()).expect("PEM");
    let emulator = Emulator::builder()
        .tls(identity)
        .start()
        .await
        .expect("start");
    let url = emulator.url();
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    assert!(
        emulator.service_url().starts_with("https://"),
        "activities carry the https serviceUrl"
    );

    let trusting = reqwest::Client::builder()
        .add_root_certificate(ca)
        .build()
        .expect("client");
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", &defaults::BOT_APP_ID.to_string()),
        ("client_secret", defaults::BOT_APP_SECRET),
        ("scope", "https://graph.microsoft.com/.default"),
    ];
    let token: Value = trusting
        .post(emulator.token_url(defaults::TENANT_ID))
        .form(&form)
        .send()
        .await
        .expect("token over https")
        .json()
        .await
        .expect("json");
    let token = token["access_token"].as_str().expect("access_token");
    let users: Value = trusting
        .get(format!("{}/users", emulator.graph_url()))
        .bearer_auth(token)
        .send()
        .await
        .expect("Graph over https")
        .json()
        .await
        .expect("json");
    assert!(
        users["value"].as_array().is_some_and(|v| v.len() >= 5),
        "{users}"
    );
    let openid: Value = trusting
        .get(emulator.channel_openid_url())
        .send()
        .await
        .expect("metadata")
        .json()
        .await
        .expect("json");
    assert!(
        openid["jwks_uri"]
            .as_str()
            .is_some_and(|u| u.starts_with("https://")),
        "{openid}"
    );

    // The emulator's own client trusts the authority it serves with.
    let listed = emulator
        .client()
        .graph_list("users")
        .await
        .expect("Graph over https through the emulator's client");
    assert!(listed.len() >= 5, "{listed:?}");

    // A client that does not trust the authority cannot connect.
    let untrusting = reqwest::Client::new();
    assert!(
        untrusting
            .get(format!("{url}/_emulator/health"))
            .send()
            .await
            .is_err()
    );
    emulator.shutdown().await;
}

#[test]
fn the_authority_kept_in_a_folder_is_the_same_after_a_restart() {
    let dir = std::env::temp_dir().join(format!("teams-emulator-tls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let first = TlsIdentity::load_or_create(&dir).expect("created");
    let second = TlsIdentity::load_or_create(&dir).expect("loaded");
    assert_eq!(first.ca_pem, second.ca_pem);
    assert_eq!(
        second.ca_file.as_deref(),
        Some(dir.join("ca.pem").as_path())
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_certificate_signed_after_a_restart_verifies_against_the_kept_authority() {
    let dir =
        std::env::temp_dir().join(format!("teams-emulator-tls-restart-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let kept = TlsIdentity::load_or_create(&dir).expect("created").ca_pem;
    let restarted = TlsIdentity::load_or_create(&dir).expect("loaded");
    let emulator = Emulator::builder()
        .tls(restarted)
        .start()
        .await
        .expect("start");
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(kept.as_bytes()).expect("PEM"))
        .build()
        .expect("client");
    let health = client
        .get(format!("{}/_emulator/health", emulator.url()))
        .send()
        .await
        .expect("https");
    assert_eq!(health.status(), 200);
    emulator.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
