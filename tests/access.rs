//! Who may ask (issue 12): node-local by default, `--allow-from`, `--token-file`.
//!
//! The caller that is not the node is real: a network namespace this test makes, joined to the
//! host by a veth pair on a documentation range (203.0.113.0/24) that only this test uses and
//! that reaches nothing else. The recording proxy in front of Docker proves that a refused
//! request costs no runtime call.
//!
//! Needs root (`ip netns`, `setns`) and the test daemon: run `scripts/test`. Without root the
//! namespace tests fail under CI (`CI=true`) and are skipped, with a line saying so, elsewhere.

mod faults;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use faults::{Proxy, ServeProcess, bare_settings, client, metric, send};
use pod_detail_collector::Settings;
use serde_json::Value;

const POD_BODY: &str = r#"{"pod.namespace":"default","pod.name":"web-0"}"#;

// ---------------------------------------------------------------------------------------------
// A caller in a network namespace of its own.
// ---------------------------------------------------------------------------------------------

/// A network namespace joined to the host by a veth pair on a /29 of 203.0.113.0/24:
/// `.1` on the host end, `.2` in the namespace. Removed on drop.
struct Netns {
    name: String,
    host_if: String,
    host_ip: IpAddr,
    caller_ip: IpAddr,
    /// A third address of the /29, for the node to gain later.
    spare_ip: IpAddr,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run ip ({e}): install iproute2 (scripts/test does)"));
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// Whether this test may make namespaces: root with `ip`. Under CI it must.
fn can_make_namespaces() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let has_ip = Command::new("ip").arg("-V").output().is_ok();
    if root && has_ip {
        return true;
    }
    let why = format!("needs root and iproute2 (root: {root}, ip: {has_ip})");
    assert!(
        std::env::var_os("CI").is_none(),
        "network namespace test {why}: CI runs it as root (scripts/test)"
    );
    eprintln!("SKIPPED: network namespace test {why}; run scripts/test as root");
    false
}

impl Netns {
    fn new() -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        // Each namespace its own /29 (up to 32 per run), named after this process.
        let id = std::process::id() % 100_000;
        let base = (8 * (n % 32)) as u8;
        let net = |host: u8| format!("203.0.113.{}", base + host);
        let netns = Netns {
            name: format!("pdc-ax-{id}-{n}"),
            host_if: format!("pdcax{id}h{n}"),
            host_ip: net(1).parse().expect("address"),
            caller_ip: net(2).parse().expect("address"),
            spare_ip: net(3).parse().expect("address"),
        };
        let ns_if = format!("pdcax{id}n{n}");
        // Left over from a killed run with the same pid: gone first.
        let _ = Command::new("ip")
            .args(["netns", "del", &netns.name])
            .output();
        let _ = Command::new("ip")
            .args(["link", "del", &netns.host_if])
            .output();
        ip(&["netns", "add", &netns.name]);
        ip(&[
            "link",
            "add",
            &netns.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &ns_if,
        ]);
        ip(&["link", "set", &ns_if, "netns", &netns.name]);
        ip(&[
            "addr",
            "add",
            &format!("{}/29", netns.host_ip),
            "dev",
            &netns.host_if,
        ]);
        ip(&["link", "set", &netns.host_if, "up"]);
        ip(&[
            "-n",
            &netns.name,
            "addr",
            "add",
            &format!("{}/29", netns.caller_ip),
            "dev",
            &ns_if,
        ]);
        ip(&["-n", &netns.name, "link", "set", &ns_if, "up"]);
        ip(&["-n", &netns.name, "link", "set", "lo", "up"]);
        netns
    }

    /// The node gains an address on the test's veth.
    fn add_host_address(&self, address: IpAddr) {
        ip(&[
            "addr",
            "add",
            &format!("{address}/29"),
            "dev",
            &self.host_if,
        ]);
    }

    /// Runs `f` on a thread that has joined the namespace (sockets it makes live there).
    async fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/run/netns/{}", self.name);
        tokio::task::spawn_blocking(move || {
            let file = std::fs::File::open(&path).expect("open the namespace");
            // SAFETY: setns on this thread only, with a namespace file descriptor we hold.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            f()
        })
        .await
        .expect("namespace thread")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .output();
    }
}

/// One HTTP/1.1 request over a fresh blocking connection: status and body. `None` when the
/// connection fails.
fn raw_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Option<(u16, String)> {
    let mut stream = connect_retrying(addr)?;
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .ok()?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).ok()?;
    stream.write_all(body).ok()?;
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).ok()?;
    let text = String::from_utf8_lossy(&reply).to_string();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((status, body))
}

/// The veth may need a moment to come up.
fn connect_retrying(addr: SocketAddr) -> Option<std::net::TcpStream> {
    for _ in 0..50 {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            Ok(stream) => return Some(stream),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    None
}

fn error_of(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v.get("error")?.as_str().map(str::to_string))
        .unwrap_or_else(|| panic!("not a JSON error: {body}"))
}

/// Listens on every address, as the DaemonSet does, so that the test's veth reaches it.
fn everywhere(settings: Settings) -> Settings {
    Settings {
        listen: "0.0.0.0:0".parse().expect("listen address"),
        ..settings
    }
}

async fn metrics_text(port: u16) -> String {
    send(
        &client(),
        "GET",
        &format!("http://127.0.0.1:{port}/metrics"),
        None,
    )
    .await
    .expect("scrape")
    .body
}

// ---------------------------------------------------------------------------------------------
// Tests.
// ---------------------------------------------------------------------------------------------

/// The default: a caller from another address gets 403 on every route but the probes and
/// metrics, and Docker never hears of it; loopback and the node's own addresses (one it gained
/// after start too) get their answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_policy_refuses_other_addresses_before_any_runtime_call() {
    if !can_make_namespaces() {
        return;
    }
    let netns = Netns::new();
    let proxy = Proxy::start();
    let running = proxy.collector(everywhere(bare_settings())).await;
    let port = running.addr.port();
    let from_afar = SocketAddr::new(netns.host_ip, port);
    proxy.clear_log();

    let big = vec![b' '; 6 * 1024 * 1024];
    type Case = (
        &'static str,
        String,
        Vec<(&'static str, &'static str)>,
        Vec<u8>,
    );
    let mut cases: Vec<Case> = Vec::new();
    for processor in [
        "podDetailCollector",
        "podListCollector",
        "containerCollector",
        "dockerInfoCollector",
    ] {
        let path = format!("/processor/{processor}");
        cases.push(("POST", path.clone(), vec![], POD_BODY.as_bytes().to_vec()));
        cases.push(("GET", path.clone(), vec![], vec![]));
        cases.push(("DELETE", path.clone(), vec![], vec![]));
        cases.push((
            "POST",
            format!("{path}?token=guess"),
            vec![("Authorization", "Bearer guess")],
            POD_BODY.as_bytes().to_vec(),
        ));
    }
    for path in [
        "/",
        "/processor/nope",
        "/wp-admin",
        "/healthz/../processor/x",
    ] {
        cases.push(("GET", path.to_string(), vec![], vec![]));
    }
    // A whole 6 MiB body from a refused caller still gets its readable 403.
    cases.push((
        "POST",
        "/processor/podDetailCollector".to_string(),
        vec![],
        big,
    ));
    let total = cases.len();
    let answers = netns
        .run(move || {
            cases
                .into_iter()
                .map(|(method, path, headers, body)| {
                    let answer = raw_request(from_afar, method, &path, &headers, &body);
                    (format!("{method} {path}"), answer)
                })
                .collect::<Vec<_>>()
        })
        .await;
    for (what, answer) in &answers {
        let (status, body) = answer
            .as_ref()
            .unwrap_or_else(|| panic!("{what}: no answer from the namespace"));
        assert_eq!(*status, 403, "{what}: {body}");
        let error = error_of(body);
        assert!(
            error.contains(&format!("--allow-from {}/32", netns.caller_ip)),
            "{what}: the error says how to allow the caller: {error}"
        );
    }
    assert_eq!(
        proxy.requests(),
        0,
        "refused requests reached Docker: {:?}",
        proxy.log()
    );

    // Probes and metrics are open (and cost no runtime call either).
    let open = netns
        .run(move || {
            ["/healthz", "/metrics"]
                .map(|path| (path, raw_request(from_afar, "GET", path, &[], b"")))
        })
        .await;
    for (path, answer) in open {
        assert_eq!(answer.map(|a| a.0), Some(200), "{path} from afar");
    }
    assert_eq!(proxy.requests(), 0, "{:?}", proxy.log());
    let text = metrics_text(port).await;
    assert_eq!(
        metric(
            &text,
            "pod_detail_collector_refused_total",
            &[("reason", "address")]
        ),
        Some(total as f64),
        "{text}"
    );

    // Loopback and the node's own address are the node.
    let http = client();
    for base in [
        format!("http://127.0.0.1:{port}"),
        format!("http://{}:{port}", netns.host_ip),
    ] {
        let answer = send(
            &http,
            "POST",
            &format!("{base}/processor/dockerInfoCollector"),
            Some(b"{}".to_vec()),
        )
        .await
        .expect("ask the node");
        assert_eq!(answer.status, 200, "{base}: {}", answer.body);
    }
    assert!(proxy.requests() > 0, "allowed requests reach Docker");

    // The node gains an address after start: allowed on its first request.
    netns.add_host_address(netns.spare_ip);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let answer = send(
        &http,
        "POST",
        &format!(
            "http://{}:{port}/processor/dockerInfoCollector",
            netns.spare_ip
        ),
        Some(b"{}".to_vec()),
    )
    .await
    .expect("ask the new address");
    assert_eq!(answer.status, 200, "a new node address: {}", answer.body);

    eprintln!(
        "access: {total} requests from {} (every processor and method, unknown paths, a 6 MiB \
         body, guessed tokens) all answered 403 with 0 Docker calls; loopback, {} and {} (gained \
         after start) answered 200",
        netns.caller_ip, netns.host_ip, netns.spare_ip
    );
    running.shutdown().await;
}

/// `--allow-from` widens the policy (and a token still applies on top); `any` lets everyone in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_from_widens_and_any_opens() {
    if !can_make_namespaces() {
        return;
    }
    let netns = Netns::new();
    let proxy = Proxy::start();
    let dir = faults::short_temp_dir("pdc-ax");
    let token_file = dir.join("token");
    std::fs::write(&token_file, "t0k3n\n").expect("write the token");

    let allowed = proxy
        .collector(everywhere(Settings {
            allow_from: format!("{}/32", netns.caller_ip).parse().expect("cidr"),
            ..bare_settings()
        }))
        .await;
    let any = proxy
        .collector(everywhere(Settings {
            allow_from: "any".parse().expect("any"),
            ..bare_settings()
        }))
        .await;
    let with_token = proxy
        .collector(everywhere(Settings {
            allow_from: format!("{}/29", netns.caller_ip).parse().expect("cidr"),
            token_file: Some(token_file.clone()),
            ..bare_settings()
        }))
        .await;
    let other = proxy
        .collector(everywhere(Settings {
            allow_from: "192.0.2.0/24".parse().expect("cidr"),
            ..bare_settings()
        }))
        .await;
    let host_ip = netns.host_ip;
    let ports = [
        allowed.addr.port(),
        any.addr.port(),
        with_token.addr.port(),
        other.addr.port(),
    ];
    let answers = netns
        .run(move || {
            let ask = |port: u16, path: &str, headers: &[(&str, &str)]| {
                raw_request(SocketAddr::new(host_ip, port), "POST", path, headers, b"{}")
                    .map(|a| a.0)
            };
            let info = "/processor/dockerInfoCollector";
            [
                ask(ports[0], info, &[]),
                ask(ports[1], info, &[]),
                ask(ports[2], info, &[]),
                ask(ports[2], &format!("{info}?token=t0k3n"), &[]),
                ask(ports[2], info, &[("Authorization", "Bearer t0k3n")]),
                ask(ports[3], info, &[]),
            ]
        })
        .await;
    assert_eq!(
        answers,
        [
            Some(200),
            Some(200),
            Some(401),
            Some(200),
            Some(200),
            Some(403)
        ],
        "allow-from /32, any, token missing, token in the query, token in the header, \
         another network"
    );
    for running in [allowed, any, with_token, other] {
        running.shutdown().await;
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// `--token-file`: missing and wrong tokens get 401 before any runtime call, the right one
/// in the query or the header passes, a rotated file takes effect at once, and no token, right
/// or wrong, ever reaches the log, the metrics or the routes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_file_is_required_constant_and_rotated() {
    let proxy = Proxy::start();
    let dir = faults::short_temp_dir("pdc-tk");
    let token_path = dir.join("token");
    let first = format!("first-{}", std::process::id());
    std::fs::write(&token_path, format!("{first}\n")).expect("write the token");
    let docker_host = proxy.docker_host();
    let token_arg = token_path.display().to_string();
    let process = ServeProcess::start(&[
        "--docker-host",
        &docker_host,
        "--node-name",
        "test-node",
        "--token-file",
        &token_arg,
        // Requests are counted at the daemon below: no clock readings of the event index.
        "--event-index=false",
    ])
    .await;
    // At start the collector asks the runtime once which one it is (logged, /readyz):
    // that call is its own, not a request's.
    assert!(
        process
            .wait_for_log("reading pods from", Duration::from_secs(10))
            .await,
        "the start-up runtime line"
    );
    let http = client();
    let ask = |query: String, header: Option<String>| {
        let http = http.clone();
        let url = process.url(&format!("/processor/dockerInfoCollector{query}"));
        async move {
            let mut request = http.post(&url).body("{}");
            if let Some(value) = header {
                request = request.header("Authorization", value);
            }
            let response = request.send().await.expect("request");
            let status = response.status().as_u16();
            let challenge = response.headers().contains_key("www-authenticate");
            let body = response.text().await.unwrap_or_default();
            (status, challenge, body)
        }
    };
    // The start-up announcement pings the runtime in the background (it can come late on a
    // busy machine): let it land before counting what reaches Docker.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !proxy.log().iter().any(|logged| logged.path == "/version")
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    proxy.clear_log();

    // Wrong tokens, each by query and by header.
    let wrong: Vec<String> = vec![
        String::new(),
        "x".into(),
        first[..first.len() - 1].to_string(),
        format!("{first}x"),
        format!("{first}{first}"),
        first.to_uppercase(),
        format!("{first} x"),
        format!("{first}%00"),
        "a".repeat(4096),
        "second".into(),
    ];
    let mut bad_tokens = 0;
    let (status, challenge, body) = ask(String::new(), None).await;
    assert_eq!((status, challenge), (401, true), "no token: {body}");
    assert!(error_of(&body).contains("?token="), "{body}");
    bad_tokens += 1;
    for token in &wrong {
        for (query, header) in [
            (format!("?token={token}"), None),
            (String::new(), Some(format!("Bearer {token}"))),
        ] {
            let (status, _, body) = ask(query, header).await;
            assert_eq!(status, 401, "token {token:?}: {body}");
            bad_tokens += 1;
        }
    }
    // Another scheme is not a bearer token.
    let (status, _, _) = ask(String::new(), Some(format!("Basic {first}"))).await;
    assert_eq!(status, 401);
    bad_tokens += 1;
    assert_eq!(
        proxy.requests(),
        0,
        "requests without the token reached Docker: {:?}",
        proxy.log()
    );

    // The right token, by query (percent-encoded too) and by header; other query parameters
    // stay as they were.
    for (query, header) in [
        (format!("?token={first}"), None),
        (
            format!("?a=1&token={}&b=2", first.replace('-', "%2D")),
            None,
        ),
        (String::new(), Some(format!("Bearer {first}"))),
        (String::new(), Some(format!("bearer {first}"))),
    ] {
        let (status, _, body) = ask(query.clone(), header.clone()).await;
        assert_eq!(status, 200, "{query} {header:?}: {body}");
    }
    // Probes and metrics need no token.
    for path in ["/healthz", "/metrics"] {
        let answer = send(&http, "GET", &process.url(path), None)
            .await
            .expect("open path");
        assert_eq!(answer.status, 200, "{path}");
    }

    // Rotation: the Secret's new version replaces the file; the old token stops working.
    let second = format!("second-{}", std::process::id());
    let next = dir.join("token.next");
    std::fs::write(&next, &second).expect("write the new token");
    std::fs::rename(&next, &token_path).expect("swap the token file");
    let (status, _, _) = ask(format!("?token={second}"), None).await;
    assert_eq!(status, 200, "the rotated token");
    let (status, _, _) = ask(format!("?token={first}"), None).await;
    assert_eq!(status, 401, "the old token after rotation");
    bad_tokens += 1;
    assert!(
        process
            .wait_for_log("token reloaded", Duration::from_secs(5))
            .await,
        "{:?}",
        process.log()
    );

    let text = send(&http, "GET", &process.url("/metrics"), None)
        .await
        .expect("scrape")
        .body;
    let refused = |reason| {
        metric(
            &text,
            "pod_detail_collector_refused_total",
            &[("reason", reason)],
        )
        .unwrap_or(0.0)
    };
    assert_eq!(
        refused("token_missing") + refused("token_wrong"),
        bad_tokens as f64,
        "{text}"
    );
    let log = process.log().join("\n");
    for token in [&first, &second, &"a".repeat(64), &first.to_uppercase()] {
        assert!(
            !log.contains(token.as_str()),
            "the log holds a token: {log}"
        );
        assert!(
            !text.contains(token.as_str()),
            "the metrics hold a token: {text}"
        );
    }
    assert!(!log.contains("a=1&"), "the log holds a query string: {log}");
    eprintln!(
        "tokens: {bad_tokens} requests with a missing, wrong, old or non-bearer token answered \
         401 with 0 Docker calls; the right one passed by query, percent-encoded query and \
         header, and after rotation only the new one; no token in {} log lines or the metrics",
        process.log().len()
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// A token file that cannot be read is a start-up error, not an open door.
#[tokio::test]
async fn unreadable_or_empty_token_file_refuses_to_start() {
    let dir = faults::short_temp_dir("pdc-tk");
    let empty = dir.join("empty");
    std::fs::write(&empty, "\n").expect("write");
    for path in [dir.join("missing"), empty] {
        let started = pod_detail_collector::server::start(Settings {
            token_file: Some(path.clone()),
            ..bare_settings()
        })
        .await;
        let Err(err) = started else {
            panic!("started with token file {}", path.display());
        };
        assert!(err.to_string().contains("--token-file"), "{err}");
    }
    let _ = std::fs::remove_dir_all(dir);
}
