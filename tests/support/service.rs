//! Runs the collector in-process for one test and talks HTTP to it.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use pod_detail_collector::runtime::RuntimeChoice;
use pod_detail_collector::{Settings, server};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::cri::CriNode;
use super::docker::Node;
use super::util;

/// Where processors live.
pub const PROCESSOR_PATH: &str = "/processor/podDetailCollector";
/// The key KubeDiag merges into the diagnosis context.
pub const POD_DETAIL_KEY: &str = "collector.kubernetes.pod.detail";
/// The node-wide processors and the keys they answer under.
pub const POD_LIST_PATH: &str = "/processor/podListCollector";
pub const POD_LIST_KEY: &str = "collector.kubernetes.pod.list";
pub const CONTAINER_LIST_PATH: &str = "/processor/containerCollector";
pub const CONTAINER_LIST_KEY: &str = "collector.kubernetes.container.list";
pub const DOCKER_INFO_PATH: &str = "/processor/dockerInfoCollector";
pub const DOCKER_INFO_KEY: &str = "collector.kubernetes.docker.info";
/// Every processor path with its answer key.
pub const PROCESSORS: [(&str, &str); 4] = [
    (PROCESSOR_PATH, POD_DETAIL_KEY),
    (POD_LIST_PATH, POD_LIST_KEY),
    (CONTAINER_LIST_PATH, CONTAINER_LIST_KEY),
    (DOCKER_INFO_PATH, DOCKER_INFO_KEY),
];
/// `spec.nodeName` the tests configure.
pub const NODE_NAME: &str = "test-node";
/// `status.hostIP` the tests configure (a documentation address: only ever a value, never
/// contacted).
pub const HOST_IP: &str = "192.0.2.10";

/// Settings for a collector that looks at this test's node: the test daemon, the test's
/// kubelet root, an empty manifest directory, a fixed node name and host IP.
pub fn settings_for(node: &Node) -> Settings {
    node_settings(
        RuntimeChoice::Docker(util::docker_host()),
        &node.dir,
        &node.kubelet_root,
        &node.pod_logs_dir,
    )
}

/// The same for the test's containerd.
pub fn cri_settings_for(node: &CriNode) -> Settings {
    node_settings(
        RuntimeChoice::Cri(node.endpoint.clone()),
        &node.dir,
        &node.kubelet_root,
        &node.pod_logs_dir,
    )
}

fn node_settings(
    runtime: RuntimeChoice,
    dir: &Path,
    kubelet_root: &Path,
    pod_logs: &Path,
) -> Settings {
    let manifests = dir.join("manifests");
    std::fs::create_dir_all(&manifests).expect("manifest dir");
    Settings {
        listen: "127.0.0.1:0".parse().expect("listen address"),
        runtime,
        node_name: NODE_NAME.to_string(),
        host_ip: Some(HOST_IP.parse::<IpAddr>().expect("host ip")),
        runtime_timeout: Duration::from_secs(10),
        kubelet_root: kubelet_root.to_path_buf(),
        manifest_dir: manifests,
        pod_logs_dir: pod_logs.to_path_buf(),
        ..Settings::default()
    }
}

/// A reply: status, headers, body text.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    /// The body as JSON (panics with the body when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("reply body is not JSON ({e}): {}", self.body))
    }
    /// Checks the reply is a KubeDiag error with this status: `application/json` and
    /// `{"error": "<non-empty text>"}`; returns the text.
    pub fn expect_error(&self, status: u16) -> String {
        assert_eq!(self.status, status, "status; body: {}", self.body);
        assert_content_type_json(self);
        let v = self.json();
        let obj = v.as_object().expect("error body is an object");
        let text = obj
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("error body has no string \"error\": {}", self.body));
        assert!(!text.trim().is_empty(), "empty error text");
        text.to_string()
    }
    /// Checks the reply is a KubeDiag success answering only `key`, whose value is a string
    /// holding JSON; returns that JSON parsed.
    pub fn expect_answer(&self, key: &str) -> Value {
        assert_eq!(self.status, 200, "status; body: {}", self.body);
        assert_content_type_json(self);
        let v = self.json();
        let obj = v.as_object().expect("reply body is an object");
        assert_eq!(obj.keys().collect::<Vec<_>>(), vec![key], "reply keys");
        let text = obj[key]
            .as_str()
            .unwrap_or_else(|| panic!("{key} must be a string: {}", self.body));
        serde_json::from_str(text)
            .unwrap_or_else(|e| panic!("{key} does not hold JSON ({e}): {text}"))
    }

    /// Checks the reply is a KubeDiag success and returns the Pod parsed out of the string
    /// value of `collector.kubernetes.pod.detail`.
    pub fn expect_pod(&self) -> Value {
        assert_eq!(self.status, 200, "status; body: {}", self.body);
        assert_content_type_json(self);
        let v = self.json();
        let obj = v.as_object().expect("reply body is an object");
        assert_eq!(
            obj.keys().collect::<Vec<_>>(),
            vec![POD_DETAIL_KEY],
            "reply keys"
        );
        let text = obj[POD_DETAIL_KEY]
            .as_str()
            .unwrap_or_else(|| panic!("{POD_DETAIL_KEY} must be a string: {}", self.body));
        let pod: Value = serde_json::from_str(text)
            .unwrap_or_else(|e| panic!("{POD_DETAIL_KEY} does not hold JSON ({e}): {text}"));
        assert!(pod.is_object(), "the pod must be one object, got: {pod}");
        assert_eq!(pod["apiVersion"], "v1", "apiVersion");
        assert_eq!(pod["kind"], "Pod", "kind");
        pod
    }
}

fn assert_content_type_json(reply: &Reply) {
    let ct = reply.header("content-type").unwrap_or("");
    assert!(
        ct.starts_with("application/json"),
        "Content-Type should be application/json, got {ct:?}"
    );
}

/// A collector serving on a loopback port for the duration of a test.
pub struct Collector {
    pub addr: SocketAddr,
    pub settings: Settings,
    server: Option<server::RunningServer>,
    client: reqwest::Client,
}

impl Collector {
    /// Starts a collector for this node with [`settings_for`].
    pub async fn start(node: &Node) -> Self {
        Self::start_with(settings_for(node)).await
    }

    /// Starts a collector with these settings.
    pub async fn start_with(settings: Settings) -> Self {
        let running = server::start(settings.clone())
            .await
            .unwrap_or_else(|e| panic!("start the collector: {e}"));
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("http client");
        Self {
            addr: running.addr,
            settings,
            server: Some(running),
            client,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Sends a request with an optional body and no Content-Type (like the KubeDiag agent).
    pub async fn request(&self, method: &str, path: &str, body: Option<Vec<u8>>) -> Reply {
        self.request_with(method, path, body, &[]).await
    }

    /// Sends a request with extra headers.
    pub async fn request_with(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.client.request(method, self.url(path));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.body(b);
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("request to the collector failed: {e}"));
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.text().await.expect("read reply body");
        Reply {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.request("GET", path, None).await
    }

    /// POSTs raw bytes to the processor, without Content-Type.
    pub async fn post_raw(&self, body: impl Into<Vec<u8>>) -> Reply {
        self.request("POST", PROCESSOR_PATH, Some(body.into()))
            .await
    }

    /// POSTs a JSON value to a processor path, without Content-Type (as the agent does).
    pub async fn post_json_to(&self, path: &str, body: &Value) -> Reply {
        let bytes = serde_json::to_vec(body).expect("json");
        self.request("POST", path, Some(bytes)).await
    }

    /// POSTs a JSON value to the processor, without Content-Type (as the agent does).
    pub async fn post_json(&self, body: &Value) -> Reply {
        self.post_raw(serde_json::to_vec(body).expect("json")).await
    }

    /// Asks for a pod the way the KubeDiag agent does (a flat string map with context keys).
    pub async fn ask(&self, namespace: &str, name: &str) -> Reply {
        self.post_json(&serde_json::json!({
            "pod.namespace": namespace,
            "pod.name": name,
            "node": NODE_NAME,
            "diagnosis.namespace": "default",
            "diagnosis.name": "pod-detail-test",
            "diagnosis.uid": "00000000-0000-4000-8000-000000000000",
        }))
        .await
    }

    /// Asks for a pod and returns it, failing unless the reply is a 200 with a Pod.
    /// With `PDC_TEST_DUMP` set, prints the pod.
    pub async fn pod(&self, namespace: &str, name: &str) -> Value {
        let pod = self.ask(namespace, name).await.expect_pod();
        if std::env::var_os("PDC_TEST_DUMP").is_some() {
            eprintln!(
                "pod {namespace}/{name}:\n{}",
                serde_json::to_string_pretty(&pod).unwrap_or_default()
            );
        }
        pod
    }

    /// Sends a raw HTTP/1.1 request over TCP (for what reqwest cannot send, like a chunked
    /// body) and reads the whole reply. `head` is the request line and headers without the
    /// final blank line.
    pub async fn raw_http(&self, head: &str, body: &[u8]) -> Reply {
        let mut stream = tokio::net::TcpStream::connect(self.addr)
            .await
            .expect("connect to the collector");
        let mut req = head.trim_end_matches("\r\n").replace("\r\n", "\n");
        req = req.replace('\n', "\r\n");
        let mut bytes =
            format!("{req}\r\nHost: {}\r\nConnection: close\r\n\r\n", self.addr).into_bytes();
        bytes.extend_from_slice(body);
        stream.write_all(&bytes).await.expect("send request");
        let mut raw = Vec::new();
        tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut raw))
            .await
            .expect("reply within 30s")
            .expect("read reply");
        parse_http_reply(&raw)
    }

    /// Stops the server.
    pub async fn shutdown(mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await;
        }
    }
}

/// Encodes `body` as HTTP/1.1 chunks of at most `chunk` bytes, with the final empty chunk.
pub fn chunked(body: &[u8], chunk: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for part in body.chunks(chunk.max(1)) {
        out.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
        out.extend_from_slice(part);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

fn parse_http_reply(raw: &[u8]) -> Reply {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in reply: {}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut body = raw[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let mut headers = reqwest::header::HeaderMap::new();
    for line in lines {
        if let Some((k, v)) = line.split_once(':')
            && let (Ok(name), Ok(value)) = (
                reqwest::header::HeaderName::from_bytes(k.trim().as_bytes()),
                reqwest::header::HeaderValue::from_str(v.trim()),
            )
        {
            headers.append(name, value);
        }
    }
    let is_chunked = headers
        .get("transfer-encoding")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    if is_chunked {
        body = dechunk(&body);
    }
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&body).to_string(),
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = data.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&data[..eol]);
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let Ok(size) = usize::from_str_radix(size_text, 16) else {
            break;
        };
        data = &data[eol + 2..];
        if size == 0 || data.len() < size {
            break;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[(size + 2).min(data.len())..];
    }
    out
}

/// A `unix://` address under this directory where no daemon listens.
pub fn missing_socket(dir: &Path) -> String {
    format!("unix://{}", dir.join("no-such-docker.sock").display())
}
