//! Test machinery for the hardening tests: a fault-injecting, recording proxy in front of the
//! Docker socket, the collector binary as a child process, and a Prometheus text reader.
//!
//! - [`Proxy`]: a Unix-socket HTTP/1.1 proxy (hyper server + hyper client) that forwards to the
//!   real daemon, or plays a sick one ([`Mode`]): socket missing, connections refused, reset,
//!   hung, `500`s, garbage JSON, containers vanishing between list and inspect, slow answers.
//!   It records every request (method + path) and counts the calls in flight.
//! - It can also play a daemon whose clock is off ([`Proxy::set_clock_skew`]): every time
//!   Docker answers (the `Date` header, event stamps, container, image and `/info` times) is
//!   moved by the skew, and the `since`/`until` of event queries moved back, so the real
//!   daemon behind it works in its own time while the collector sees a skewed one.
//! - [`ServeProcess`]: `pod-detail-collector serve` as a child process, its log, RSS and signals.
//! - [`metric`]: one value out of a `/metrics` scrape.

#![allow(dead_code)]

use std::collections::HashSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use pod_detail_collector::Settings;
use pod_detail_collector::runtime::RuntimeChoice;
use pod_detail_collector::server::{self, RunningServer};

type ProxyBody = BoxBody<Bytes, hyper::Error>;

/// What the proxy does with the next connection or request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Forward to the real daemon.
    Pass,
    /// Forward after this delay (a slow daemon; builds up calls in flight).
    Slow(Duration),
    /// No socket file at all.
    Missing,
    /// A socket file nobody listens on: `connect` fails with `ECONNREFUSED`.
    Refused,
    /// Accept the connection, then close it without a word.
    Reset,
    /// Accept and read the request, never answer.
    Hang,
    /// Answer every request `500` with a Docker-style JSON error.
    Http500,
    /// Answer `200 application/json` with a body that is not JSON.
    Garbage,
    /// Answer `404 No such container` to `GET /containers/<id>/json` for these IDs (the
    /// container was removed between list and inspect); forward everything else.
    Vanish(HashSet<String>),
    /// Forward, then add this many made-up container events to an answer (more than Docker's
    /// event log holds, for `GET /events`: a window that may have lost events).
    Flood(usize),
    /// Apply the inner mode to requests whose path (API version prefix removed) starts with
    /// the prefix; forward the others. Only for request-level modes (not Missing, Refused,
    /// Reset).
    Only(String, Box<Mode>),
}

impl Mode {
    pub fn only(prefix: &str, mode: Mode) -> Mode {
        Mode::Only(prefix.to_string(), Box::new(mode))
    }
    fn listens(&self) -> bool {
        !matches!(self, Mode::Missing | Mode::Refused)
    }
}

/// One request the proxy received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Logged {
    pub method: String,
    /// The path without the `/v1.xx` API version prefix, without the query.
    pub path: String,
    /// The path and query as sent.
    pub uri: String,
}

struct Inner {
    upstream: PathBuf,
    path: PathBuf,
    mode: Mutex<Mode>,
    log: Mutex<Vec<Logged>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    /// Requests or connections that met a fault (not `Pass`/`Slow`).
    faulted: AtomicUsize,
    /// Nanoseconds the daemon's clock appears to be ahead (negative: behind).
    skew: AtomicI64,
    accept_task: Mutex<Option<JoinHandle<()>>>,
    stop: watch::Sender<bool>,
}

/// A fault-injecting, recording proxy on a Unix socket in front of the Docker daemon.
pub struct Proxy {
    inner: Arc<Inner>,
    dir: PathBuf,
}

impl Proxy {
    /// Starts a collector whose Docker daemon is this proxy.
    pub async fn collector(&self, settings: Settings) -> RunningServer {
        server::start(Settings {
            runtime: RuntimeChoice::Docker(self.docker_host()),
            ..settings
        })
        .await
        .expect("start the collector")
    }

    /// A proxy in `Pass` mode in front of the test daemon (`DOCKER_HOST`).
    pub fn start() -> Self {
        Self::with_mode(Mode::Pass)
    }

    /// A proxy in front of the test daemon, starting in this mode (e.g. `Missing`: the
    /// socket appears later). Must be called inside a tokio runtime.
    pub fn with_mode(mode: Mode) -> Self {
        let upstream = upstream_socket();
        let dir = short_temp_dir("pdc-px");
        let path = dir.join("d.sock");
        let (stop, _) = watch::channel(false);
        let proxy = Proxy {
            inner: Arc::new(Inner {
                upstream,
                path,
                mode: Mutex::new(Mode::Missing),
                log: Mutex::new(Vec::new()),
                in_flight: AtomicUsize::new(0),
                max_in_flight: AtomicUsize::new(0),
                faulted: AtomicUsize::new(0),
                skew: AtomicI64::new(0),
                accept_task: Mutex::new(None),
                stop,
            }),
            dir,
        };
        proxy.set_mode(mode);
        proxy
    }

    /// `unix://<socket>`, for `Settings::docker_host` / `--docker-host`.
    pub fn docker_host(&self) -> String {
        format!("unix://{}", self.inner.path.display())
    }

    pub fn socket_path(&self) -> &Path {
        &self.inner.path
    }

    /// Switches the behaviour; takes effect for the next connection (socket-level modes) or
    /// request. Must be called inside a tokio runtime.
    pub fn set_mode(&self, mode: Mode) {
        let mut current = self.inner.mode.lock().unwrap();
        let mut task = self.inner.accept_task.lock().unwrap();
        match (&mode, task.is_some()) {
            (Mode::Missing, _) => {
                if let Some(t) = task.take() {
                    t.abort();
                }
                let _ = std::fs::remove_file(&self.inner.path);
            }
            (Mode::Refused, _) => {
                if let Some(t) = task.take() {
                    t.abort();
                }
                let _ = std::fs::remove_file(&self.inner.path);
                // Bound then closed: the file stays, nobody listens, connect() is refused.
                let listener = std::os::unix::net::UnixListener::bind(&self.inner.path)
                    .expect("bind the refusing socket");
                drop(listener);
            }
            (_, false) => {
                let _ = std::fs::remove_file(&self.inner.path);
                let listener = std::os::unix::net::UnixListener::bind(&self.inner.path)
                    .expect("bind the proxy socket");
                listener.set_nonblocking(true).expect("nonblocking socket");
                let listener = UnixListener::from_std(listener).expect("tokio unix listener");
                *task = Some(tokio::spawn(accept_loop(self.inner.clone(), listener)));
            }
            (_, true) => {}
        }
        debug_assert_eq!(mode.listens(), task.is_some());
        *current = mode;
    }

    pub fn mode(&self) -> Mode {
        self.inner.mode.lock().unwrap().clone()
    }

    /// Every request received so far, oldest first.
    pub fn log(&self) -> Vec<Logged> {
        self.inner.log.lock().unwrap().clone()
    }

    pub fn requests(&self) -> usize {
        self.inner.log.lock().unwrap().len()
    }

    pub fn clear_log(&self) {
        self.inner.log.lock().unwrap().clear();
    }

    /// The most requests that were in the proxy at once since the last reset.
    pub fn max_in_flight(&self) -> usize {
        self.inner.max_in_flight.load(Ordering::SeqCst)
    }

    pub fn in_flight(&self) -> usize {
        self.inner.in_flight.load(Ordering::SeqCst)
    }

    pub fn reset_max_in_flight(&self) {
        self.inner.max_in_flight.store(0, Ordering::SeqCst);
    }

    /// Plays a daemon whose clock reads `skew_nanos` ahead of the real one (negative:
    /// behind).
    pub fn set_clock_skew(&self, skew_nanos: i64) {
        self.inner.skew.store(skew_nanos, Ordering::SeqCst);
    }

    /// Requests and connections that met a fault (hung, 500, garbage, vanished, reset).
    pub fn faulted(&self) -> usize {
        self.inner.faulted.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.inner.stop.send(true);
        if let Some(t) = self.inner.accept_task.lock().unwrap().take() {
            t.abort();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn accept_loop(inner: Arc<Inner>, listener: UnixListener) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if *inner.mode.lock().unwrap() == Mode::Reset {
            inner.faulted.fetch_add(1, Ordering::SeqCst);
            drop(stream);
            continue;
        }
        let conn_inner = inner.clone();
        let mut stop = inner.stop.subscribe();
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(conn_inner.clone(), req));
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = conn => {}
                _ = stop.wait_for(|stopped| *stopped) => {}
            }
        });
    }
}

/// Counts a request in flight while it lives.
struct InFlight(Arc<Inner>);

impl InFlight {
    fn new(inner: &Arc<Inner>) -> Self {
        let now = inner.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        inner.max_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight(inner.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn handle(
    inner: Arc<Inner>,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let path = api_path(req.uri().path()).to_string();
    let uri = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    inner.log.lock().unwrap().push(Logged {
        method: req.method().to_string(),
        path: path.clone(),
        uri,
    });
    let _counted = InFlight::new(&inner);
    let mut mode = inner.mode.lock().unwrap().clone();
    if let Mode::Only(prefix, scoped) = mode {
        mode = if path.starts_with(&prefix) {
            *scoped
        } else {
            Mode::Pass
        };
    }
    match mode {
        Mode::Slow(delay) => {
            tokio::time::sleep(delay).await;
            Ok(forward(&inner, req).await)
        }
        Mode::Hang => {
            inner.faulted.fetch_add(1, Ordering::SeqCst);
            std::future::pending::<()>().await;
            unreachable!("pending never ends")
        }
        Mode::Http500 => {
            inner.faulted.fetch_add(1, Ordering::SeqCst);
            Ok(canned(
                StatusCode::INTERNAL_SERVER_ERROR,
                r#"{"message":"pdc fault injection: the daemon is sick"}"#,
            ))
        }
        Mode::Garbage => {
            inner.faulted.fetch_add(1, Ordering::SeqCst);
            Ok(canned(
                StatusCode::OK,
                "{\"Id\": [\"pdc fault injection\" garbage",
            ))
        }
        Mode::Flood(n) => {
            inner.faulted.fetch_add(1, Ordering::SeqCst);
            let response = forward(&inner, req).await;
            let (mut parts, body) = response.into_parts();
            let mut body = match body.collect().await {
                Ok(body) => body.to_bytes().to_vec(),
                Err(err) => return Ok(bad_gateway(&format!("reading the answer: {err}"))),
            };
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos() as i64
                + inner.skew.load(Ordering::SeqCst);
            for i in 0..n {
                let event = serde_json::json!({
                    "Type": "container", "Action": "exec_start: true",
                    "Actor": {"ID": format!("pdc-flood-{i}"), "Attributes": {}},
                    "time": now / 1_000_000_000, "timeNano": now,
                });
                body.extend(event.to_string().into_bytes());
                body.push(b'\n');
            }
            parts.headers.remove(hyper::header::CONTENT_LENGTH);
            parts.headers.remove(hyper::header::TRANSFER_ENCODING);
            Ok(Response::from_parts(
                parts,
                Full::new(Bytes::from(body))
                    .map_err(|never| match never {})
                    .boxed(),
            ))
        }
        Mode::Vanish(ids) => match inspected_container(&path) {
            Some(id) if ids.contains(id) => {
                inner.faulted.fetch_add(1, Ordering::SeqCst);
                Ok(canned(
                    StatusCode::NOT_FOUND,
                    &format!(r#"{{"message":"No such container: {id}"}}"#),
                ))
            }
            _ => Ok(forward(&inner, req).await),
        },
        _ => Ok(forward(&inner, req).await),
    }
}

async fn forward(inner: &Inner, req: Request<Incoming>) -> Response<ProxyBody> {
    let skew = inner.skew.load(Ordering::SeqCst);
    if skew == 0 {
        return forward_as_is(inner, req).await;
    }
    let path = api_path(req.uri().path()).to_string();
    let mut req = req;
    if path == "/events"
        && let Some(query) = req.uri().query()
    {
        let moved = skew::event_query(query, -skew);
        let uri = format!("{}?{moved}", req.uri().path());
        *req.uri_mut() = uri.parse().expect("a rewritten URI");
    }
    let response = forward_as_is(inner, req).await;
    let (mut parts, body) = response.into_parts();
    let body = match body.collect().await {
        Ok(body) => body.to_bytes(),
        Err(err) => return bad_gateway(&format!("reading the real daemon's answer: {err}")),
    };
    let body = skew::answer(&path, &body, skew);
    parts.headers.remove(hyper::header::CONTENT_LENGTH);
    parts.headers.remove(hyper::header::TRANSFER_ENCODING);
    parts.headers.insert(
        hyper::header::DATE,
        hyper::header::HeaderValue::from_str(&skew::http_date_now(skew)).expect("a date"),
    );
    Response::from_parts(
        parts,
        Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed(),
    )
}

/// Rewrites times by a clock skew, as a daemon with that clock would have written them.
mod skew {
    use k8s_openapi::jiff::{SignedDuration, Timestamp, fmt::rfc2822::DateTimePrinter};
    use serde_json::Value;

    const SEC: i64 = 1_000_000_000;

    /// `since`/`until` (`secs.nanos` or RFC 3339) moved by `by` nanoseconds.
    pub fn event_query(query: &str, by: i64) -> String {
        query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key @ ("since" | "until"), value)) => {
                    format!("{key}={}", move_query_time(value, by))
                }
                _ => pair.to_string(),
            })
            .collect::<Vec<_>>()
            .join("&")
    }

    fn move_query_time(value: &str, by: i64) -> String {
        let nanos = match value.split_once('.') {
            Some((secs, frac)) if secs.bytes().all(|b| b.is_ascii_digit()) => {
                let frac = format!("{frac:0<9}");
                secs.parse::<i64>().unwrap_or_default() * SEC
                    + frac[..9].parse::<i64>().unwrap_or_default()
            }
            None if value.bytes().all(|b| b.is_ascii_digit()) => {
                value.parse::<i64>().unwrap_or_default() * SEC
            }
            _ => {
                let decoded = value.replace("%3A", ":").replace("%2B", "+");
                match decoded.parse::<Timestamp>() {
                    Ok(ts) => i64::try_from(ts.as_nanosecond()).unwrap_or_default(),
                    Err(_) => return value.to_string(),
                }
            }
        };
        let moved = nanos + by;
        format!("{}.{:09}", moved.div_euclid(SEC), moved.rem_euclid(SEC))
    }

    /// `Date:` of a daemon whose clock is `skew` off, now.
    pub fn http_date_now(skew: i64) -> String {
        let now = Timestamp::now() + SignedDuration::from_nanos(skew);
        DateTimePrinter::new()
            .timestamp_to_rfc9110_string(&now)
            .expect("a printable date")
    }

    /// The answer to `path` with its times moved.
    pub fn answer(path: &str, body: &[u8], skew: i64) -> Vec<u8> {
        if path == "/events" {
            let mut out = Vec::with_capacity(body.len());
            for event in serde_json::Deserializer::from_slice(body).into_iter::<Value>() {
                let Ok(mut event) = event else {
                    return body.to_vec();
                };
                if let Some(nanos) = event.get("timeNano").and_then(Value::as_i64) {
                    let moved = nanos + skew;
                    event["timeNano"] = moved.into();
                    event["time"] = moved.div_euclid(SEC).into();
                }
                out.extend(serde_json::to_vec(&event).expect("JSON"));
                out.push(b'\n');
            }
            return out;
        }
        let Ok(mut value) = serde_json::from_slice::<Value>(body) else {
            return body.to_vec();
        };
        if path == "/containers/json" {
            for container in value.as_array_mut().into_iter().flatten() {
                if let Some(created) = container.get("Created").and_then(Value::as_i64) {
                    container["Created"] = (created * SEC + skew).div_euclid(SEC).into();
                }
            }
        } else if path.starts_with("/containers/") || path.starts_with("/images/") {
            move_time(value.pointer_mut("/Created"), skew);
            move_time(value.pointer_mut("/State/StartedAt"), skew);
            move_time(value.pointer_mut("/State/FinishedAt"), skew);
            move_time(value.pointer_mut("/Metadata/LastTagTime"), skew);
        } else if path == "/info" {
            move_time(value.pointer_mut("/SystemTime"), skew);
        } else {
            return body.to_vec();
        }
        serde_json::to_vec(&value).expect("JSON")
    }

    /// An RFC 3339 time moved; Docker's zero time ("never") stays.
    fn move_time(value: Option<&mut Value>, skew: i64) {
        let Some(value) = value else { return };
        let Some(text) = value.as_str() else { return };
        if text.starts_with("0001-01-01") {
            return;
        }
        if let Ok(ts) = text.parse::<Timestamp>() {
            *value = (ts + SignedDuration::from_nanos(skew)).to_string().into();
        }
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn moves_times() {
            assert_eq!(
                super::event_query("since=100.5&until=101.000000001&filters=x", -2_000_000_000),
                "since=98.500000000&until=99.000000001&filters=x"
            );
            let moved = super::answer(
                "/containers/abc/json",
                br#"{"Created":"2026-01-01T00:00:00.5Z","State":{"StartedAt":"0001-01-01T00:00:00Z"}}"#,
                60_000_000_000,
            );
            let moved: serde_json::Value = serde_json::from_slice(&moved).unwrap();
            assert_eq!(moved["Created"], "2026-01-01T00:01:00.5Z");
            assert_eq!(moved["State"]["StartedAt"], "0001-01-01T00:00:00Z");
            let events = super::answer(
                "/events",
                b"{\"timeNano\":1000000000,\"time\":1}\n{\"timeNano\":2500000000,\"time\":2}\n",
                -1_000_000_000,
            );
            let events: Vec<serde_json::Value> = serde_json::Deserializer::from_slice(&events)
                .into_iter()
                .collect::<Result<_, _>>()
                .unwrap();
            assert_eq!(events[0], serde_json::json!({"time": 0, "timeNano": 0}));
            assert_eq!(
                events[1],
                serde_json::json!({"time": 1, "timeNano": 1_500_000_000})
            );
        }
    }
}

async fn forward_as_is(inner: &Inner, req: Request<Incoming>) -> Response<ProxyBody> {
    let stream = match UnixStream::connect(&inner.upstream).await {
        Ok(stream) => stream,
        Err(err) => return bad_gateway(&format!("connect to the real daemon: {err}")),
    };
    let (mut sender, conn) = match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
    {
        Ok(pair) => pair,
        Err(err) => return bad_gateway(&format!("handshake with the real daemon: {err}")),
    };
    tokio::spawn(conn);
    match sender.send_request(req).await {
        Ok(response) => response.map(|body| body.boxed()),
        Err(err) => bad_gateway(&format!("request to the real daemon: {err}")),
    }
}

fn canned(status: StatusCode, body: &str) -> Response<ProxyBody> {
    let mut response = Response::new(
        Full::new(Bytes::from(body.to_string()))
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

fn bad_gateway(text: &str) -> Response<ProxyBody> {
    canned(
        StatusCode::BAD_GATEWAY,
        &serde_json::json!({ "message": text }).to_string(),
    )
}

/// `/v1.41/containers/json` → `/containers/json`.
pub fn api_path(path: &str) -> &str {
    if let Some(rest) = path.strip_prefix("/v")
        && let Some((version, tail)) = rest.split_once('/')
        && version
            .split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    {
        return &path[path.len() - tail.len() - 1..];
    }
    path
}

/// The container ID of a `/containers/<id>/json` path.
fn inspected_container(path: &str) -> Option<&str> {
    let id = path.strip_prefix("/containers/")?.strip_suffix("/json")?;
    (!id.is_empty() && !id.contains('/')).then_some(id)
}

/// The real daemon's socket, from `DOCKER_HOST` (the tests' daemon).
pub fn upstream_socket() -> PathBuf {
    let host = match std::env::var("DOCKER_HOST") {
        Ok(h) if !h.trim().is_empty() => h.trim().to_string(),
        _ => "unix:///var/run/docker.sock".to_string(),
    };
    let path = host.strip_prefix("unix://").unwrap_or(&host);
    assert!(
        path.starts_with('/'),
        "the fault proxy needs a unix socket daemon, DOCKER_HOST={host}: run scripts/test"
    );
    PathBuf::from(path)
}

/// A fresh directory with a short path (unix socket paths must stay under 108 bytes).
pub fn short_temp_dir(prefix: &str) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos();
    let dir = PathBuf::from(format!(
        "/tmp/{prefix}-{}-{n}-{nanos:x}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).expect("create a temp dir");
    dir
}

// ---------------------------------------------------------------------------------------------
// The binary as a child process.
// ---------------------------------------------------------------------------------------------

/// `pod-detail-collector serve` running as a child process on a loopback port.
pub struct ServeProcess {
    child: tokio::process::Child,
    pub pid: u32,
    pub addr: SocketAddr,
    lines: Arc<Mutex<Vec<String>>>,
    /// Reads stderr into `lines` until the process closes it.
    reader: Option<JoinHandle<()>>,
}

impl ServeProcess {
    /// Starts `serve --listen 127.0.0.1:0 <args>` and waits until it says where it listens.
    pub async fn start(args: &[&str]) -> Self {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_pod-detail-collector"));
        command
            .arg("serve")
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .env("RUST_LOG", "info")
            .env_remove("PDC_REVEAL_ENV")
            .env_remove("PDC_LISTEN")
            .env_remove("PDC_RUNTIME_CONCURRENCY")
            .env_remove("PDC_BODY_LIMIT")
            // scripts/test exports it for the CRI tests; the runtime is the one `args` name.
            .env_remove("CONTAINER_RUNTIME_ENDPOINT")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().expect("start pod-detail-collector serve");
        let pid = child.id().expect("child pid");
        let stderr = child.stderr.take().expect("child stderr");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let reader = tokio::spawn(async move {
            let mut reader = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                sink.lock().unwrap().push(line);
            }
        });
        let mut process = ServeProcess {
            child,
            pid,
            addr: "127.0.0.1:1".parse().unwrap(),
            lines,
            reader: Some(reader),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let found = process.log().iter().find_map(|line| {
                line.split_once(" on http://")
                    .filter(|_| line.contains("serving"))
                    .and_then(|(_, addr)| addr.trim().parse::<SocketAddr>().ok())
            });
            if let Some(addr) = found {
                process.addr = addr;
                return process;
            }
            if let Ok(Some(status)) = process.child.try_wait() {
                panic!(
                    "the collector exited ({status}) before serving: {:?}",
                    process.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "the collector did not say where it listens within 30s: {:?}",
                process.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Its log lines so far (stderr).
    pub fn log(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Waits until a log line contains `needle`.
    pub async fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.log().iter().any(|l| l.contains(needle)) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }

    /// Resident memory (VmRSS), bytes.
    pub fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))
            .expect("read /proc/<pid>/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|kb| kb.parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .expect("VmRSS in /proc/<pid>/status")
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid, with a valid signal number.
        let rc = unsafe { libc::kill(self.pid as libc::pid_t, signal) };
        assert_eq!(rc, 0, "kill({}, {signal})", self.pid);
    }

    pub fn sigterm(&self) {
        self.signal(libc::SIGTERM);
    }

    /// Waits for the process to exit, and for its last log lines to be read.
    pub async fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let status = tokio::time::timeout(timeout, self.child.wait())
            .await
            .ok()
            .map(|r| r.expect("wait for the collector"))?;
        if let Some(reader) = self.reader.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), reader).await;
        }
        Some(status)
    }
}

// ---------------------------------------------------------------------------------------------
// Prometheus text.
// ---------------------------------------------------------------------------------------------

/// The sum of the samples named `name` whose labels include every pair of `labels`; `None`
/// when there is none.
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut total = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (series_name, series_labels) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        if series_name != name {
            continue;
        }
        let has = |k: &str, v: &str| {
            series_labels
                .split(',')
                .any(|pair| pair.trim() == format!("{k}=\"{v}\""))
        };
        if labels.iter().all(|(k, v)| has(k, v))
            && let Ok(value) = value.trim().parse::<f64>()
        {
            *total.get_or_insert(0.0) += value;
        }
    }
    total
}

// ---------------------------------------------------------------------------------------------
// Small HTTP helpers.
// ---------------------------------------------------------------------------------------------

/// A reply: status and body text.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: String,
    pub content_type: String,
    pub elapsed: Duration,
}

impl Answer {
    /// The `error` text of a `{"error": "..."}` body (panics otherwise).
    pub fn error_text(&self) -> String {
        let v: serde_json::Value = serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body));
        v.get("error")
            .and_then(|e| e.as_str())
            .unwrap_or_else(|| panic!("no \"error\" text: {}", self.body))
            .to_string()
    }
}

/// A client with a generous timeout: the tests measure their own limits.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("http client")
}

/// Sends one request; `Err` is a transport failure (refused, reset, timed out).
pub async fn send(
    client: &reqwest::Client,
    method: &str,
    url: &str,
    body: Option<Vec<u8>>,
) -> Result<Answer, reqwest::Error> {
    let started = Instant::now();
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut request = client.request(method, url);
    if let Some(body) = body {
        request = request.body(body);
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = response.text().await?;
    Ok(Answer {
        status,
        body,
        content_type,
        elapsed: started.elapsed(),
    })
}

/// POSTs a JSON body to a processor and returns the answer (panics on transport failure).
pub async fn post(
    client: &reqwest::Client,
    base: SocketAddr,
    processor: &str,
    body: &serde_json::Value,
) -> Answer {
    let url = format!("http://{base}/processor/{processor}");
    send(client, "POST", &url, Some(body.to_string().into_bytes()))
        .await
        .unwrap_or_else(|e| panic!("POST {url}: {e}"))
}

/// GETs a path and returns the answer (panics on transport failure).
pub async fn get(client: &reqwest::Client, base: SocketAddr, path: &str) -> Answer {
    let url = format!("http://{base}{path}");
    send(client, "GET", &url, None)
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

/// Collector settings for tests that need no node of pods: loopback, a fixed node name.
pub fn bare_settings() -> Settings {
    Settings {
        listen: "127.0.0.1:0".parse().expect("listen address"),
        node_name: "test-node".into(),
        ..Settings::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_the_api_version() {
        assert_eq!(api_path("/v1.41/containers/json"), "/containers/json");
        assert_eq!(api_path("/version"), "/version");
        assert_eq!(api_path("/v1.41/version"), "/version");
        assert_eq!(api_path("/_ping"), "/_ping");
        assert_eq!(inspected_container("/containers/abc/json"), Some("abc"));
        assert_eq!(inspected_container("/containers/json"), None);
    }

    #[test]
    fn reads_prometheus_text() {
        let text = "# HELP x y\nx_total{route=\"/a\",code=\"200\"} 3\nx_total{route=\"/a\",code=\"500\"} 2\n";
        assert_eq!(metric(text, "x_total", &[("route", "/a")]), Some(5.0));
        assert_eq!(metric(text, "x_total", &[("code", "500")]), Some(2.0));
        assert_eq!(metric(text, "x_total", &[("code", "404")]), None);
    }
}
