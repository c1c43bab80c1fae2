//! Property tests: whatever a client sends to Graph or the token endpoint (bodies, path segments,
//! query options, forms, `Authorization` headers), the emulator answers within a deadline with a
//! 4xx in the surface's own envelope, never a 5xx (other than 501 for a route it does not
//! emulate), and never drops the connection.

mod common;

use common::*;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use reqwest::{Method, RequestBuilder};
use serde_json::{Value, json};
use std::time::Duration;
use teams_emulator::graph::odata::parse_filter;
use teams_emulator::{EmulatorHandle, defaults};

const DEADLINE: Duration = Duration::from_secs(5);
const CASES: u32 = 96;

/// One emulator for one property, with the ids a client would know after the seed flow.
struct Env {
    rt: tokio::runtime::Runtime,
    emu: EmulatorHandle,
    http: reqwest::Client,
    token: String,
    app_id: String,
    known: Vec<String>,
}

impl Env {
    fn new() -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime");
        let (emu, token, app_id, known) = rt.block_on(async {
            let emu = start().await;
            let token = bot_graph_token(&emu).await;
            let app_id = catalog_id(&emu, &token, defaults::MANIFEST_ID).await;
            let alex = user_id(&emu, &token, "alex").await;
            let installs = format!("{}/users/{alex}/teamwork/installedApps", emu.graph_url());
            post(&installs, &token, &bind(&app_id)).await.expect(201);
            let list = get(&installs, &token).await;
            let installation = list.expect(200)["value"][0]["id"]
                .as_str()
                .unwrap()
                .to_string();
            let chat = get(&format!("{installs}/{installation}/chat"), &token).await;
            let chat = chat.expect(200)["id"].as_str().unwrap().to_string();
            let known = vec![
                alex,
                upn("megan"),
                installation,
                chat,
                app_id.clone(),
                team_id(&emu).to_string(),
                defaults::MANIFEST_ID.to_string(),
            ];
            (emu, token, app_id, known)
        });
        Self {
            rt,
            emu,
            http: client(),
            token,
            app_id,
            known,
        }
    }

    /// Sends, and checks the answer came in time and is not a server error.
    fn check(&self, what: &str, graph: bool, request: RequestBuilder) {
        let answer = self.rt.block_on(async {
            tokio::time::timeout(DEADLINE, async {
                let response = request.send().await.unwrap_or_else(|e| {
                    panic!("{what}: no HTTP answer (did a handler panic?): {e}")
                });
                read(response).await
            })
            .await
            .unwrap_or_else(|_| panic!("{what}: no answer within {DEADLINE:?}"))
        });
        if answer.status.is_server_error() {
            assert!(
                answer.status == 501 && answer.json["error"]["code"] == "NotSupportedByEmulator",
                "{what}: {} {}",
                answer.status,
                answer.text
            );
        }
        if graph && !answer.status.is_success() {
            assert_graph_envelope(&answer.json);
        }
    }

    fn graph(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}/{path}", self.emu.graph_url()))
    }
}

fn run<S: Strategy>(strategy: S, test: impl Fn(S::Value)) {
    let mut runner = TestRunner::new(Config {
        cases: CASES,
        failure_persistence: None,
        ..Config::default()
    });
    if let Err(e) = runner.run(&strategy, |value| {
        test(value);
        Ok(())
    }) {
        panic!("{e}");
    }
}

fn encode(segment: &str) -> String {
    utf8_percent_encode(segment, NON_ALPHANUMERIC).to_string()
}

/// Arbitrary text, and now and then something that looks like what it stands for.
fn text(known: Vec<String>) -> impl Strategy<Value = String> {
    prop_oneof![
        3 => any::<String>(),
        2 => "[ -~]{0,40}",
        1 => proptest::sample::select(known),
        1 => Just(String::new()),
        1 => "[0-9a-f-]{36}",
    ]
}

/// An arbitrary JSON value, biased toward install-body shapes.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        any::<i64>().prop_map(Value::from),
        any::<String>().prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        let key = prop_oneof![
            Just("teamsApp@odata.bind".to_string()),
            Just("consentedPermissionSet".to_string()),
            Just("resourceSpecificPermissions".to_string()),
            any::<String>(),
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key, inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

#[derive(Debug, Clone)]
enum Body {
    Bytes(Vec<u8>),
    Json(Value),
}

#[test]
fn arbitrary_install_bodies_never_fail_the_server() {
    let env = Env::new();
    let bind_prefix = "https://graph.microsoft.com/v1.0/appCatalogs/teamsApps/";
    let binds = prop_oneof![
        any::<String>(),
        text(env.known.clone()).prop_map(move |id| format!("{bind_prefix}{id}")),
        text(env.known.clone()).prop_map(move |id| format!("{bind_prefix}('{id}')")),
    ];
    let app_id = env.app_id.clone();
    let bodies = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..256).prop_map(Body::Bytes),
        json_value().prop_map(Body::Json),
        (binds, json_value()).prop_map(|(b, consent)| {
            Body::Json(json!({"teamsApp@odata.bind": b, "consentedPermissionSet": consent}))
        }),
        json_value().prop_map(move |consent| {
            Body::Json(json!({
                "teamsApp@odata.bind": format!("https://graph.microsoft.com/v1.0/appCatalogs/teamsApps/{app_id}"),
                "consentedPermissionSet": consent,
            }))
        }),
    ];
    let team = team_id(&env.emu);
    let targets = prop_oneof![
        Just(format!("users/{}/teamwork/installedApps", upn("megan"))),
        Just(format!("users/{}/teamwork/installedApps", upn("lee"))),
        Just(format!("teams/{team}/installedApps")),
        Just(format!(
            "users/{}/teamwork/installedApps/{}/upgrade",
            env.known[0], env.known[2]
        )),
    ];
    run((targets, bodies, any::<bool>()), |(target, body, typed)| {
        let mut request = env.graph(Method::POST, &target).bearer_auth(&env.token);
        if typed {
            request = request.header("content-type", "application/json");
        }
        let request = match &body {
            Body::Bytes(b) => request.body(b.clone()),
            Body::Json(v) => request.body(v.to_string()),
        };
        env.check(&format!("POST {target} {body:?}"), true, request);
    });
}

const ROUTES: &[(&str, &str)] = &[
    ("GET", "users/{a}"),
    ("GET", "users/{a}/teamwork/installedApps"),
    ("POST", "users/{a}/teamwork/installedApps"),
    ("GET", "users/{a}/teamwork/installedApps/{b}"),
    ("DELETE", "users/{a}/teamwork/installedApps/{b}"),
    ("POST", "users/{a}/teamwork/installedApps/{b}/upgrade"),
    ("GET", "users/{a}/teamwork/installedApps/{b}/chat"),
    ("GET", "users/{a}/chats"),
    ("GET", "chats/{a}"),
    ("GET", "chats/{a}/messages"),
    ("GET", "teams/{a}/installedApps"),
    ("POST", "teams/{a}/installedApps"),
    ("GET", "teams/{a}/installedApps/{b}"),
    ("DELETE", "teams/{a}/installedApps/{b}"),
    ("GET", "appCatalogs/teamsApps/{a}"),
];

#[test]
fn arbitrary_path_segments_never_fail_the_server() {
    let env = Env::new();
    let segments = (
        proptest::sample::select(ROUTES),
        text(env.known.clone()),
        text(env.known.clone()),
        any::<bool>(),
    );
    run(segments, |((method, route), a, b, beta)| {
        let path = route
            .replace("{a}", &encode(&a))
            .replace("{b}", &encode(&b));
        let base = if beta {
            format!("{}/beta", env.emu.url())
        } else {
            env.emu.graph_url()
        };
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = env
            .http
            .request(method.clone(), format!("{base}/{path}"))
            .bearer_auth(&env.token);
        if method == Method::POST {
            request = request
                .header("content-type", "application/json")
                .body(bind(&env.app_id).to_string());
        }
        env.check(&format!("{method} {path}"), true, request);
    });
}

const FILTER_WORDS: &[&str] = &[
    "teamsApp/id",
    "teamsApp/externalId",
    "teamsAppDefinition/teamsAppId",
    "id",
    "displayName",
    "userPrincipalName",
    "installedApps/any(a:a/teamsApp/id",
    "installedApps/all(a:a/id",
    "any(",
    "a:a/",
    "eq",
    "ne",
    "gt",
    "and",
    "or",
    "not",
    "(",
    ")",
    "/",
    ":",
    ",",
    "'x'",
    "'it''s'",
    "'",
    "true",
    "null",
    "-1",
    "1e308",
    "-1e999",
    "NaN",
    "0.5.5",
    "e5c3a7d2-4b1f-4e8a-9c6d-2f1b0a9e8d7c",
    "startswith(displayName,'A')",
    "$it",
    "@x",
];

fn filter_text() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => prop::collection::vec(proptest::sample::select(FILTER_WORDS), 0..16)
            .prop_map(|words| words.join(" ")),
        1 => prop::collection::vec(proptest::sample::select(FILTER_WORDS), 0..16)
            .prop_map(|words| words.concat()),
        1 => any::<String>(),
        1 => (1usize..600).prop_map(|n| "(".repeat(n)),
        1 => (1usize..300).prop_map(|n| ["id eq 'x'"; 1].repeat(n).join(" and ")),
        1 => (1usize..100).prop_map(|n| "installedApps/any(a:".repeat(n)),
    ]
}

fn query_value() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => filter_text(),
        1 => "[a-zA-Z,/ ]{0,30}",
        1 => "-?[0-9]{0,25}",
        1 => "[A-Za-z0-9_=-]{0,30}",
    ]
}

const QUERY_KEYS: &[&str] = &[
    "$filter",
    "$select",
    "$expand",
    "$top",
    "$skiptoken",
    "filter",
    "top",
    "$count",
    "$orderby",
    "$search",
    "$",
    "$FILTER",
    "api-version",
];

#[test]
fn arbitrary_query_options_never_fail_the_server() {
    let env = Env::new();
    let resources = vec![
        "users".to_string(),
        format!("users/{}", upn("megan")),
        format!("users/{}/teamwork/installedApps", env.known[0]),
        format!(
            "users/{}/teamwork/installedApps/{}",
            env.known[0], env.known[2]
        ),
        format!("users/{}/chats", env.known[0]),
        format!("chats/{}", env.known[3]),
        format!("chats/{}/messages", env.known[3]),
        format!("teams/{}/installedApps", env.known[5]),
        "appCatalogs/teamsApps".to_string(),
        format!("appCatalogs/teamsApps/{}", env.app_id),
    ];
    let pair = (
        prop_oneof![
            4 => proptest::sample::select(QUERY_KEYS).prop_map(str::to_string),
            1 => any::<String>(),
        ],
        query_value(),
    );
    let queries = (
        proptest::sample::select(resources),
        prop::collection::vec(pair, 0..4),
        any::<bool>(),
    );
    run(queries, |(resource, pairs, raw)| {
        let mut url = reqwest::Url::parse(&format!("{}/{resource}", env.emu.graph_url())).unwrap();
        if raw {
            // As a careless client writes it: joined by hand, encoded only where the URL must be.
            let query: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
            url.set_query(Some(&query.join("&")));
        } else {
            let mut q = url.query_pairs_mut();
            for (k, v) in &pairs {
                q.append_pair(k, v);
            }
        }
        let request = env.http.get(url.clone()).bearer_auth(&env.token);
        env.check(url.as_str(), true, request);
    });
}

const FORM_KEYS: &[&str] = &[
    "grant_type",
    "client_id",
    "client_secret",
    "scope",
    "username",
    "password",
    "client_assertion",
];

#[test]
fn arbitrary_token_requests_never_fail_the_server() {
    let env = Env::new();
    let values = vec![
        "client_credentials".to_string(),
        "password".to_string(),
        "refresh_token".to_string(),
        defaults::BOT_APP_ID.to_string(),
        defaults::BOT_APP_SECRET.to_string(),
        GRAPH_SCOPE.to_string(),
        BOT_FRAMEWORK_SCOPE.to_string(),
        format!("openid {GRAPH_SCOPE} offline_access"),
        "User.Read ChatMessage.Send".to_string(),
        upn("megan"),
        defaults::USER_PASSWORD.to_string(),
    ];
    let value = prop_oneof![
        2 => proptest::sample::select(values),
        1 => any::<String>(),
    ];
    let key = prop_oneof![
        4 => proptest::sample::select(FORM_KEYS).prop_map(str::to_string),
        1 => any::<String>(),
    ];
    let tenants = prop_oneof![
        Just(defaults::TENANT_ID.to_string()),
        Just(DOMAIN.to_string()),
        Just("botframework.com".to_string()),
        Just("common".to_string()),
        any::<String>().prop_map(|s| encode(&s)),
    ];
    let bodies = prop_oneof![
        3 => prop::collection::vec((key, value), 0..8).prop_map(|pairs| {
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            for (k, v) in &pairs {
                form.append_pair(k, v);
            }
            form.finish().into_bytes()
        }),
        1 => prop::collection::vec(any::<u8>(), 0..256),
    ];
    run((tenants, bodies), |(tenant, body)| {
        if tenant.is_empty() {
            return;
        }
        let url = format!("{}/{tenant}/oauth2/v2.0/token", env.emu.url());
        let request = env
            .http
            .post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.clone());
        env.check(
            &format!("POST {url} {:?}", String::from_utf8_lossy(&body)),
            false,
            request,
        );
    });
}

/// Header values as HTTP allows them: visible ASCII, spaces, tabs and obs-text.
fn header_text() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![8 => 0x20u8..0x7f, 1 => Just(b'\t'), 1 => 0x80u8..=0xff],
        0..200,
    )
}

fn b64(value: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value)
}

#[test]
fn arbitrary_authorization_headers_never_fail_the_server() {
    let env = Env::new();
    let real = env.token.clone();
    let real_parts: Vec<String> = real.split('.').map(str::to_string).collect();
    let headers = prop_oneof![
        2 => header_text(),
        2 => header_text().prop_map(|t| [b"Bearer ".as_slice(), &t].concat()),
        // The real token with one character changed, or cut short.
        2 => (0..real.len(), 0x21u8..0x7f).prop_map({
            let real = real.clone();
            move |(at, c)| {
                let mut t = real.clone().into_bytes();
                t[at] = c;
                [b"Bearer ".as_slice(), &t].concat()
            }
        }),
        1 => (0..real.len()).prop_map({
            let real = real.clone();
            move |at| format!("Bearer {}", &real[..at]).into_bytes()
        }),
        // Forged tokens: any header and claims, with the real signature or none.
        2 => (json_value(), json_value(), any::<bool>()).prop_map({
            let sig = real_parts[2].clone();
            move |(header, claims, signed)| {
                let sig = if signed { sig.clone() } else { String::new() };
                format!(
                    "Bearer {}.{}.{sig}",
                    b64(header.to_string().as_bytes()),
                    b64(claims.to_string().as_bytes())
                )
                .into_bytes()
            }
        }),
        // The real header with claims of any shape, e.g. an `exp` that overflows.
        2 => json_value().prop_map({
            let (head, sig) = (real_parts[0].clone(), real_parts[2].clone());
            move |claims| {
                let mut claims = claims;
                if let Value::Object(map) = &mut claims {
                    map.insert("exp".into(), json!(i64::MAX));
                    map.insert("nbf".into(), json!(i64::MIN));
                }
                format!("Bearer {head}.{}.{sig}", b64(claims.to_string().as_bytes())).into_bytes()
            }
        }),
    ];
    let routes = proptest::sample::select(vec![
        (Method::GET, "users".to_string()),
        (
            Method::GET,
            format!("users/{}/teamwork/installedApps", upn("megan")),
        ),
        (
            Method::POST,
            format!("users/{}/teamwork/installedApps", upn("megan")),
        ),
        (Method::GET, format!("chats/{}/messages", env.known[3])),
        (Method::GET, "appCatalogs/teamsApps".to_string()),
        (Method::GET, "me/drive".to_string()),
    ]);
    run((routes, headers), |((method, path), header)| {
        let Ok(value) = reqwest::header::HeaderValue::from_bytes(&header) else {
            return;
        };
        let request = env
            .graph(method.clone(), &path)
            .header("authorization", value)
            .header("content-type", "application/json")
            .body(bind(&env.app_id).to_string());
        env.check(
            &format!(
                "{method} {path} with {:?}",
                String::from_utf8_lossy(&header)
            ),
            true,
            request,
        );
    });
}

#[test]
fn parse_filter_never_panics() {
    run(filter_text(), |text| {
        let _ = parse_filter(&text);
    });
}
