//! The node benchmark: how fast, how heavy, compared with what Docker itself allows.
//!
//! It lays out a node on the test daemon the way the kubelet would (10, 100, then 250 pods of
//! four containers each: sandbox, a completed init container, the app's exited previous
//! instance and its running current one; plus containers that are not the kubelet's), and at
//! each size measures, in the same run and against the same pods:
//!
//! - **floor**: the Docker API calls the answer needs, made by a bare bollard client over the
//!   same socket: the filtered list, then every container inspect and image inspect at once;
//! - **floor-seq**: the same calls in the collector's order (list → container inspects → image
//!   inspects), to tell a round trip from the rest;
//! - **list-only**: the filtered list call alone (what the floor's time is made of);
//! - **cli**: `docker ps -a --filter label=…` + `docker inspect` + `docker image inspect`;
//! - **collector**: the release binary, spawned as its own process, asked over HTTP at
//!   concurrency 1, 8 and 32: p50/p90/p99, requests per second, start-up time to `/readyz`,
//!   idle and peak RSS, CPU time per request;
//! - **collector-index**: the same binary with `--event-index`, at concurrency 1 and 32.
//!
//! It prints the tables, writes `bench-results/report.md` and `bench-results/latency.png`, and
//! removes every container it made. Run it with `scripts/bench`, which starts a private Docker
//! daemon, builds the images and the release binary, and stops what it started.
//!
//! Environment (all optional):
//! `PDC_BENCH_PODS` (`10,100,250`), `PDC_BENCH_REQUESTS` (400 per point),
//! `PDC_BENCH_CLI_REQUESTS` (100), `PDC_BENCH_CONCURRENCY` (`1,8,32`),
//! `PDC_BENCH_ROUNDS` (4 turns of floor and collector per point), `PDC_BENCH_POINT_SECS`
//! (60, time limit of one measurement), `PDC_BENCH_IDLE_SECS` (7, quiet time before the idle
//! RSS after load is read), `PDC_BENCH_OTHER_CONTAINERS` (20),
//! `PDC_BENCH_BUILD_PARALLEL` (8 pods created at once), `PDC_BENCH_COLLECTOR` (the binary,
//! default `target/release/pod-detail-collector`), `PDC_BENCH_DOCKER_CLI` (`docker`),
//! `PDC_BENCH_OUT` (`bench-results`), `PDC_BENCH_FONT` (a TTF for the plot, default DejaVu
//! Sans), `PDC_BENCH_DOCKERD_PID` (to report the daemon's CPU per query),
//! `PDC_BENCH_COLLECTOR_ARGS` (extra `serve` arguments), `PDC_BENCH_INDEX_ARGS`
//! (`--event-index`; empty: no collector-index), `PDC_BENCH_COMPARE` (another build of the
//! collector, measured as collector-b beside the first), `DOCKER_HOST`,
//! `PDC_TEST_PAUSE_IMAGE`, `PDC_TEST_APP_IMAGE`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptions, ListContainersOptionsBuilder, RemoveContainerOptions,
};
use futures_util::future::{join, join_all};
use futures_util::stream::{self, StreamExt};
use serde_json::Value;

use support::{Container, CreatedPod, Instance, Node, Pod, Volume};

const NAMESPACES: [&str; 5] = ["default", "kube-system", "monitoring", "payments", "batch"];
const APPS: [&str; 4] = ["web", "api", "worker", "cache"];
const NODE_NAME: &str = "bench-node";
const HOST_IP: &str = "192.0.2.10";
const PROCESSOR_PATH: &str = "/processor/podDetailCollector";
const POD_DETAIL_KEY: &str = "collector.kubernetes.pod.detail";
const MIB: f64 = 1024.0 * 1024.0;
/// Start-ups measured per size (the median is reported).
const STARTUP_SAMPLES: usize = 5;
/// Requests made before each measured point (connections, caches).
const WARMUP: usize = 10;

// Targets of the issue.
const TARGET_P50_RATIO: f64 = 1.2;
const TARGET_CLI_RATIO: f64 = 10.0;
const TARGET_RPS_RATIO: f64 = 0.8;
const TARGET_IDLE_RSS_MIB: f64 = 8.0;
const TARGET_LOAD_RSS_MIB: f64 = 20.0;

fn main() {
    // `cargo test --all-targets` runs this binary too (without `--bench`): a benchmark that
    // builds a thousand containers has no place in the test suite.
    if !std::env::args().any(|arg| arg == "--bench") {
        println!("benches/node: skipped (run `scripts/bench` or `cargo bench --bench node`)");
        return;
    }
    let config = Config::from_env();
    let _ = LOAD_AT_START.set(load_average());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let code = runtime.block_on(run(config));
    std::process::exit(code);
}

#[derive(Clone, Debug)]
struct Config {
    sizes: Vec<usize>,
    requests: usize,
    cli_requests: usize,
    concurrency: Vec<usize>,
    point_limit: Duration,
    others: usize,
    build_parallel: usize,
    collector: PathBuf,
    docker_cli: String,
    out_dir: PathBuf,
    font: PathBuf,
    dockerd_pid: Option<u32>,
    docker_host: String,
    /// Extra arguments of `serve` for every collector started.
    collector_args: Vec<String>,
    /// Arguments that turn the event index on (a second collector, measured too), if any.
    index_args: Option<Vec<String>>,
    /// Another build of the collector to measure beside the first (an A/B of a change).
    compare: Option<PathBuf>,
    /// Turns the floor and the collector take at each concurrency.
    rounds: usize,
    /// Quiet time after the loads before the idle RSS is read (the collector trims its heap
    /// every 5 s).
    idle_wait: Duration,
}

impl Config {
    fn from_env() -> Self {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let target_dir = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target"));
        let mut sizes = list_env("PDC_BENCH_PODS", &[10, 100, 250]);
        sizes.sort_unstable();
        sizes.dedup();
        Config {
            sizes,
            requests: num_env("PDC_BENCH_REQUESTS", 400),
            cli_requests: num_env("PDC_BENCH_CLI_REQUESTS", 100),
            concurrency: list_env("PDC_BENCH_CONCURRENCY", &[1, 8, 32]),
            point_limit: Duration::from_secs(num_env("PDC_BENCH_POINT_SECS", 60) as u64),
            others: num_env("PDC_BENCH_OTHER_CONTAINERS", 20),
            build_parallel: num_env("PDC_BENCH_BUILD_PARALLEL", 8).max(1),
            collector: path_env(
                "PDC_BENCH_COLLECTOR",
                target_dir.join("release/pod-detail-collector"),
            ),
            docker_cli: std::env::var("PDC_BENCH_DOCKER_CLI").unwrap_or_else(|_| "docker".into()),
            out_dir: path_env("PDC_BENCH_OUT", root.join("bench-results")),
            font: path_env(
                "PDC_BENCH_FONT",
                PathBuf::from("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),
            ),
            dockerd_pid: std::env::var("PDC_BENCH_DOCKERD_PID")
                .ok()
                .and_then(|v| v.trim().parse().ok()),
            docker_host: support::util::docker_host(),
            collector_args: words_env("PDC_BENCH_COLLECTOR_ARGS", ""),
            index_args: Some(words_env("PDC_BENCH_INDEX_ARGS", "--event-index"))
                .filter(|args| !args.is_empty()),
            rounds: num_env("PDC_BENCH_ROUNDS", 4).max(1),
            idle_wait: Duration::from_secs(num_env("PDC_BENCH_IDLE_SECS", 7) as u64),
            compare: std::env::var_os("PDC_BENCH_COMPARE")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
        }
    }
}

fn num_env(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

fn list_env(key: &str, default: &[usize]) -> Vec<usize> {
    let parsed: Vec<usize> = std::env::var(key)
        .unwrap_or_default()
        .split(',')
        .filter_map(|v| v.trim().parse().ok())
        .filter(|&v| v > 0)
        .collect();
    if parsed.is_empty() {
        default.to_vec()
    } else {
        parsed
    }
}

fn words_env(key: &str, default: &str) -> Vec<String> {
    std::env::var(key)
        .unwrap_or_else(|_| default.to_string())
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

fn path_env(key: &str, default: PathBuf) -> PathBuf {
    std::env::var_os(key)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or(default)
}

fn log(msg: impl AsRef<str>) {
    eprintln!("bench: {}", msg.as_ref());
}

/// The benchmark, then the clean-up, whatever happened in between.
async fn run(config: Config) -> i32 {
    if !config.collector.is_file() {
        log(format!(
            "no collector binary at {}: run `cargo build --release` (scripts/bench does) or set PDC_BENCH_COLLECTOR",
            config.collector.display()
        ));
        return 2;
    }
    let node = Arc::new(Node::new().await);
    let docker = node.docker.clone();
    let label = format!("pdc-bench={}", node.suffix);
    let outcome = tokio::spawn(bench(config.clone(), node.clone())).await;
    let code = match outcome {
        Ok(Ok(())) => 0,
        Ok(Err(err)) => {
            log(format!("failed: {err}"));
            1
        }
        Err(err) => {
            log(format!("failed: {err}"));
            1
        }
    };
    let started = Instant::now();
    let removed = clean_up(&docker, &node, &label, config.build_parallel).await;
    log(format!(
        "removed {removed} containers in {:.1}s",
        started.elapsed().as_secs_f64()
    ));
    drop(node); // removes the kubelet root directory
    code
}

/// Every container of the benchmark's namespaces and every other one it made, removed a few
/// at a time.
async fn clean_up(docker: &Docker, node: &Node, label: &str, parallel: usize) -> usize {
    let mut ids = BTreeSet::new();
    let mut filters: Vec<HashMap<String, Vec<String>>> = NAMESPACES
        .iter()
        .map(|base| {
            HashMap::from([(
                "label".to_string(),
                vec![format!("io.kubernetes.pod.namespace={}", node.ns(base))],
            )])
        })
        .collect();
    filters.push(HashMap::from([(
        "label".to_string(),
        vec![label.to_string()],
    )]));
    for filter in &filters {
        let options = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(filter)
            .build();
        if let Ok(list) = docker.list_containers(Some(options)).await {
            ids.extend(list.into_iter().filter_map(|c| c.id));
        }
    }
    let count = ids.len();
    stream::iter(ids)
        .for_each_concurrent(parallel, |id| async move {
            let options = RemoveContainerOptions {
                force: true,
                v: true,
                ..Default::default()
            };
            if let Err(err) = docker.remove_container(&id, Some(options)).await {
                log(format!("could not remove container {id}: {err}"));
            }
        })
        .await;
    count
}

// --- the node --------------------------------------------------------------------------

#[derive(Clone, Debug)]
struct PodKey {
    namespace: String,
    name: String,
}

/// Pod `i` of the node: a Deployment-like pod on a CNI network with an init container that
/// completed and an app container that crashed once and runs again (restartCount 1).
fn pod_spec(node: &Node, i: usize) -> Pod {
    let app = APPS[i % APPS.len()];
    let namespace = node.ns(NAMESPACES[i % NAMESPACES.len()]);
    let template_hash = format!("{:09x}", support::util::fnv64(&[app, "template"]) >> 28);
    let name = format!("{app}-{template_hash}-{i:05}");
    Pod::new(namespace, &name)
        .label("app", app)
        .label("pod-template-hash", &template_hash)
        .annotation("prometheus.io/scrape", "true")
        // CNI: an eth0 inside the sandbox's network namespace (RFC 2544 benchmarking range;
        // both ends of the veth stay inside that namespace, nothing is ever sent).
        .pod_ip(&format!("198.18.{}.{}/15", i / 250, i % 250 + 1))
        .volume(Volume::empty_dir("cache"))
        .volume(Volume::projected("kube-api-access"))
        .container(
            Container::new("init-config")
                .container_type("init")
                .command(["sh", "-c", "true"])
                .mount("cache", "/cache", false)
                .instance(Instance::Exit(0)),
        )
        .container(
            Container::new(app)
                .container_type("container")
                .cpu_request(100)
                .memory_limit(128 * 1024 * 1024)
                .env("MODE", "bench")
                .env("POD_INDEX", &i.to_string())
                .port("http", 8080)
                .mount("cache", "/cache", false)
                .mount(
                    "kube-api-access",
                    "/var/run/secrets/kubernetes.io/serviceaccount",
                    true,
                )
                .instance(Instance::Exit(1))
                .instance(Instance::Running),
        )
}

/// Containers on the node that are not the kubelet's: half running, half never started.
async fn add_other_containers(
    docker: &Docker,
    label: &str,
    suffix: &str,
    count: usize,
) -> Result<(), String> {
    let (key, value) = label.split_once('=').unwrap_or((label, ""));
    for i in 0..count {
        let body = ContainerCreateBody {
            image: Some(support::util::app_image()),
            cmd: Some(vec!["sleep".into(), "86400".into()]),
            labels: Some(HashMap::from([
                (key.to_string(), value.to_string()),
                ("com.example.role".to_string(), "not-kubernetes".to_string()),
            ])),
            host_config: Some(HostConfig {
                network_mode: Some("none".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let options = CreateContainerOptions {
            name: Some(format!("bench-other-{suffix}-{i}")),
            ..Default::default()
        };
        let id = docker
            .create_container(Some(options), body)
            .await
            .map_err(|err| format!("create a non-kubelet container: {err}"))?
            .id;
        if i % 2 == 0 {
            docker
                .start_container(&id, None)
                .await
                .map_err(|err| format!("start a non-kubelet container: {err}"))?;
        }
    }
    Ok(())
}

// --- measuring -------------------------------------------------------------------------

/// One measured point: a path at a concurrency.
#[derive(Clone, Debug)]
struct Point {
    pods: usize,
    path: &'static str,
    concurrency: usize,
    /// Sorted latencies of the successful requests.
    latencies: Vec<Duration>,
    errors: usize,
    first_error: Option<String>,
    wall: Duration,
    /// CPU time of the answering side per request (collector process; bench process for the
    /// floor), when known.
    cpu_per_request: Option<Duration>,
    /// dockerd's CPU time per request, when its pid is known.
    dockerd_cpu_per_request: Option<Duration>,
}

impl Point {
    /// One point from the rounds of the same path and concurrency.
    fn merge(parts: Vec<Point>) -> Option<Point> {
        let weight = |p: &Point| (p.ok() + p.errors) as u32;
        let average = |parts: &[Point], f: fn(&Point) -> Option<Duration>| {
            let n: u32 = parts.iter().map(weight).sum();
            let sum: Option<Duration> = parts.iter().map(|p| Some(f(p)? * weight(p))).sum();
            sum.filter(|_| n > 0).map(|s| s / n.max(1))
        };
        let cpu = average(&parts, |p| p.cpu_per_request);
        let dockerd = average(&parts, |p| p.dockerd_cpu_per_request);
        let mut parts = parts.into_iter();
        let mut merged = parts.next()?;
        for p in parts {
            merged.latencies.extend(p.latencies);
            merged.errors += p.errors;
            merged.first_error = merged.first_error.or(p.first_error);
            merged.wall += p.wall;
        }
        merged.latencies.sort_unstable();
        merged.cpu_per_request = cpu;
        merged.dockerd_cpu_per_request = dockerd;
        Some(merged)
    }

    fn ok(&self) -> usize {
        self.latencies.len()
    }
    fn percentile(&self, p: f64) -> Option<Duration> {
        if self.latencies.is_empty() {
            return None;
        }
        let rank = ((p / 100.0) * self.latencies.len() as f64).ceil() as usize;
        Some(self.latencies[rank.clamp(1, self.latencies.len()) - 1])
    }
    fn p50_ms(&self) -> Option<f64> {
        self.percentile(50.0).map(ms)
    }
    fn rps(&self) -> f64 {
        self.ok() as f64 / self.wall.as_secs_f64().max(1e-9)
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Runs `total` queries over `targets` (in order, wrapping) with `concurrency` workers, until
/// done or `limit` has passed.
async fn load<F, Fut>(
    targets: Arc<Vec<PodKey>>,
    total: usize,
    concurrency: usize,
    limit: Duration,
    query: F,
) -> (Vec<Duration>, Vec<String>, Duration)
where
    F: Fn(PodKey) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let query = Arc::new(query);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let deadline = started + limit;
    let workers = (0..concurrency.max(1)).map(|_| {
        let (query, next, targets) = (query.clone(), next.clone(), targets.clone());
        tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total || Instant::now() >= deadline {
                    break;
                }
                let key = targets[i % targets.len()].clone();
                let sent = Instant::now();
                match query(key).await {
                    Ok(()) => latencies.push(sent.elapsed()),
                    Err(err) => errors.push(err),
                }
            }
            (latencies, errors)
        })
    });
    let mut latencies = Vec::with_capacity(total);
    let mut errors = Vec::new();
    for worker in join_all(workers).await {
        match worker {
            Ok((l, e)) => {
                latencies.extend(l);
                errors.extend(e);
            }
            Err(err) => errors.push(format!("load worker failed: {err}")),
        }
    }
    let wall = started.elapsed();
    latencies.sort_unstable();
    (latencies, errors, wall)
}

/// The answer's Docker calls with nothing around them: list, then all inspects at once (the
/// list already names each container's image).
async fn floor_query(docker: Docker, key: PodKey) -> Result<(), String> {
    let listed = list_pod(&docker, &key).await?;
    let images: BTreeSet<&str> = listed
        .iter()
        .filter_map(|c| c.image_id.as_deref())
        .collect();
    let containers = join_all(
        listed
            .iter()
            .filter_map(|c| c.id.as_deref())
            .map(|id| docker.inspect_container(id, None)),
    );
    let images = join_all(images.iter().map(|id| docker.inspect_image(id)));
    let (containers, images) = join(containers, images).await;
    for c in containers {
        c.map_err(|err| format!("inspect container: {err}"))?;
    }
    for i in images {
        i.map_err(|err| format!("inspect image: {err}"))?;
    }
    Ok(())
}

/// The same calls in the collector's order: list → container inspects → image inspects.
async fn floor_seq_query(docker: Docker, key: PodKey) -> Result<(), String> {
    let listed = list_pod(&docker, &key).await?;
    let mut images = BTreeSet::new();
    for c in join_all(
        listed
            .iter()
            .filter_map(|c| c.id.as_deref())
            .map(|id| docker.inspect_container(id, None)),
    )
    .await
    {
        let c = c.map_err(|err| format!("inspect container: {err}"))?;
        images.extend(c.image);
    }
    for i in join_all(images.iter().map(|id| docker.inspect_image(id))).await {
        i.map_err(|err| format!("inspect image: {err}"))?;
    }
    Ok(())
}

async fn list_pod(
    docker: &Docker,
    key: &PodKey,
) -> Result<Vec<bollard::models::ContainerSummary>, String> {
    let filters = HashMap::from([(
        "label".to_string(),
        vec![
            format!("io.kubernetes.pod.namespace={}", key.namespace),
            format!("io.kubernetes.pod.name={}", key.name),
        ],
    )]);
    let options = ListContainersOptionsBuilder::new()
        .all(true)
        .filters(&filters)
        .build();
    let listed = docker
        .list_containers(Some(options))
        .await
        .map_err(|err| format!("list: {err}"))?;
    if listed.is_empty() {
        return Err(format!("no container for {}/{}", key.namespace, key.name));
    }
    Ok(listed)
}

/// What a person on the node would type.
fn cli_query(docker_cli: &str, key: &PodKey) -> Result<(), String> {
    let ids = run_cli(
        docker_cli,
        &[
            "ps",
            "-a",
            "-q",
            "--no-trunc",
            "--filter",
            &format!("label=io.kubernetes.pod.namespace={}", key.namespace),
            "--filter",
            &format!("label=io.kubernetes.pod.name={}", key.name),
        ],
    )?;
    let ids: Vec<&str> = ids.split_whitespace().collect();
    if ids.is_empty() {
        return Err(format!("no container for {}/{}", key.namespace, key.name));
    }
    let mut args = vec!["inspect", "--type", "container"];
    args.extend(&ids);
    let inspected: Value = serde_json::from_str(&run_cli(docker_cli, &args)?)
        .map_err(|err| format!("docker inspect printed no JSON: {err}"))?;
    let images: BTreeSet<&str> = inspected
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c.get("Image").and_then(Value::as_str))
        .collect();
    let mut args = vec!["image", "inspect"];
    args.extend(images);
    run_cli(docker_cli, &args).map(drop)
}

fn run_cli(docker_cli: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(docker_cli)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|err| format!("cannot run {docker_cli}: {err}"))?;
    if !out.status.success() {
        return Err(format!(
            "{docker_cli} {}: {}",
            args.first().unwrap_or(&""),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    String::from_utf8(out.stdout).map_err(|err| err.to_string())
}

async fn collector_query(
    client: reqwest::Client,
    url: Arc<str>,
    key: PodKey,
) -> Result<(), String> {
    let body = serde_json::json!({"pod.namespace": key.namespace, "pod.name": key.name});
    let reply = client
        .post(&*url)
        .body(body.to_string())
        .send()
        .await
        .map_err(|err| format!("request: {err}"))?;
    let status = reply.status();
    let bytes = reply
        .bytes()
        .await
        .map_err(|err| format!("reply body: {err}"))?;
    if status != reqwest::StatusCode::OK {
        return Err(format!("{status}: {}", String::from_utf8_lossy(&bytes)));
    }
    Ok(())
}

// --- the collector process -------------------------------------------------------------

struct Server {
    child: Child,
    addr: SocketAddr,
    /// This server's own client: dropping it closes its connections, as an idle node has none.
    http: reqwest::Client,
}

impl Server {
    fn pid(&self) -> u32 {
        self.child.id()
    }
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
    /// Closes the client's connections (the server frees what they held).
    fn disconnect(&mut self) {
        self.http = http_client();
    }
    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback HTTP client with keep-alive, as the KubeDiag agent's.
fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(256)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("an HTTP client")
}

fn free_port() -> Result<SocketAddr, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|err| err.to_string())?;
    listener.local_addr().map_err(|err| err.to_string())
}

fn spawn_collector(
    config: &Config,
    node: &Node,
    log_file: &Path,
    variant: &Variant,
) -> Result<Server, String> {
    let addr = free_port()?;
    let manifests = node.dir.join("manifests");
    std::fs::create_dir_all(&manifests).map_err(|err| err.to_string())?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_file)
        .map_err(|err| format!("{}: {err}", log_file.display()))?;
    let child = Command::new(&variant.binary)
        .arg("serve")
        .arg("--listen")
        .arg(addr.to_string())
        .arg("--docker-host")
        .arg(&config.docker_host)
        .arg("--node-name")
        .arg(NODE_NAME)
        .arg("--host-ip")
        .arg(HOST_IP)
        .arg("--kubelet-root")
        .arg(&node.kubelet_root)
        .arg("--manifest-dir")
        .arg(&manifests)
        .args(&variant.args)
        // As the DaemonSet runs it (deploy/base): one info line per request.
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|err| err.to_string())?)
        .stderr(log)
        .spawn()
        .map_err(|err| format!("cannot start {}: {err}", variant.binary.display()))?;
    Ok(Server {
        child,
        addr,
        http: http_client(),
    })
}

/// Polls `/readyz` until it answers 200; the time since `spawned`.
async fn wait_ready(server: &mut Server, spawned: Instant) -> Result<Duration, String> {
    let url = server.url("/readyz");
    while spawned.elapsed() < Duration::from_secs(30) {
        if let Ok(reply) = server.http.get(&url).send().await
            && reply.status() == reqwest::StatusCode::OK
        {
            return Ok(spawned.elapsed());
        }
        if let Ok(Some(status)) = server.child.try_wait() {
            return Err(format!(
                "the collector exited ({status}) before it was ready"
            ));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Err("the collector was not ready within 30s".into())
}

/// `VmRSS` and `VmHWM` (peak) of a process, in bytes.
fn rss(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .map(|kb| kb * 1024)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// User + system CPU time of a process (`self` for this one).
fn cpu_time(pid: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // USER_HZ is 100 on every Linux this runs on.
    Some(Duration::from_millis((utime + stime) * 10))
}

fn cpu_delta(before: Option<Duration>, after: Option<Duration>, n: usize) -> Option<Duration> {
    match (before, after) {
        (Some(b), Some(a)) if n > 0 => Some(a.saturating_sub(b) / n as u32),
        _ => None,
    }
}

/// Facts about the collector process at one size.
#[derive(Clone, Debug, Default)]
struct ServerFacts {
    pods: usize,
    variant: &'static str,
    startup: Vec<Duration>,
    idle_rss: u64,
    idle_rss_after: u64,
    peak_rss: u64,
    reply_bytes: usize,
    check: String,
}

impl ServerFacts {
    fn startup_median(&self) -> Option<Duration> {
        let mut s = self.startup.clone();
        s.sort_unstable();
        s.get(s.len() / 2).copied()
    }
}

// --- the run ---------------------------------------------------------------------------

async fn bench(config: Config, node: Arc<Node>) -> Result<(), String> {
    std::fs::create_dir_all(&config.out_dir)
        .map_err(|err| format!("{}: {err}", config.out_dir.display()))?;
    let docker = node.docker.clone();
    let version = docker
        .version()
        .await
        .map_err(|err| format!("docker version: {err}"))?;
    log(format!(
        "docker {} (API {}) at {}; collector {}; sizes {:?}, {} requests per point, concurrency {:?}",
        version.version.as_deref().unwrap_or("?"),
        version.api_version.as_deref().unwrap_or("?"),
        config.docker_host,
        config.collector.display(),
        config.sizes,
        config.requests,
        config.concurrency
    ));
    let label = format!("pdc-bench={}", node.suffix);
    add_other_containers(&docker, &label, &node.suffix, config.others).await?;

    let mut pods: Vec<PodKey> = Vec::new();
    let mut points: Vec<Point> = Vec::new();
    let mut facts: Vec<ServerFacts> = Vec::new();
    let mut builds: Vec<(usize, Duration)> = Vec::new();
    let collector_log = config.out_dir.join("collector.log");
    let _ = std::fs::remove_file(&collector_log);

    for &size in &config.sizes {
        // Grow the node to `size` pods, a few at a time.
        let started = Instant::now();
        let from = pods.len();
        log(format!("creating pods {from}..{size}"));
        let created: Vec<CreatedPod> = stream::iter(from..size)
            .map(|i| node.run(pod_spec(&node, i)))
            .buffer_unordered(config.build_parallel)
            .collect()
            .await;
        pods.extend(created.into_iter().map(|p| PodKey {
            namespace: p.namespace,
            name: p.name,
        }));
        pods.sort_by(|a, b| a.name.cmp(&b.name));
        let took = started.elapsed();
        builds.push((size, took));
        log(format!(
            "node has {size} pods ({} containers of theirs, {} others); {} added in {:.1}s",
            size * 4,
            config.others,
            size - from,
            took.as_secs_f64()
        ));
        tokio::time::sleep(Duration::from_secs(2)).await;

        let targets = Arc::new(shuffled(&pods, size as u64));
        let bench = Bench {
            config: &config,
            node: &node,
            docker: &docker,
            targets,
            size,
            collector_log: &collector_log,
        };
        let (mut size_points, mut size_facts) = measure_size(&bench).await?;
        print_points(&size_points);
        points.append(&mut size_points);
        facts.append(&mut size_facts);
    }

    let report = render_report(&config, &version, &points, &facts, &builds);
    println!("\n{}", report.summary);
    let md = config.out_dir.join("report.md");
    std::fs::write(&md, &report.markdown).map_err(|err| format!("{}: {err}", md.display()))?;
    let png = config.out_dir.join("latency.png");
    match plot(&png, &config.font, &points) {
        Ok(()) => log(format!("wrote {} and {}", md.display(), png.display())),
        Err(err) => log(format!("wrote {}; no plot: {err}", md.display())),
    }
    Ok(())
}

/// Every pod, in an order that is the same for every path and spreads over namespaces.
fn shuffled(pods: &[PodKey], seed: u64) -> Vec<PodKey> {
    let mut v = pods.to_vec();
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    for i in (1..v.len()).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        v.swap(i, (state % (i as u64 + 1)) as usize);
    }
    v
}

/// What one size's measurements share.
struct Bench<'a> {
    config: &'a Config,
    node: &'a Node,
    docker: &'a Docker,
    targets: Arc<Vec<PodKey>>,
    size: usize,
    collector_log: &'a Path,
}

impl Bench<'_> {
    fn dockerd_cpu(&self) -> Option<Duration> {
        self.config
            .dockerd_pid
            .and_then(|pid| cpu_time(&pid.to_string()))
    }

    /// Runs one point: warm-up, then `total` queries, timing each and counting CPU.
    async fn point<F, Fut>(
        &self,
        path: &'static str,
        concurrency: usize,
        total: usize,
        cpu_pid: Option<&str>,
        query: F,
    ) -> Point
    where
        F: Fn(PodKey) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        let limit = self.config.point_limit;
        let warmup = WARMUP.max(concurrency).min(total);
        load(
            self.targets.clone(),
            warmup,
            concurrency,
            limit,
            query.clone(),
        )
        .await;
        let cpu = || cpu_pid.and_then(cpu_time);
        let (cpu_before, dockerd_before) = (cpu(), self.dockerd_cpu());
        let (latencies, errors, wall) =
            load(self.targets.clone(), total, concurrency, limit, query).await;
        let n = latencies.len() + errors.len();
        Point {
            pods: self.size,
            path,
            concurrency,
            latencies,
            errors: errors.len(),
            first_error: errors.into_iter().next(),
            wall,
            cpu_per_request: cpu_delta(cpu_before, cpu(), n),
            dockerd_cpu_per_request: cpu_delta(dockerd_before, self.dockerd_cpu(), n),
        }
    }

    async fn floor(&self, concurrency: usize, total: usize) -> Point {
        let docker = self.docker.clone();
        self.point("floor", concurrency, total, Some("self"), move |k| {
            floor_query(docker.clone(), k)
        })
        .await
    }

    async fn floor_seq(&self) -> Point {
        let docker = self.docker.clone();
        self.point(
            "floor-seq",
            1,
            self.config.requests,
            Some("self"),
            move |k| floor_seq_query(docker.clone(), k),
        )
        .await
    }

    async fn list_only(&self) -> Point {
        let docker = self.docker.clone();
        self.point(
            "list-only",
            1,
            self.config.requests,
            Some("self"),
            move |k| {
                let docker = docker.clone();
                async move { list_pod(&docker, &k).await.map(drop) }
            },
        )
        .await
    }

    async fn collector(
        &self,
        server: &Server,
        path: &'static str,
        concurrency: usize,
        total: usize,
    ) -> Point {
        let (client, url) = (
            server.http.clone(),
            Arc::<str>::from(server.url(PROCESSOR_PATH)),
        );
        let pid = server.pid().to_string();
        self.point(path, concurrency, total, Some(&pid), move |k| {
            collector_query(client.clone(), url.clone(), k)
        })
        .await
    }

    async fn cli(&self) -> Point {
        let cli = self.config.docker_cli.clone();
        self.point("cli", 1, self.config.cli_requests, None, move |k| {
            let cli = cli.clone();
            async move {
                tokio::task::spawn_blocking(move || cli_query(&cli, &k))
                    .await
                    .map_err(|err| err.to_string())?
            }
        })
        .await
    }

    /// Measures start-up a few times, then starts the server to measure, idle, and checks
    /// one of its answers.
    async fn start(&self, variant: &Variant) -> Result<(Server, ServerFacts), String> {
        let mut facts = ServerFacts {
            pods: self.size,
            variant: variant.path,
            ..ServerFacts::default()
        };
        for _ in 0..STARTUP_SAMPLES {
            let spawned = Instant::now();
            let mut server = spawn_collector(self.config, self.node, self.collector_log, variant)?;
            let took = wait_ready(&mut server, spawned).await;
            server.stop();
            facts.startup.push(took?);
        }
        let spawned = Instant::now();
        let mut server = spawn_collector(self.config, self.node, self.collector_log, variant)?;
        match self.settle(&mut server, spawned, &mut facts).await {
            Ok(()) => Ok((server, facts)),
            Err(err) => {
                server.stop();
                Err(err)
            }
        }
    }

    async fn settle(
        &self,
        server: &mut Server,
        spawned: Instant,
        facts: &mut ServerFacts,
    ) -> Result<(), String> {
        wait_ready(server, spawned).await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        facts.idle_rss = rss(server.pid()).map(|(now, _)| now).unwrap_or(0);
        // One answer, checked, so the numbers are about real work.
        let first = &self.targets[0];
        let body = serde_json::json!({"pod.namespace": first.namespace, "pod.name": first.name});
        let reply = server
            .http
            .post(server.url(PROCESSOR_PATH))
            .body(body.to_string())
            .send()
            .await
            .map_err(|err| format!("collector: {err}"))?;
        let status = reply.status();
        let text = reply.text().await.map_err(|err| err.to_string())?;
        if status != reqwest::StatusCode::OK {
            return Err(format!("collector answered {status}: {text}"));
        }
        facts.reply_bytes = text.len();
        facts.check = check_reply(&text);
        Ok(())
    }

    /// Reads the memory the server keeps once idle again, and its peak, and stops it.
    async fn finish(&self, mut server: Server, facts: &mut ServerFacts) {
        server.disconnect();
        tokio::time::sleep(self.config.idle_wait).await;
        if let Some((now, peak)) = rss(server.pid()) {
            facts.idle_rss_after = now;
            facts.peak_rss = peak;
        }
        server.stop();
    }
}

/// A configuration of the collector under test.
#[derive(Clone, Debug)]
struct Variant {
    path: &'static str,
    binary: PathBuf,
    args: Vec<String>,
}

async fn measure_size(bench: &Bench<'_>) -> Result<(Vec<Point>, Vec<ServerFacts>), String> {
    let config = bench.config;
    let mut points = Vec::new();
    let mut all_facts = Vec::new();
    let max_c = config.concurrency.iter().copied().max().unwrap_or(1);

    // The default collector, each concurrency right after the floor's.
    let variant = Variant {
        path: "collector",
        binary: config.collector.clone(),
        args: config.collector_args.clone(),
    };
    let (server, mut facts) = bench.start(&variant).await?;
    for &c in &config.concurrency {
        // Floor and collector take turns, so that other work on the machine weighs on both.
        let total = config.requests.max(c * 10);
        let share = total.div_ceil(config.rounds);
        let (mut floor, mut collector) = (Vec::new(), Vec::new());
        for _ in 0..config.rounds {
            floor.push(bench.floor(c, share).await);
            collector.push(bench.collector(&server, variant.path, c, share).await);
        }
        points.extend(Point::merge(floor));
        points.extend(Point::merge(collector));
        if c == 1 {
            points.push(bench.floor_seq().await);
            points.push(bench.list_only().await);
        }
    }
    bench.finish(server, &mut facts).await;
    all_facts.push(facts);

    // The collector with its event index, where asked for.
    if let Some(args) = &config.index_args {
        let variant = Variant {
            path: "collector-index",
            binary: config.collector.clone(),
            args: config.collector_args.iter().chain(args).cloned().collect(),
        };
        let (server, mut facts) = bench.start(&variant).await?;
        for c in [1, max_c] {
            let total = config.requests.max(c * 10);
            points.push(bench.collector(&server, variant.path, c, total).await);
        }
        bench.finish(server, &mut facts).await;
        all_facts.push(facts);
    }

    // Another build, where asked for.
    if let Some(binary) = &config.compare {
        let variant = Variant {
            path: "collector-b",
            binary: binary.clone(),
            args: config.collector_args.clone(),
        };
        let (server, mut facts) = bench.start(&variant).await?;
        for c in [1, max_c] {
            let total = config.requests.max(c * 10);
            points.push(bench.collector(&server, variant.path, c, total).await);
        }
        bench.finish(server, &mut facts).await;
        all_facts.push(facts);
    }

    // The command line, one query at a time (a person at a shell).
    points.push(bench.cli().await);
    Ok((points, all_facts))
}

/// Whether the reply holds the pod as it was made: the app container restarted once after
/// exiting 1, the init container completed, the CNI address is known.
fn check_reply(text: &str) -> String {
    let pod: Option<Value> = serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|v| v.get(POD_DETAIL_KEY)?.as_str().map(str::to_string))
        .and_then(|s| serde_json::from_str(&s).ok());
    let Some(pod) = pod else {
        return "reply holds no pod".into();
    };
    let status = &pod["status"];
    let app = status["containerStatuses"]
        .as_array()
        .and_then(|list| list.first());
    let mut problems = Vec::new();
    match app {
        Some(app) => {
            if app["restartCount"] != 1 {
                problems.push("restartCount is not 1");
            }
            if app["lastState"]["terminated"]["exitCode"] != 1 {
                problems.push("lastState is not terminated with exit code 1");
            }
            if app["state"]["running"].is_null() {
                problems.push("app is not running");
            }
        }
        None => problems.push("no container status"),
    }
    if status["initContainerStatuses"]
        .as_array()
        .is_none_or(|l| l.is_empty())
    {
        problems.push("no init container status");
    }
    if status["podIP"]
        .as_str()
        .is_none_or(|ip| !ip.starts_with("198.18."))
    {
        problems.push("no CNI pod IP");
    }
    if problems.is_empty() {
        "ok".into()
    } else {
        problems.join("; ")
    }
}

// --- report ----------------------------------------------------------------------------

fn fmt_ms(d: Option<Duration>) -> String {
    d.map(|d| format!("{:.2}", ms(d)))
        .unwrap_or_else(|| "—".into())
}

fn fmt_us(d: Option<Duration>) -> String {
    d.map(|d| format!("{:.0}", d.as_secs_f64() * 1e6))
        .unwrap_or_else(|| "—".into())
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / MIB
}

fn point_rows(points: &[Point]) -> String {
    let mut s = String::from(
        "| pods | path | concurrency | ok | errors | p50 ms | p90 ms | p99 ms | req/s | CPU µs/req | dockerd CPU µs/req |\n\
         |---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for p in points {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {:.0} | {} | {} |",
            p.pods,
            p.path,
            p.concurrency,
            p.ok(),
            p.errors,
            fmt_ms(p.percentile(50.0)),
            fmt_ms(p.percentile(90.0)),
            fmt_ms(p.percentile(99.0)),
            p.rps(),
            fmt_us(p.cpu_per_request),
            fmt_us(p.dockerd_cpu_per_request),
        );
    }
    s
}

fn print_points(points: &[Point]) {
    println!("\n{}", point_rows(points));
    for p in points.iter().filter(|p| p.errors > 0) {
        println!(
            "  {} c={}: {} errors, first: {}",
            p.path,
            p.concurrency,
            p.errors,
            p.first_error.as_deref().unwrap_or("?")
        );
    }
}

fn find<'a>(points: &'a [Point], pods: usize, path: &str, c: usize) -> Option<&'a Point> {
    points
        .iter()
        .find(|p| p.pods == pods && p.path == path && p.concurrency == c)
}

struct Report {
    summary: String,
    markdown: String,
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}

fn render_report(
    config: &Config,
    version: &bollard::models::SystemVersion,
    points: &[Point],
    facts: &[ServerFacts],
    builds: &[(usize, Duration)],
) -> Report {
    let max_c = config.concurrency.iter().copied().max().unwrap_or(1);
    let mut ratios = format!(
        "| pods | collector | collector/floor p50 (c=1) | collector/floor-seq p50 (c=1) | CLI/collector p50 | collector/floor req/s (c={max_c}) | start-up ms | idle RSS MiB | idle RSS after load MiB | peak RSS MiB | reply bytes | reply check |\n\
         |---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n"
    );
    let mut targets = String::new();
    for f in facts {
        let pods = f.pods;
        let p50 = |path: &str| find(points, pods, path, 1).and_then(Point::p50_ms);
        let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) if b > 0.0 => Some(a / b),
            _ => None,
        };
        let coll_floor = ratio(p50(f.variant), p50("floor"));
        let coll_seq = ratio(p50(f.variant), p50("floor-seq"));
        let cli_coll = ratio(p50("cli"), p50(f.variant));
        let rps = ratio(
            find(points, pods, f.variant, max_c).map(Point::rps),
            find(points, pods, "floor", max_c).map(Point::rps),
        );
        let f2 = |v: Option<f64>| v.map(|v| format!("{v:.2}")).unwrap_or_else(|| "—".into());
        let _ = writeln!(
            ratios,
            "| {pods} | {} | {} | {} | {} | {} | {} | {:.1} | {:.1} | {:.1} | {} | {} |",
            f.variant,
            f2(coll_floor),
            f2(coll_seq),
            cli_coll
                .map(|v| format!("{v:.1}"))
                .unwrap_or_else(|| "—".into()),
            f2(rps),
            fmt_ms(f.startup_median()),
            mib(f.idle_rss),
            mib(f.idle_rss_after),
            mib(f.peak_rss),
            f.reply_bytes,
            f.check
        );
        if Some(&pods) == config.sizes.last() && f.variant == "collector" {
            let idle = mib(f.idle_rss).max(mib(f.idle_rss_after));
            let _ = writeln!(
                targets,
                "- collector p50 ≤ {TARGET_P50_RATIO}× floor at {pods} pods: {} ({}×)\n\
                 - CLI path ≥ {TARGET_CLI_RATIO}× slower than the collector: {} ({}×)\n\
                 - collector req/s at concurrency {max_c} ≥ {:.0}% of the floor's: {} ({}×)\n\
                 - idle RSS ≤ {TARGET_IDLE_RSS_MIB} MiB: {} ({idle:.1} MiB, the larger of before and after load)\n\
                 - RSS under load ≤ {TARGET_LOAD_RSS_MIB} MiB: {} ({:.1} MiB peak)",
                verdict(coll_floor.is_some_and(|r| r <= TARGET_P50_RATIO)),
                f2(coll_floor),
                verdict(cli_coll.is_some_and(|r| r >= TARGET_CLI_RATIO)),
                cli_coll
                    .map(|v| format!("{v:.1}"))
                    .unwrap_or_else(|| "—".into()),
                TARGET_RPS_RATIO * 100.0,
                verdict(rps.is_some_and(|r| r >= TARGET_RPS_RATIO)),
                f2(rps),
                verdict(idle <= TARGET_IDLE_RSS_MIB),
                verdict(mib(f.peak_rss) <= TARGET_LOAD_RSS_MIB),
                mib(f.peak_rss),
            );
        }
    }
    let raw = point_rows(points);
    let summary = format!("{raw}\n{ratios}\nTargets:\n{targets}");

    let machine = machine_facts();
    let build_rows: String = builds
        .iter()
        .map(|(pods, took)| format!("{pods} pods: {:.0} s", took.as_secs_f64()))
        .collect::<Vec<_>>()
        .join(", ");
    let markdown = format!(
        "# pod-detail-collector: node benchmark\n\n\
         Generated by `scripts/bench` (`benches/node.rs`). Every number below comes from one run.\n\n\
         - machine: {machine}\n\
         - docker: {} (API {}), at `{}`\n\
         - collector: `{}`, its own process, `RUST_LOG=info` as in deploy/\n\
         - node: kubelet-style pods of 4 containers each (sandbox on a CNI network, a completed \
         init container, the app's exited previous instance and its running one, restartCount 1), \
         over 5 namespaces, plus {} containers that are not the kubelet's; built in {build_rows} \
         ({} pods created at once)\n\
         - per point: {} requests (at least 10 per worker); floor and collector take {} turns \
         of equal share, each after {WARMUP} warm-up requests (or one per worker), time limit \
         {} s a turn; the CLI path: {} queries, one at a time\n\n\
         Paths:\n\n\
         - **floor**: a bare bollard client on the same socket making only the calls the \
         answer needs: the filtered list, then every container inspect and image inspect at \
         once (the list names each image);\n\
         - **floor-seq**: the same calls in the collector's order: list → container inspects → \
         image inspects;\n\
         - **list-only**: the filtered list call alone;\n\
         - **cli**: `docker ps -a -q --filter label=…` + `docker inspect` + `docker image inspect`;\n\
         - **collector**: `POST {PROCESSOR_PATH}` over loopback HTTP (keep-alive), answer read \
         in full; extra arguments: {};\n\
         - **collector-index**: the same with `{}` (at concurrency 1 and the highest), when \
         measured;\n\
         - **collector-b**: another build (`PDC_BENCH_COMPARE`: {}), same arguments, when \
         measured.\n\n\
         CPU µs/req is the collector process's CPU time per request (for the floor: the whole \
         benchmark process, i.e. the bare client); dockerd CPU is the daemon's, when known. \
         Both come from /proc with a 10 ms tick: read them as averages over the point.\n\n\
         ## Targets (at {} pods)\n\n{targets}\n\
         ## Ratios and the collector process\n\n{ratios}\n\
         Start-up is spawn → first `/readyz` 200 (median of {STARTUP_SAMPLES}); idle RSS is read \
         1 s after ready, before any request; idle RSS after load is read {} s after the last \
         load, its connections closed; peak RSS is the kernel's high-water mark (VmHWM) after \
         every load at that size. The targets judge idle RSS by the larger of the two.\n\n\
         ## Every point\n\n{raw}\n\
         ![p50 latency against pods on the node](latency.png)\n",
        version.version.as_deref().unwrap_or("?"),
        version.api_version.as_deref().unwrap_or("?"),
        config.docker_host,
        config.collector.display(),
        config.others,
        config.build_parallel,
        config.requests,
        config.rounds,
        config.point_limit.as_secs(),
        config.cli_requests,
        Some(config.collector_args.join(" "))
            .filter(|a| !a.is_empty())
            .map(|a| format!("`{a}`"))
            .unwrap_or_else(|| "none".into()),
        config
            .index_args
            .as_ref()
            .map(|a| a.join(" "))
            .unwrap_or_else(|| "not measured".into()),
        config
            .compare
            .as_ref()
            .map(|p| format!("`{}`", p.display()))
            .unwrap_or_else(|| "none".into()),
        config.sizes.last().copied().unwrap_or(0),
        config.idle_wait.as_secs(),
    );
    Report { summary, markdown }
}

static LOAD_AT_START: std::sync::OnceLock<String> = std::sync::OnceLock::new();

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn machine_facts() -> String {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| format!("{:.0} GiB", kb / 1024.0 / 1024.0))
        .unwrap_or_else(|| "?".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let load = load_average();
    let start = LOAD_AT_START.get().map(String::as_str).unwrap_or("?");
    format!(
        "{cores} cores, {mem}, Linux {kernel}; load average {start} at the start, {load} at the \
         end (other work on the machine shows here)"
    )
}

// --- plot ------------------------------------------------------------------------------

fn plot(path: &Path, font: &Path, points: &[Point]) -> Result<(), String> {
    use plotters::prelude::*;

    let bytes = std::fs::read(font).map_err(|err| {
        format!(
            "font {}: {err} (install fonts-dejavu-core or set PDC_BENCH_FONT)",
            font.display()
        )
    })?;
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
        .map_err(|_| format!("{} is not a usable font", font.display()))?;

    let max_c = points.iter().map(|p| p.concurrency).max().unwrap_or(1);
    let colors = [
        ("cli", RGBColor(0, 158, 115)),
        ("collector", RGBColor(213, 94, 0)),
        ("collector-index", RGBColor(204, 121, 167)),
        ("collector-b", RGBColor(120, 120, 120)),
        ("floor", RGBColor(0, 114, 178)),
    ];
    let panels = [
        (
            "one request at a time".to_string(),
            1,
            vec![
                ("docker CLI", "cli"),
                ("collector", "collector"),
                ("collector --event-index", "collector-index"),
                ("collector (B build)", "collector-b"),
                ("floor: bare client, same calls", "floor"),
            ],
        ),
        (
            format!("{max_c} requests at a time"),
            max_c,
            vec![
                ("collector", "collector"),
                ("collector --event-index", "collector-index"),
                ("collector (B build)", "collector-b"),
                ("floor: bare client, same calls", "floor"),
            ],
        ),
    ];
    let series = |path: &str, c: usize| -> Vec<(f64, f64)> {
        let mut v: Vec<(f64, f64)> = points
            .iter()
            .filter(|p| p.path == path && p.concurrency == c)
            .filter_map(|p| Some((p.pods as f64, p.p50_ms()?)))
            .collect();
        v.sort_by(|a, b| a.0.total_cmp(&b.0));
        v
    };
    type Line<'a> = (&'a str, RGBColor, Vec<(f64, f64)>);
    let x_max = points.iter().map(|p| p.pods).max().unwrap_or(1) as f64;
    let err = |e: DrawingAreaErrorKind<_>| e.to_string();

    let root = BitMapBackend::new(path, (1400, 620)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let root = root
        .titled(
            "pod-detail-collector: p50 latency of one pod's answer against pods on the node",
            ("sans-serif", 24),
        )
        .map_err(err)?;
    let halves = root.split_evenly((1, 2));
    for (area, (title, c, lines)) in halves.iter().zip(panels) {
        let data: Vec<Line> = lines
            .iter()
            .map(|(label, path)| {
                let color = colors
                    .iter()
                    .find(|(p, _)| p == path)
                    .map(|(_, c)| *c)
                    .unwrap_or(BLACK);
                (*label, color, series(path, c))
            })
            .filter(|(_, _, v)| !v.is_empty())
            .collect();
        let ys = data.iter().flat_map(|(_, _, v)| v.iter().map(|p| p.1));
        let (y_min, y_max) = ys.fold((f64::MAX, 0f64), |(lo, hi), y| (lo.min(y), hi.max(y)));
        if data.is_empty() || y_max <= 0.0 {
            continue;
        }
        let mut chart = ChartBuilder::on(area)
            .caption(title, ("sans-serif", 20))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(65)
            // Room above the lines for the legend.
            .build_cartesian_2d(
                0f64..x_max * 1.12,
                ((y_min / 2.0).max(0.01)..y_max * 8.0).log_scale(),
            )
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("kubelet pods on the node (4 containers each)")
            .y_desc("p50 latency, ms (log scale)")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| format!("{y}"))
            .axis_desc_style(("sans-serif", 16))
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(err)?;
        for (label, color, values) in &data {
            let color = *color;
            chart
                .draw_series(LineSeries::new(values.clone(), color.stroke_width(3)))
                .map_err(err)?
                .label(*label)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(3))
                });
            chart
                .draw_series(
                    values
                        .iter()
                        .map(|&(x, y)| Circle::new((x, y), 5, color.filled())),
                )
                .map_err(err)?;
            // The value at the largest node, right of its point.
            if let Some(&(x, y)) = values.last() {
                chart
                    .draw_series(std::iter::once(Text::new(
                        format!("{y:.1} ms"),
                        (x + x_max * 0.015, y),
                        ("sans-serif", 14).into_font().color(&color),
                    )))
                    .map_err(err)?;
            }
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .label_font(("sans-serif", 15))
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .draw()
            .map_err(err)?;
    }
    root.present().map_err(err)?;
    Ok(())
}
