//! Properties of the Connector under arbitrary input: bodies (JSON values and raw bytes), ids in
//! paths and headers never give a 5xx (other than the intended 501), never kill the listener, and
//! always answer within a deadline with the Connector's error envelope.

mod common;

use common::*;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use reqwest::Method;
use serde_json::{Map, Value, json};
use std::time::Duration;
use teams_emulator::BotAuth;

const ANSWER_WITHIN: Duration = Duration::from_secs(5);
const CASES: u32 = 64;

/// Ids the tests aim at: a live 1:1 chat (both forms), a channel, a thread, and a bot message.
struct Fixture {
    rt: tokio::runtime::Runtime,
    env: Env,
    token: String,
    ids: Vec<String>,
    activity: String,
}

fn fixture(auth: BotAuth) -> Fixture {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let (env, token, ids, activity) = rt.block_on(async {
        // Hundreds of calls on one conversation: Teams' limits would answer most of them 429.
        let env = Env::start_without_throttling(auth).await;
        env.install_for(MEGAN).await;
        env.install_in_team().await;
        let token = env.bot_token().await;
        let conversation = env.open_conversation(Some(&token), MEGAN).await;
        let (_, general, other) = env.team();
        let (_, sent) = env
            .call(
                Method::POST,
                &env.connector_url(&format!("conversations/{conversation}/activities")),
                Some(&token),
                Some(message("seed")),
            )
            .await;
        let activity = sent["id"].as_str().expect("seed id").to_string();
        let ids = vec![
            conversation,
            env.chat_id(MEGAN).await,
            general.clone(),
            other,
            format!("{general};messageid={activity}"),
        ];
        (env, token, ids, activity)
    });
    Fixture {
        rt,
        env,
        token,
        ids,
        activity,
    }
}

fn runner() -> TestRunner {
    TestRunner::new(Config {
        // PROPTEST_CASES=N runs a longer search
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(CASES),
        failure_persistence: None,
        ..Config::default()
    })
}

/// Any JSON value, with object keys that the Connector reads mixed into arbitrary ones.
fn arb_json() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("type".to_string()),
        Just("text".to_string()),
        Just("attachments".to_string()),
        Just("entities".to_string()),
        Just("contentType".to_string()),
        Just("content".to_string()),
        Just("members".to_string()),
        Just("id".to_string()),
        Just("activity".to_string()),
        Just("bot".to_string()),
        Just("isGroup".to_string()),
        Just("tenantId".to_string()),
        Just("tenantID".to_string()),
        Just("channelData".to_string()),
        Just("tenant".to_string()),
        Just("channel".to_string()),
        Just("aadObjectId".to_string()),
        Just("textFormat".to_string()),
        Just("replyToId".to_string()),
        Just("conversation".to_string()),
        ".{0,8}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        Just(json!("message")),
        Just(json!("28:b0f1e2d3-c4b5-4a69-8788-99aabbccddee")),
        Just(json!("e5c3a7d2-4b1f-4e8a-9c6d-2f1b0a9e8d7c")),
        ".{0,24}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key.clone(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// An activity-like object: `type: message` most of the time, plus arbitrary fields.
fn arb_activity() -> impl Strategy<Value = Value> {
    (arb_json(), any::<bool>()).prop_map(|(v, message)| {
        let mut object = match v {
            Value::Object(m) => m,
            other => {
                let mut m = Map::new();
                m.insert("text".into(), other);
                m
            }
        };
        if message {
            object.insert("type".into(), json!("message"));
        }
        Value::Object(object)
    })
}

/// The target of one request: method and path under `v3/`.
fn routes(ids: &[String], activity: &str) -> Vec<(Method, String)> {
    let mut out = vec![(Method::POST, "conversations".to_string())];
    for id in ids {
        let c = encode(id);
        out.push((Method::POST, format!("conversations/{c}/activities")));
        out.push((
            Method::POST,
            format!("conversations/{c}/activities/{activity}"),
        ));
        out.push((
            Method::PUT,
            format!("conversations/{c}/activities/{activity}"),
        ));
        out.push((Method::GET, format!("conversations/{c}/pagedmembers")));
    }
    out
}

struct Answer {
    status: u16,
    body: Vec<u8>,
    content_type: Option<String>,
}

async fn send(
    env: &Env,
    method: Method,
    url: &str,
    headers: &[(String, Vec<u8>)],
    body: Option<Vec<u8>>,
) -> Result<Answer, TestCaseError> {
    let mut request = env.http.request(method.clone(), url);
    for (name, value) in headers {
        let value = reqwest::header::HeaderValue::from_bytes(value)
            .map_err(|e| TestCaseError::reject(format!("not a header value: {e}")))?;
        request = request.header(name.as_str(), value);
    }
    if let Some(b) = body {
        request = request.body(b);
    }
    let response = tokio::time::timeout(ANSWER_WITHIN, request.send())
        .await
        .map_err(|_| TestCaseError::fail(format!("{method} {url}: no answer within the deadline")))?
        .map_err(|e| TestCaseError::fail(format!("{method} {url}: the request failed: {e}")))?;
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = tokio::time::timeout(ANSWER_WITHIN, response.bytes())
        .await
        .map_err(|_| TestCaseError::fail(format!("{method} {url}: the body did not arrive")))?
        .map_err(|e| TestCaseError::fail(format!("{method} {url}: the body failed: {e}")))?
        .to_vec();
    Ok(Answer {
        status,
        body,
        content_type,
    })
}

/// No 5xx but 501, and every error is the Connector's envelope.
fn check(what: &str, a: &Answer) -> Result<(), TestCaseError> {
    let text = String::from_utf8_lossy(&a.body);
    prop_assert!(
        a.status < 500 || a.status == 501,
        "{what}: {} {}",
        a.status,
        text
    );
    if a.status >= 400 {
        prop_assert!(
            a.content_type
                .as_deref()
                .is_some_and(|c| c.starts_with("application/json")),
            "{what}: error without JSON: {:?}",
            a.content_type
        );
        let v: Value = serde_json::from_slice(&a.body).map_err(|e| {
            TestCaseError::fail(format!("{what}: error body not JSON ({e}): {text}"))
        })?;
        prop_assert!(v["error"]["code"].is_string(), "{what}: {text}");
        prop_assert!(v["error"]["message"].is_string(), "{what}: {text}");
    }
    Ok(())
}

/// After a run the emulator still serves.
fn still_alive(f: &Fixture) {
    f.rt.block_on(async {
        let (status, _) = f
            .env
            .call(Method::GET, &f.env.url("/_emulator/health"), None, None)
            .await;
        assert!(status.is_success());
        let (status, body) = f
            .env
            .call(
                Method::POST,
                &f.env
                    .connector_url(&format!("conversations/{}/activities", f.ids[0])),
                Some(&f.token),
                Some(message("still here")),
            )
            .await;
        assert_eq!(status.as_u16(), 201, "{body}");
    });
}

fn json_headers(token: &str) -> Vec<(String, Vec<u8>)> {
    vec![
        ("content-type".into(), b"application/json".to_vec()),
        (
            "authorization".into(),
            format!("Bearer {token}").into_bytes(),
        ),
    ]
}

#[test]
fn arbitrary_json_bodies_never_give_a_server_error() {
    let f = fixture(BotAuth::Signed);
    let targets = routes(&f.ids, &f.activity);
    let strategy = (0..targets.len(), arb_activity());
    runner()
        .run(&strategy, |(i, body)| {
            let (method, rest) = &targets[i];
            let url = f.env.connector_url(rest);
            f.rt.block_on(async {
                let a = send(
                    &f.env,
                    method.clone(),
                    &url,
                    &json_headers(&f.token),
                    Some(body.to_string().into_bytes()),
                )
                .await?;
                check(&format!("{method} {rest} {body}"), &a)
            })
        })
        .unwrap();
    still_alive(&f);
}

#[test]
fn arbitrary_json_in_conversation_creation_never_gives_a_server_error() {
    let f = fixture(BotAuth::None);
    let url = f.env.connector_url("conversations");
    let strategy = (
        arb_json(),
        any::<bool>(),
        prop::sample::select(f.ids.clone()),
        any::<bool>(),
    );
    runner()
        .run(&strategy, |(extra, is_group, channel, with_member)| {
            // a plausible request with arbitrary parts laid over it
            let mut body = json!({
                "isGroup": is_group,
                "bot": {"id": "28:b0f1e2d3-c4b5-4a69-8788-99aabbccddee"},
                "tenantId": "e5c3a7d2-4b1f-4e8a-9c6d-2f1b0a9e8d7c",
                "channelData": {"channel": {"id": channel}},
            });
            if with_member {
                body["members"] = json!([{"id": "29:unknown"}]);
            }
            if let Value::Object(m) = extra {
                for (k, v) in m {
                    body[k] = v;
                }
            }
            f.rt.block_on(async {
                let a = send(
                    &f.env,
                    Method::POST,
                    &url,
                    &json_headers("null"),
                    Some(body.to_string().into_bytes()),
                )
                .await?;
                check(&format!("create {body}"), &a)
            })
        })
        .unwrap();
    still_alive(&f);
}

#[test]
fn arbitrary_bytes_never_give_a_server_error() {
    let f = fixture(BotAuth::Signed);
    let targets = routes(&f.ids, &f.activity);
    let strategy = (
        0..targets.len(),
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..512),
            ".{0,256}".prop_map(String::into_bytes),
            arb_json().prop_map(|v| {
                // valid JSON cut short
                let s = v.to_string().into_bytes();
                s[..s.len() / 2].to_vec()
            }),
        ],
    );
    runner()
        .run(&strategy, |(i, body)| {
            let (method, rest) = &targets[i];
            let url = f.env.connector_url(rest);
            f.rt.block_on(async {
                let a = send(
                    &f.env,
                    method.clone(),
                    &url,
                    &json_headers(&f.token),
                    Some(body.clone()),
                )
                .await?;
                check(&format!("{method} {rest} {body:?}"), &a)
            })
        })
        .unwrap();
    still_alive(&f);
}

/// Any string, percent-encoded; or one of the live ids, mangled.
fn arb_id(ids: Vec<String>) -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>().prop_map(|s| encode(&s)),
        ".{0,40}".prop_map(|s| encode(&s)),
        (prop::sample::select(ids.clone()), ".{0,12}")
            .prop_map(|(id, tail)| encode(&format!("{id}{tail}"))),
        (prop::sample::select(ids), ".{0,12}")
            .prop_map(|(id, tail)| encode(&format!("{id};messageid={tail}"))),
        // raw percent signs and bytes that do not decode to UTF-8
        "(%[0-9A-Fa-f]{2}|%|[a-z:;@.]){1,20}",
    ]
}

#[test]
fn arbitrary_ids_in_paths_never_give_a_server_error() {
    let f = fixture(BotAuth::None);
    let strategy = (
        arb_id(f.ids.clone()),
        prop_oneof![Just(f.activity.clone()), arb_id(vec![f.activity.clone()])],
        0..10usize,
        "[a-zA-Z=&%0-9-]{0,40}",
    );
    runner()
        .run(&strategy, |(cid, other, route, query)| {
            let (method, rest, body) = match route {
                0 => (
                    Method::POST,
                    format!("conversations/{cid}/activities"),
                    Some(message("x")),
                ),
                1 => (
                    Method::POST,
                    format!("conversations/{cid}/activities/{other}"),
                    Some(message("x")),
                ),
                2 => (
                    Method::PUT,
                    format!("conversations/{cid}/activities/{other}"),
                    Some(message("x")),
                ),
                3 => (
                    Method::DELETE,
                    format!("conversations/{cid}/activities/{other}"),
                    None,
                ),
                4 => (Method::GET, format!("conversations/{cid}/members"), None),
                5 => (
                    Method::GET,
                    format!("conversations/{cid}/members/{other}"),
                    None,
                ),
                6 => (
                    Method::GET,
                    format!("conversations/{cid}/pagedmembers?{query}"),
                    None,
                ),
                7 => (
                    Method::GET,
                    format!("conversations/{cid}/pagedMembers?pageSize={query}"),
                    None,
                ),
                8 => (Method::GET, format!("teams/{cid}"), None),
                _ => (Method::GET, format!("teams/{cid}/conversations"), None),
            };
            let url = f.env.connector_url(&rest);
            f.rt.block_on(async {
                let a = send(
                    &f.env,
                    method.clone(),
                    &url,
                    &[("content-type".into(), b"application/json".to_vec())],
                    body.map(|b| b.to_string().into_bytes()),
                )
                .await?;
                check(&format!("{method} {rest}"), &a)
            })
        })
        .unwrap();
    still_alive(&f);
}

#[test]
fn arbitrary_headers_never_give_a_server_error() {
    let f = fixture(BotAuth::Signed);
    let targets = routes(&f.ids, &f.activity);
    let token = f.token.clone();
    let authorization = prop_oneof![
        Just(None),
        prop::collection::vec(any::<u8>(), 0..64).prop_map(Some),
        "(Bearer|bearer|Basic|) ?.{0,40}".prop_map(|s| Some(s.into_bytes())),
        // a real token, damaged
        (0..token.len(), any::<u8>()).prop_map(move |(i, b)| {
            let mut t = format!("Bearer {token}").into_bytes();
            let at = 7 + i;
            t[at] = b;
            Some(t)
        }),
    ];
    let content_type = prop_oneof![
        Just(None),
        Just(Some(b"application/json; charset=utf-8".to_vec())),
        Just(Some(b"text/plain".to_vec())),
        prop::collection::vec(any::<u8>(), 0..40).prop_map(Some),
    ];
    let strategy = (0..targets.len(), authorization, content_type);
    // the bytes a header value may hold: no control characters but tab
    let header_safe = |v: Vec<u8>| -> Vec<u8> {
        v.into_iter()
            .filter(|b| (*b >= 0x20 && *b != 0x7f) || *b == b'\t')
            .collect()
    };
    runner()
        .run(&strategy, |(i, authorization, content_type)| {
            let authorization = authorization.map(header_safe);
            let content_type = content_type.map(header_safe);
            let (method, rest) = &targets[i];
            let url = f.env.connector_url(rest);
            let mut headers = Vec::new();
            if let Some(a) = authorization {
                headers.push(("authorization".to_string(), a));
            }
            if let Some(c) = content_type {
                headers.push(("content-type".to_string(), c));
            }
            f.rt.block_on(async {
                let a = send(
                    &f.env,
                    method.clone(),
                    &url,
                    &headers,
                    Some(message("hi").to_string().into_bytes()),
                )
                .await?;
                check(&format!("{method} {rest} {headers:?}"), &a)
            })
        })
        .unwrap();
    still_alive(&f);
}
