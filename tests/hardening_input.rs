//! Hardening: hostile input. Generated bodies (proptest) are thrown at the request parser and
//! at the HTTP layer: invalid UTF-8, non-objects, deep nesting, huge strings, numbers where
//! strings go, duplicate keys, and label-filter injection attempts in `pod.name` /
//! `pod.namespace` (`,`, `=`, quotes, newlines, ...). Every invalid body is answered 4xx, never
//! a panic, and never reaches the Docker daemon: names are validated as Kubernetes names
//! (RFC 1123) before any runtime call, which a recording proxy in front of the daemon proves.
//!
//! Needs the test daemon (`DOCKER_HOST`): run `scripts/test`.

mod faults;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use faults::{Mode, Proxy};
use pod_detail_collector::Settings;
use pod_detail_collector::http::request;
use proptest::collection::{hash_map, vec};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Map, Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Bodies thrown at the parser in-process.
const PARSER_CASES: u32 = 20_000;
/// Bodies thrown at the HTTP layer (one request each).
const HTTP_CASES: u32 = 10_000;
/// The HTTP server's body limit in these tests: some generated bodies are over it.
const BODY_LIMIT: usize = 64 * 1024;

// ---------------------------------------------------------------------------------------------
// The oracle: what a request means, written independently of the product.
// ---------------------------------------------------------------------------------------------

/// An RFC 1123 label: 1–63 of `[a-z0-9-]`, alphanumeric at both ends.
fn rfc1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// A DNS subdomain (pod names): RFC 1123 labels joined by dots, at most 253 characters.
fn dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(rfc1123_label)
}

/// Whether a parsed context names a pod validly: `(namespace, name)` when it does.
fn valid_pod(context: &Map<String, Value>) -> Option<(String, String)> {
    let ns = context.get("pod.namespace")?.as_str()?;
    let name = context.get("pod.name")?.as_str()?;
    (rfc1123_label(ns) && dns_subdomain(name)).then(|| (ns.to_string(), name.to_string()))
}

/// The body as the collector must read it: a JSON object, or nothing.
fn object_of(body: &[u8]) -> Option<Map<String, Value>> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Some(map),
        _ => None,
    }
}

fn flag_ok(context: &Map<String, Value>, key: &str) -> bool {
    match context.get(key) {
        None | Some(Value::Null) | Some(Value::Bool(_)) => true,
        Some(Value::String(s)) => matches!(
            s.trim().to_ascii_lowercase().as_str(),
            "true" | "1" | "yes" | "false" | "0" | "no" | ""
        ),
        _ => false,
    }
}

fn namespace_filter_ok(context: &Map<String, Value>) -> bool {
    match context.get("pod.namespace") {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty() || rfc1123_label(s),
        _ => false,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Processor {
    Detail,
    List,
    Containers,
    Info,
}

impl Processor {
    fn path(self) -> &'static str {
        match self {
            Processor::Detail => "/processor/podDetailCollector",
            Processor::List => "/processor/podListCollector",
            Processor::Containers => "/processor/containerCollector",
            Processor::Info => "/processor/dockerInfoCollector",
        }
    }
}

/// `Some(4xx)` when the collector must refuse the body without asking Docker, `None` when it
/// must ask Docker.
fn expected_refusal(processor: Processor, body: &[u8]) -> Option<u16> {
    if body.len() > BODY_LIMIT {
        return Some(413);
    }
    let Some(context) = object_of(body) else {
        return Some(400);
    };
    let valid = match processor {
        Processor::Detail => valid_pod(&context).is_some(),
        Processor::List => namespace_filter_ok(&context),
        Processor::Containers => flag_ok(&context, "container.all"),
        Processor::Info => true,
    };
    (!valid).then_some(400)
}

// ---------------------------------------------------------------------------------------------
// Generators.
// ---------------------------------------------------------------------------------------------

fn valid_label() -> impl Strategy<Value = String> {
    "[a-z0-9]([a-z0-9-]{0,14}[a-z0-9])?"
}

/// Characters that would change a Docker label filter or a log line if they got through.
const INJECTIONS: &[&str] = &[
    ",",
    "=",
    "\"",
    "'",
    "\n",
    "\r\n",
    "\t",
    " ",
    "\\",
    "\0",
    "{",
    "}",
    ":",
    ";",
    "/",
    "*",
    "%2C",
    "%3D",
    "..",
    ",io.kubernetes.pod.namespace=kube-system",
    "=kube-system,io.kubernetes.pod.name=",
    "\",\"label\":\"",
    "\u{ff0c}",
    "\u{ff1d}",
    "\u{202e}",
    "\u{200b}",
    "é",
    "İ",
    "\u{1f600}",
];

/// A pod name or namespace an attacker or a broken agent could send.
fn hostile_name() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => valid_label(),
        2 => "[a-z0-9]{1,8}(\\.[a-z0-9]{1,8}){1,3}",
        6 => (valid_label(), proptest::sample::select(INJECTIONS), valid_label())
            .prop_map(|(a, inj, b)| format!("{a}{inj}{b}")),
        2 => proptest::sample::select(INJECTIONS).prop_map(str::to_string),
        1 => "[A-Z][A-Za-z0-9]{0,10}",
        1 => valid_label().prop_map(|s| format!("-{s}")),
        1 => valid_label().prop_map(|s| format!("{s}-")),
        1 => valid_label().prop_map(|s| format!("{s}.")),
        1 => Just(String::new()),
        1 => (62usize..=66).prop_map(|n| "a".repeat(n)),
        1 => (250usize..=300).prop_map(|n| "a.".repeat(n / 2) + "a"),
        2 => "\\PC{0,24}",
        1 => ".{0,16}",
    ]
}

/// A JSON value standing where a string should be.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        hostile_name().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::Array),
            hash_map(
                prop_oneof![
                    Just("pod.name".to_string()),
                    Just("pod.namespace".to_string()),
                    "\\PC{0,10}"
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A request object with hostile `pod.namespace` / `pod.name` (strings or other types), maybe
/// with agent context around.
fn pod_object() -> impl Strategy<Value = Vec<u8>> {
    fn field() -> impl Strategy<Value = Value> {
        prop_oneof![
            6 => hostile_name().prop_map(Value::String),
            2 => json_value(),
            1 => Just(Value::Null),
        ]
    }
    (
        proptest::option::weighted(0.9, field()),
        proptest::option::weighted(0.9, field()),
        any::<bool>(),
        proptest::option::of(json_value()),
    )
        .prop_map(|(ns, name, context, extra)| {
            let mut map = Map::new();
            if let Some(ns) = ns {
                map.insert("pod.namespace".into(), ns);
            }
            if let Some(name) = name {
                map.insert("pod.name".into(), name);
            }
            if context {
                map.insert("node".into(), json!("test-node"));
                map.insert(
                    "diagnosis.uid".into(),
                    json!("4f1c2a5e-0000-4000-8000-000000000001"),
                );
                map.insert("container.all".into(), json!("maybe"));
            }
            if let Some(extra) = extra {
                map.insert("task.extra".into(), extra);
            }
            serde_json::to_vec(&Value::Object(map)).expect("serialize")
        })
}

/// `[[[[...` or `{"a":{"a":...`, closed or not: beyond any recursion limit.
fn deep_nesting() -> impl Strategy<Value = Vec<u8>> {
    (1usize..20_000, any::<bool>(), any::<bool>()).prop_map(|(depth, arrays, closed)| {
        let (open, close) = if arrays {
            ("[", "]")
        } else {
            ("{\"pod.name\":", "}")
        };
        let mut body = open.repeat(depth);
        body.push_str("\"web-0\"");
        if closed {
            body.push_str(&close.repeat(depth));
        }
        body.into_bytes()
    })
}

/// Keys given twice, valid and hostile in either order.
fn duplicate_keys() -> impl Strategy<Value = Vec<u8>> {
    (hostile_name(), hostile_name(), valid_label(), any::<bool>()).prop_map(
        |(first, second, ns, name_twice)| {
            let q = |s: &str| serde_json::to_string(s).expect("quote");
            let body = if name_twice {
                format!(
                    "{{\"pod.namespace\":{},\"pod.name\":{},\"pod.name\":{}}}",
                    q(&ns),
                    q(&first),
                    q(&second)
                )
            } else {
                format!(
                    "{{\"pod.namespace\":{},\"pod.name\":\"web-0\",\"pod.namespace\":{}}}",
                    q(&first),
                    q(&second)
                )
            };
            body.into_bytes()
        },
    )
}

/// Long strings in every position, some over the body limit.
fn huge_strings() -> impl Strategy<Value = Vec<u8>> {
    (
        1usize..(BODY_LIMIT + BODY_LIMIT / 2),
        0usize..3,
        proptest::sample::select(vec!['a', '-', '.', ',', 'é', '\u{1f600}']),
    )
        .prop_map(|(len, place, c)| {
            let long: String = std::iter::repeat_n(c, len / c.len_utf8().max(1)).collect();
            let body = match place {
                0 => json!({"pod.namespace": "default", "pod.name": long}),
                1 => json!({"pod.namespace": long, "pod.name": "web-0"}),
                _ => json!({"pod.namespace": "default", "pod.name": "web-0", long: "x"}),
            };
            serde_json::to_vec(&body).expect("serialize")
        })
}

/// Numbers (and number-like tokens) where the strings go.
fn numbers_for_strings() -> impl Strategy<Value = Vec<u8>> {
    fn number() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<i64>().prop_map(|n| n.to_string()),
            any::<u64>().prop_map(|n| n.to_string()),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| f.to_string()),
            proptest::sample::select(vec![
                "1e400",
                "-1e400",
                "-0",
                "0.0",
                "123456789012345678901234567890",
                "0x10",
                "NaN",
                "Infinity",
                "-",
                "1.",
                ".5",
                "01",
                "1e",
                "true",
                "null",
            ])
            .prop_map(str::to_string),
        ]
    }
    (number(), number(), any::<bool>()).prop_map(|(a, b, both)| {
        if both {
            format!("{{\"pod.namespace\":{a},\"pod.name\":{b}}}").into_bytes()
        } else {
            format!("{{\"pod.namespace\":\"default\",\"pod.name\":{b}}}").into_bytes()
        }
    })
}

/// A valid request, then damaged: bytes flipped, cut short, or invalid UTF-8 put inside.
fn mutated_valid_body() -> impl Strategy<Value = Vec<u8>> {
    (
        valid_label(),
        valid_label(),
        vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        proptest::option::of(any::<prop::sample::Index>()),
        proptest::option::of(vec(0x80u8..=0xff, 1..4)),
    )
        .prop_map(|(ns, name, flips, cut, invalid_utf8)| {
            let mut body = serde_json::to_vec(&json!({"pod.namespace": ns, "pod.name": name}))
                .expect("serialize");
            for (at, byte) in flips {
                let i = at.index(body.len());
                body[i] = byte;
            }
            if let Some(bytes) = invalid_utf8 {
                // Inside the name string: just before its closing quote.
                let at = body.len() - 2;
                body.splice(at..at, bytes);
            }
            if let Some(cut) = cut {
                body.truncate(cut.index(body.len()));
            }
            body
        })
}

/// Every kind of hostile body.
fn hostile_body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => vec(any::<u8>(), 0..400),
        2 => any::<String>().prop_map(String::into_bytes),
        3 => json_value().prop_map(|v| serde_json::to_vec(&v).expect("serialize")),
        8 => pod_object(),
        1 => deep_nesting(),
        2 => duplicate_keys(),
        1 => huge_strings(),
        2 => numbers_for_strings(),
        3 => mutated_valid_body(),
    ]
}

fn config(cases: u32) -> Config {
    Config {
        cases,
        // No regression files in the source tree; a failure prints the shrunk input.
        failure_persistence: None,
        max_shrink_iters: 2_000,
        ..Config::default()
    }
}

// ---------------------------------------------------------------------------------------------
// The parser.
// ---------------------------------------------------------------------------------------------

/// The parser never panics, refuses what is not a JSON object, and accepts a pod reference
/// exactly when both names are Kubernetes names: nothing that could change a label filter gets
/// through.
#[test]
fn parser_refuses_every_hostile_body_without_panicking() {
    let tried = AtomicUsize::new(0);
    let accepted = AtomicUsize::new(0);
    let mut runner = TestRunner::new(config(PARSER_CASES));
    let outcome = runner.run(&hostile_body(), |body| {
        tried.fetch_add(1, Ordering::Relaxed);
        let oracle = object_of(&body);
        let context = request::context(&body);
        prop_assert_eq!(
            context.is_ok(),
            oracle.is_some(),
            "context() on {:?}",
            String::from_utf8_lossy(&body)
        );
        let Ok(context) = context else {
            return Ok(());
        };
        let pod = request::pod_ref(&context);
        let expected = valid_pod(&context);
        match (&pod, &expected) {
            (Ok(pod), Some((ns, name))) => {
                accepted.fetch_add(1, Ordering::Relaxed);
                prop_assert_eq!(&pod.namespace, ns);
                prop_assert_eq!(&pod.name, name);
                for text in [&pod.namespace, &pod.name] {
                    prop_assert!(
                        text.bytes().all(|b| b.is_ascii_lowercase()
                            || b.is_ascii_digit()
                            || b == b'-'
                            || b == b'.'),
                        "accepted a name that is not a Kubernetes name: {:?}",
                        text
                    );
                }
            }
            (Err(err), None) => {
                let text = err.to_string();
                prop_assert!(text.starts_with("bad request:"), "{}", text);
                prop_assert!(
                    !text.is_empty() && text.len() < 600,
                    "error length {}",
                    text.len()
                );
            }
            (got, want) => {
                return Err(TestCaseError::fail(format!(
                    "pod_ref({context:?}) = {got:?}, oracle says {want:?}"
                )));
            }
        }
        let namespace = request::optional_namespace(&context);
        prop_assert_eq!(namespace.is_ok(), namespace_filter_ok(&context));
        let all = request::flag(&context, request::CONTAINER_ALL_KEY);
        prop_assert_eq!(all.is_ok(), flag_ok(&context, request::CONTAINER_ALL_KEY));
        Ok(())
    });
    if let Err(failure) = outcome {
        panic!("{failure}");
    }
    let tried = tried.load(Ordering::Relaxed);
    eprintln!(
        "hostile input, parser: {tried} bodies tried ({} named a valid pod), 0 panics",
        accepted.load(Ordering::Relaxed)
    );
    assert!(tried >= PARSER_CASES as usize);
}

// ---------------------------------------------------------------------------------------------
// The HTTP layer.
// ---------------------------------------------------------------------------------------------

struct Counts {
    tried: AtomicUsize,
    refused: AtomicUsize,
    reached_runtime: AtomicUsize,
}

/// Every generated body over HTTP, to one of the four processors: invalid ones are answered
/// 4xx with a JSON error and no call to Docker (the proxy records none); valid ones reach
/// Docker, which answers 500 here (the proxy plays a sick daemon, so nothing loads the real
/// one). The server never panics or drops a connection.
#[test]
fn http_layer_answers_every_hostile_body_with_4xx_before_any_runtime_call() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (running, proxy) = rt.block_on(async {
        let proxy = Proxy::with_mode(Mode::Http500);
        let running = proxy
            .collector(Settings {
                runtime_timeout: Duration::from_secs(5),
                body_limit: BODY_LIMIT,
                ..faults::bare_settings()
            })
            .await;
        (running, proxy)
    });
    let base = running.addr;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let counts = Arc::new(Counts {
        tried: AtomicUsize::new(0),
        refused: AtomicUsize::new(0),
        reached_runtime: AtomicUsize::new(0),
    });
    let processor = prop_oneof![
        14 => Just(Processor::Detail),
        2 => Just(Processor::List),
        2 => Just(Processor::Containers),
        1 => Just(Processor::Info),
    ];
    let last = std::sync::Mutex::new(String::new());
    let mut runner = TestRunner::new(config(HTTP_CASES));
    let outcome = runner.run(&(processor, hostile_body()), |(processor, body)| {
        counts.tried.fetch_add(1, Ordering::Relaxed);
        let expected = expected_refusal(processor, &body);
        let previous = last.lock().unwrap().clone();
        let before = proxy.requests();
        let url = format!("http://{base}{}", processor.path());
        let (status, text) = rt
            .block_on(async {
                let mut request = http.post(&url).body(body.clone());
                if body.len() > BODY_LIMIT {
                    // The server closes a connection whose body it did not read (see
                    // `over_limit_answer_leaves_the_connection_usable_or_says_close`): do not
                    // reuse it for the next case.
                    request = request.header("connection", "close");
                }
                let response = request.send().await?;
                let status = response.status().as_u16();
                Ok::<_, reqwest::Error>((status, response.text().await?))
            })
            .map_err(|e| {
                TestCaseError::fail(format!(
                    "transport failure (a panic or a dropped connection?): {e:?} \
                     on a body of {} bytes: {:?}; previous request: {previous}",
                    body.len(),
                    String::from_utf8_lossy(&body[..body.len().min(300)])
                ))
            })?;
        let runtime_calls = proxy.requests() - before;
        *last.lock().unwrap() = format!("{status} for {} bytes", body.len());
        let error: Value = serde_json::from_str(&text).map_err(|e| {
            TestCaseError::fail(format!("answer {status} is not JSON ({e}): {text}"))
        })?;
        prop_assert!(
            error["error"].as_str().is_some_and(|t| !t.is_empty()),
            "answer {} without an error sentence: {}",
            status,
            text
        );
        match expected {
            Some(code) => {
                counts.refused.fetch_add(1, Ordering::Relaxed);
                prop_assert_eq!(
                    status,
                    code,
                    "{:?} {:?}: {}",
                    processor,
                    String::from_utf8_lossy(&body[..body.len().min(300)]),
                    text
                );
                prop_assert_eq!(
                    runtime_calls,
                    0,
                    "an invalid body reached Docker: {:?}",
                    String::from_utf8_lossy(&body[..body.len().min(300)])
                );
            }
            None => {
                counts.reached_runtime.fetch_add(1, Ordering::Relaxed);
                prop_assert_eq!(status, 500, "valid body, sick daemon: {}", text);
                prop_assert!(runtime_calls >= 1, "a valid body did not reach Docker");
            }
        }
        Ok(())
    });
    if let Err(failure) = outcome {
        panic!("{failure}");
    }
    // Still serving.
    let health = rt
        .block_on(async { http.get(format!("http://{base}/healthz")).send().await })
        .expect("healthz after the storm");
    assert_eq!(health.status().as_u16(), 200);
    let tried = counts.tried.load(Ordering::Relaxed);
    let refused = counts.refused.load(Ordering::Relaxed);
    eprintln!(
        "hostile input, HTTP: {tried} bodies sent, {refused} answered 4xx with no Docker call, \
         {} valid ones reached Docker, 0 panics, 0 dropped connections",
        counts.reached_runtime.load(Ordering::Relaxed)
    );
    assert!(tried >= HTTP_CASES as usize);
    assert!(
        refused * 10 >= tried * 8,
        "the generator should be mostly hostile: {refused} of {tried} refused"
    );
    rt.block_on(running.shutdown());
    drop(proxy);
}

/// Label-filter injection attempts, one by one, against the real daemon: all 400, and the
/// daemon is never asked anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn label_filter_injection_never_reaches_docker() {
    let proxy = Proxy::start();
    // The list path, where the pod's names become Docker label filters (the event index
    // filters in memory, and lists the node with no name in the filter).
    let running = proxy
        .collector(Settings {
            event_index: false,
            ..faults::bare_settings()
        })
        .await;
    let http = faults::client();
    let long_name = "a".repeat(254);
    let long_label = format!("{}.b", "a".repeat(64));
    let names: Vec<&str> = vec![
        "web-0,io.kubernetes.pod.namespace=kube-system",
        "web-0=kube-system",
        "web\"0",
        "web'0",
        "web-0\n",
        "web-0\r\nX-Injected: 1",
        "web 0",
        " web-0",
        "web-0 ",
        "web\\0",
        "web\u{0}0",
        "web-0\u{ff0c}x",
        "WEB-0",
        "wéb-0",
        "web_0",
        "*",
        "web-*",
        "%2C",
        "web..0",
        ".web",
        "web.",
        "-web",
        "web-",
        "",
        &long_name,
        &long_label,
    ];
    let mut sent = 0;
    for name in names {
        for (ns, pod) in [("default", name), (name, "web-0")] {
            let body = json!({"pod.namespace": ns, "pod.name": pod});
            let answer = faults::post(&http, running.addr, "podDetailCollector", &body).await;
            assert_eq!(answer.status, 400, "{body}: {}", answer.body);
            let text = answer.error_text();
            assert!(
                !text.contains('\n') && !text.contains('\r'),
                "the error sentence carries a raw newline: {text:?}"
            );
            sent += 1;
        }
        // (An empty namespace means "all namespaces" on the pod list: valid, not sent.)
        if !name.is_empty() {
            let list = faults::post(
                &http,
                running.addr,
                "podListCollector",
                &json!({"pod.namespace": name}),
            )
            .await;
            assert_eq!(list.status, 400, "pod list {name:?}: {}", list.body);
            sent += 1;
        }
    }
    assert_eq!(
        proxy.requests(),
        0,
        "an injection attempt reached Docker: {:?}",
        proxy.log()
    );
    // A valid name does reach Docker: the proxy records.
    let ok = faults::post(
        &http,
        running.addr,
        "podDetailCollector",
        &json!({"pod.namespace": "pdc-no-such-ns", "pod.name": "web-0"}),
    )
    .await;
    assert_eq!(ok.status, 404, "{}", ok.body);
    assert!(
        proxy
            .log()
            .iter()
            .any(|l| l.path == "/containers/json" && l.uri.contains("pdc-no-such-ns"))
    );
    eprintln!("label-filter injection: {sent} requests, all refused before Docker");
    running.shutdown().await;
}

/// Malformed HTTP (not just bodies): answered 4xx or the connection is closed, and the server
/// keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_http_requests_answer_4xx() {
    let proxy = Proxy::with_mode(Mode::Http500);
    let running = proxy
        .collector(Settings {
            body_limit: 1024,
            ..faults::bare_settings()
        })
        .await;
    let addr = running.addr;
    let path = "/processor/podDetailCollector";
    let big = "x".repeat(4096);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "bad chunk size",
            format!("POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{{}}\r\n0\r\n\r\n").into_bytes(),
        ),
        (
            "chunked body over the limit",
            format!(
                "POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{big}\r\n0\r\n\r\n",
                big.len()
            )
            .into_bytes(),
        ),
        (
            "declared length over the limit",
            format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n{{}}").into_bytes(),
        ),
        (
            "two content lengths",
            format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{{}}").into_bytes(),
        ),
        (
            "negative content length",
            format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n{{}}").into_bytes(),
        ),
        (
            "header without colon",
            format!("POST {path} HTTP/1.1\r\nHost: x\r\nbroken header\r\nContent-Length: 2\r\n\r\n{{}}").into_bytes(),
        ),
        (
            "invalid bytes in the request line",
            b"POST /processor/pod\xff\xfeDetail HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}".to_vec(),
        ),
        (
            "not HTTP",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 hello tls\r\n\r\n".to_vec(),
        ),
        (
            "huge header",
            format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "h".repeat(1_000_000)).into_bytes(),
        ),
        (
            "path traversal",
            b"POST /processor/../../etc/passwd HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}".to_vec(),
        ),
        (
            "absolute URI",
            format!("POST http://evil.example{path} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{{}}").into_bytes(),
        ),
    ];
    let mut closed = 0;
    let mut answered = 0;
    for (what, raw) in &cases {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let _ = stream.write_all(raw).await;
        let _ = stream.shutdown().await;
        let mut reply = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut reply))
            .await
            .unwrap_or_else(|_| panic!("{what}: no answer and no close within 10s"));
        let text = String::from_utf8_lossy(&reply);
        // A body over the limit must be refused in words, not by a dropped connection.
        let must_answer_413 = what.ends_with("over the limit");
        if read.is_err() || reply.is_empty() {
            assert!(
                !must_answer_413,
                "{what}: the connection was closed without a 413"
            );
            closed += 1;
            continue;
        }
        let status: u16 = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{what}: not an HTTP answer: {text}"));
        assert!(
            (400..500).contains(&status),
            "{what}: expected 4xx, got {status}: {text}"
        );
        if must_answer_413 {
            assert_eq!(status, 413, "{what}: {text}");
        }
        answered += 1;
    }
    assert_eq!(
        proxy.requests(),
        0,
        "malformed requests reached Docker: {:?}",
        proxy.log()
    );
    let health = faults::get(&faults::client(), addr, "/healthz").await;
    assert_eq!(health.status, 200);
    eprintln!(
        "malformed HTTP: {} requests, {answered} answered 4xx, {closed} closed by the server",
        cases.len()
    );
    running.shutdown().await;
}

/// A body over the limit is answered 413 before it is read. The client must then either be
/// able to reuse the connection, or be told `Connection: close`: a keep-alive client (the
/// KubeDiag agent is one) must not send its next request into a connection the server is
/// closing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_limit_answer_leaves_the_connection_usable_or_says_close() {
    let proxy = Proxy::with_mode(Mode::Http500);
    let running = proxy
        .collector(Settings {
            body_limit: 1024,
            ..faults::bare_settings()
        })
        .await;
    let mut stream = tokio::net::TcpStream::connect(running.addr)
        .await
        .expect("connect");
    let body = format!("{{\"pad\":\"{}\"}}", "x".repeat(200_000));
    let head = format!(
        "POST /processor/podDetailCollector HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("send head");
    // The server may stop reading: the body write may fail, that is fine.
    let _ = tokio::time::timeout(Duration::from_secs(2), stream.write_all(body.as_bytes())).await;
    let mut reply = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut reply))
        .await
        .expect("an answer within 5s")
        .expect("read the answer");
    let text = String::from_utf8_lossy(&reply[..n]).to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 413"), "{text}");
    if text.contains("connection: close") {
        running.shutdown().await;
        return;
    }
    // No `Connection: close`: the connection must then still serve.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let mut next = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut next))
        .await
        .expect("an answer within 5s")
        .unwrap_or(0);
    let next = String::from_utf8_lossy(&next[..n]);
    assert!(
        next.starts_with("HTTP/1.1 200"),
        "the 413 did not say `Connection: close` ({text:?}), yet the connection was closed \
         under the client: next request got {next:?}"
    );
    running.shutdown().await;
}
