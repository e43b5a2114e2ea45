//! The container image, end to end, on a real Docker daemon.
//!
//! `scripts/build-image` builds the static binary and the FROM-scratch image on the daemon that
//! `PDC_TEST_DOCKER_HOST` (else `DOCKER_HOST`, else `unix:///var/run/docker.sock`) names. The test
//! then makes a pod the way the kubelet's Docker integration does (a `k8s_POD_…` sandbox and a
//! `k8s_app_…` container joined to its network, with the kubelet's labels), runs the collector
//! from the image as the DaemonSet does (socket mounted, host network and PID namespace, host
//! /proc read-only, read-only root, no capabilities) on a free loopback port, and asks it for the
//! pod over HTTP, without a Content-Type, as KubeDiag's agent does.
//!
//! A daemon is required: without one these tests fail, they do not skip. They use the `docker`
//! CLI, a static busybox (`busybox-static`, imported as the pod's image since nothing can be
//! pulled) and `tar`; `scripts/ci-deps` installs them.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

const IMAGE: &str = "pod-detail-collector:test";
const FIXTURE_IMAGE: &str = "pdc-image-test/busybox:1";
/// On every container this file creates, so that a run that was killed is cleaned up by the next.
const OWNER_LABEL: &str = "pdc.test/owner=tests-image";
const IMAGE_SIZE_GOAL: u64 = 10_000_000;
const PROCESSOR_PATH: &str = "/processor/podDetailCollector";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn docker_host() -> String {
    std::env::var("PDC_TEST_DOCKER_HOST")
        .or_else(|_| std::env::var("DOCKER_HOST"))
        .unwrap_or_else(|_| "unix:///var/run/docker.sock".to_string())
}

fn socket_path() -> PathBuf {
    let host = docker_host();
    let path = host.strip_prefix("unix://").unwrap_or_else(|| {
        panic!("the image test mounts the daemon's socket: DOCKER_HOST={host} is not unix://")
    });
    PathBuf::from(path)
}

fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .env("DOCKER_HOST", docker_host())
        .output()
        .unwrap_or_else(|e| panic!("cannot run the docker CLI ({e}): run scripts/ci-deps"))
}

/// Runs docker and returns its trimmed stdout; panics with stderr when it fails.
fn docker_ok(args: &[&str]) -> String {
    let out = docker(args);
    assert!(
        out.status.success(),
        "docker {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn require_daemon() {
    let out = docker(&["version", "--format", "{{.Server.Version}}"]);
    assert!(
        out.status.success(),
        "no Docker daemon answers at {} (set PDC_TEST_DOCKER_HOST or DOCKER_HOST): {}",
        docker_host(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

struct Built {
    binary_bytes: u64,
    image_bytes: u64,
}

/// Builds the image once per test binary, with the project's own script.
fn built() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(|| {
        require_daemon();
        let started = Instant::now();
        let out = Command::new(repo().join("scripts/build-image"))
            .args(["--tag", IMAGE])
            .env("DOCKER_HOST", docker_host())
            .output()
            .expect("run scripts/build-image");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "scripts/build-image failed:\n{stderr}\n{stdout}"
        );
        // Whatever the script found worth saying (e.g. glibc NSS warnings) goes to the test log.
        for line in stderr
            .lines()
            .filter(|l| l.starts_with("build-image:") || l.starts_with("  Using"))
        {
            eprintln!("{line}");
        }
        let bytes_of = |prefix: &str| -> u64 {
            let line = stdout
                .lines()
                .find(|l| l.starts_with(prefix))
                .unwrap_or_else(|| panic!("build-image printed no {prefix:?} line:\n{stdout}"));
            let words: Vec<&str> = line.split_whitespace().collect();
            words[words.len() - 2].parse().expect("a byte count")
        };
        let built = Built {
            binary_bytes: bytes_of("binary:"),
            image_bytes: bytes_of("image:"),
        };
        eprintln!(
            "built {IMAGE} in {:.0?}: binary {} bytes ({:.2} MiB), image {} bytes ({:.2} MiB)",
            started.elapsed(),
            built.binary_bytes,
            built.binary_bytes as f64 / 1048576.0,
            built.image_bytes,
            built.image_bytes as f64 / 1048576.0
        );
        built
    })
}

#[test]
fn image_is_small_static_and_non_root() {
    let built = built();
    assert!(
        built.image_bytes < IMAGE_SIZE_GOAL,
        "image is {} bytes, the goal is under {IMAGE_SIZE_GOAL}",
        built.image_bytes
    );
    let config: Value = serde_json::from_str(&docker_ok(&[
        "image",
        "inspect",
        "--format",
        "{{json .Config}}",
        IMAGE,
    ]))
    .expect("image config is JSON");
    assert_eq!(
        config["User"], "65532:65532",
        "the image runs as a non-login user"
    );
    assert_eq!(
        config["Entrypoint"],
        serde_json::json!(["/pod-detail-collector"])
    );
    assert_eq!(config["Cmd"], serde_json::json!(["serve"]));
    // The allocator keeps no per-thread caches, which survive its trims (docker/Dockerfile).
    assert!(
        config["Env"]
            .as_array()
            .is_some_and(|env| env.contains(&serde_json::json!(
                "GLIBC_TUNABLES=glibc.malloc.tcache_count=0"
            ))),
        "the image tunes the allocator: {}",
        config["Env"]
    );
    let layers = docker_ok(&[
        "image",
        "inspect",
        "--format",
        "{{len .RootFS.Layers}}",
        IMAGE,
    ]);
    assert_eq!(layers, "1", "FROM scratch plus the binary is one layer");
    let labels: Value = serde_json::from_str(&docker_ok(&[
        "image",
        "inspect",
        "--format",
        "{{json .Config.Labels}}",
        IMAGE,
    ]))
    .expect("image labels are JSON");
    assert_eq!(
        labels["org.opencontainers.image.version"],
        env!("CARGO_PKG_VERSION")
    );
}

/// Containers made by a test, removed when it ends however it ends; the collector's log is
/// printed when the test failed.
struct Containers {
    ids: Vec<String>,
    collector: Option<String>,
}

impl Drop for Containers {
    fn drop(&mut self) {
        if let Some(collector) = self.collector.as_ref().filter(|_| std::thread::panicking()) {
            let logs = docker(&["logs", collector]);
            eprintln!(
                "--- collector log ---\n{}{}",
                String::from_utf8_lossy(&logs.stdout),
                String::from_utf8_lossy(&logs.stderr)
            );
        }
        let mut args = vec!["rm", "-f", "-v"];
        args.extend(self.collector.iter().map(String::as_str));
        args.extend(self.ids.iter().rev().map(String::as_str));
        if args.len() > 3 {
            let _ = docker(&args);
        }
    }
}

fn remove_leftovers() {
    let ids = docker_ok(&["ps", "-aq", "--filter", &format!("label={OWNER_LABEL}")]);
    let ids: Vec<&str> = ids.split_whitespace().collect();
    if !ids.is_empty() {
        let mut args = vec!["rm", "-f", "-v"];
        args.extend(ids);
        docker_ok(&args);
    }
}

fn find_busybox() -> PathBuf {
    ["/bin/busybox", "/usr/bin/busybox", "/usr/local/bin/busybox"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("no busybox on this machine: run scripts/ci-deps (installs busybox-static)")
}

/// A one-layer busybox image made with `docker import`, since no registry can be pulled from.
fn fixture_image() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        if docker(&["image", "inspect", FIXTURE_IMAGE])
            .status
            .success()
        {
            return;
        }
        let root = TempDir::new("busybox-root");
        let bin = root.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::copy(find_busybox(), bin.join("busybox")).unwrap();
        std::fs::set_permissions(bin.join("busybox"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        for applet in ["sh", "sleep", "cat", "ls"] {
            std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
        }
        let tar = root.path().with_extension("tar");
        let status = Command::new("tar")
            .args(["-C"])
            .arg(root.path())
            .args(["--owner=0", "--group=0", "-cf"])
            .arg(&tar)
            .arg(".")
            .status()
            .expect("run tar");
        assert!(status.success(), "tar failed");
        docker_ok(&[
            "import",
            "--change",
            r#"CMD ["/bin/sleep", "3600"]"#,
            tar.to_str().unwrap(),
            FIXTURE_IMAGE,
        ]);
        let _ = std::fs::remove_file(tar);
    });
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(what: &str) -> Self {
        let path = std::env::temp_dir().join(format!("pdc-{what}-{}", unique()));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn unique() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{:x}{:08x}", std::process::id(), nanos as u32)
}

fn free_loopback_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    listener.local_addr().unwrap().port()
}

struct Response {
    status: u16,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

/// A plain HTTP/1.1 exchange, with no Content-Type on the request, like KubeDiag's agent.
fn http(port: u16, method: &str, path: &str, body: &[u8]) -> std::io::Result<Response> {
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no end of headers"))?;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line in {head:?}")))?;
    let headers: BTreeMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .get("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        body = dechunk(&body);
    }
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = data.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&data[..eol]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .unwrap_or(0);
        if size == 0 || data.len() < eol + 2 + size {
            break;
        }
        out.extend_from_slice(&data[eol + 2..eol + 2 + size]);
        data = &data[(eol + 4 + size).min(data.len())..];
    }
    out
}

fn label_args(labels: &[(&str, String)]) -> Vec<String> {
    labels
        .iter()
        .flat_map(|(k, v)| ["--label".to_string(), format!("{k}={v}")])
        .collect()
}

fn run_detached(args: Vec<String>) -> String {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    docker_ok(&args)
}

#[test]
fn containerized_collector_answers_for_a_kubelet_style_pod() {
    built();
    remove_leftovers();
    fixture_image();

    let suffix = unique();
    let namespace = "pdc-image-e2e";
    let pod = format!("web-{suffix}");
    let uid = format!(
        "0c0ffee0-0000-4000-8000-{:0>12}",
        &suffix[suffix.len().saturating_sub(12)..]
    );
    let owner = OWNER_LABEL.split_once('=').unwrap();
    let mut containers = Containers {
        ids: Vec::new(),
        collector: None,
    };

    // The sandbox, as dockershim / cri-dockerd create it under CNI.
    let identity = |container: &str, kind: &str| {
        vec![
            ("io.kubernetes.pod.name", pod.clone()),
            ("io.kubernetes.pod.namespace", namespace.to_string()),
            ("io.kubernetes.pod.uid", uid.clone()),
            ("io.kubernetes.container.name", container.to_string()),
            ("io.kubernetes.docker.type", kind.to_string()),
            (owner.0, owner.1.to_string()),
        ]
    };
    let mut sandbox_labels = identity("POD", "podsandbox");
    sandbox_labels.push(("app", "web".to_string()));
    sandbox_labels.push(("annotation.kubernetes.io/config.source", "api".to_string()));
    sandbox_labels.push((
        "annotation.kubernetes.io/config.seen",
        "2024-01-01T00:00:00.000000000Z".to_string(),
    ));
    let mut args: Vec<String> = ["run", "-d", "--network", "none", "--name"]
        .map(String::from)
        .to_vec();
    args.push(format!("k8s_POD_{pod}_{namespace}_{uid}_0"));
    args.extend(label_args(&sandbox_labels));
    args.extend([FIXTURE_IMAGE, "/bin/sleep", "3600"].map(String::from));
    let sandbox = run_detached(args);
    containers.ids.push(sandbox.clone());

    let mut app_labels = identity("app", "container");
    app_labels.push(("io.kubernetes.sandbox.id", sandbox.clone()));
    app_labels.push((
        "annotation.io.kubernetes.container.restartCount",
        "0".to_string(),
    ));
    app_labels.push((
        "annotation.io.kubernetes.container.terminationMessagePath",
        "/dev/termination-log".to_string(),
    ));
    app_labels.push((
        "annotation.io.kubernetes.container.terminationMessagePolicy",
        "File".to_string(),
    ));
    app_labels.push((
        "annotation.io.kubernetes.pod.terminationGracePeriod",
        "30".to_string(),
    ));
    let mut args: Vec<String> = ["run", "-d", "--network"].map(String::from).to_vec();
    args.push(format!("container:{sandbox}"));
    args.push("--name".to_string());
    args.push(format!("k8s_app_{pod}_{namespace}_{uid}_0"));
    args.extend(label_args(&app_labels));
    args.extend([FIXTURE_IMAGE, "/bin/sleep", "3600"].map(String::from));
    let app = run_detached(args);
    containers.ids.push(app.clone());

    // The collector, configured as deploy/base/daemonset.yaml configures it.
    let socket = socket_path();
    let meta = std::fs::metadata(&socket).unwrap_or_else(|e| panic!("{}: {e}", socket.display()));
    // The image's own user (65532) when the socket's group may read and write it: that is the
    // documented non-root way. Otherwise uid 0, still with every capability dropped.
    let identity_args: Vec<String> = if meta.mode() & 0o060 == 0o060 {
        vec!["--group-add".into(), meta.gid().to_string()]
    } else {
        vec!["--user".into(), "0:0".into()]
    };
    let port = free_loopback_port();
    let mut args: Vec<String> = [
        "run",
        "-d",
        "--network",
        "host",
        "--pid",
        "host",
        "--read-only",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
        "--memory",
        "128m",
    ]
    .map(String::from)
    .to_vec();
    args.extend(identity_args);
    args.push("--name".into());
    args.push(format!("pdc-image-e2e-collector-{suffix}"));
    args.push("--label".into());
    args.push(OWNER_LABEL.into());
    args.push("-v".into());
    args.push(format!("{}:/var/run/docker.sock", socket.display()));
    args.extend(["-v", "/proc:/host/proc:ro"].map(String::from));
    for env in [
        "NODE_NAME=e2e-node",
        "HOST_IP=127.0.0.1",
        "PDC_HOST_PROC=/host/proc",
        "DOCKER_HOST=unix:///var/run/docker.sock",
        "RUST_LOG=info,pod_detail_collector=debug",
    ] {
        args.push("-e".into());
        args.push(env.into());
    }
    args.push(IMAGE.into());
    args.push("serve".into());
    args.push("--listen".into());
    args.push(format!("127.0.0.1:{port}"));
    let collector = run_detached(args);
    containers.collector = Some(collector.clone());

    // Ready once it serves and Docker answers its ping.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match http(port, "GET", "/readyz", b"") {
            Ok(r) if r.status == 200 => break,
            outcome => {
                let running = docker_ok(&["inspect", "--format", "{{.State.Running}}", &collector]);
                assert_eq!(
                    running, "true",
                    "the collector container stopped before it was ready"
                );
                assert!(
                    Instant::now() < deadline,
                    "not ready within 30s; last answer: {:?}",
                    outcome.map(|r| (r.status, String::from_utf8_lossy(&r.body).to_string()))
                );
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
    assert_eq!(http(port, "GET", "/healthz", b"").unwrap().status, 200);

    let request = serde_json::json!({
        "pod.namespace": namespace,
        "pod.name": pod,
        "node": "e2e-node",
        "diagnosis.name": "image-e2e",
    });
    let response = http(port, "POST", PROCESSOR_PATH, request.to_string().as_bytes())
        .expect("POST the processor");
    let text = String::from_utf8_lossy(&response.body).to_string();
    assert_eq!(response.status, 200, "answer: {text}");
    assert!(
        response
            .headers
            .get("content-type")
            .is_some_and(|v| v.starts_with("application/json")),
        "content-type: {:?}",
        response.headers.get("content-type")
    );
    let answer: Value = serde_json::from_str(&text).expect("the answer is JSON");
    let detail = answer["collector.kubernetes.pod.detail"]
        .as_str()
        .unwrap_or_else(|| panic!("no string collector.kubernetes.pod.detail in {text}"));
    let pod_json: Value = serde_json::from_str(detail).expect("the detail is the JSON of a Pod");
    assert_eq!(pod_json["apiVersion"], "v1");
    assert_eq!(pod_json["kind"], "Pod");
    assert_eq!(pod_json["metadata"]["name"], pod.as_str());
    assert_eq!(pod_json["metadata"]["namespace"], namespace);
    assert_eq!(pod_json["metadata"]["uid"], uid.as_str());
    // NODE_NAME reached the binary through the container's environment.
    assert_eq!(pod_json["spec"]["nodeName"], "e2e-node", "pod: {detail}");
    let names: Vec<&str> = pod_json["spec"]["containers"]
        .as_array()
        .map(|cs| cs.iter().filter_map(|c| c["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(names, ["app"], "pod: {detail}");
    let status = pod_json["status"]["containerStatuses"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == "app"))
        .unwrap_or_else(|| panic!("no status for container app: {detail}"));
    assert_eq!(status["containerID"], format!("docker://{app}"));

    // A pod that is not on this node.
    let missing =
        serde_json::json!({"pod.namespace": namespace, "pod.name": format!("gone-{suffix}")});
    let response = http(port, "POST", PROCESSOR_PATH, missing.to_string().as_bytes()).unwrap();
    assert_eq!(
        response.status,
        404,
        "answer: {}",
        String::from_utf8_lossy(&response.body)
    );
}
