//! The node benchmark: how fast, how heavy, compared with what the runtime itself allows.
//!
//! It lays out a node the way the kubelet would (10, 100, then 250 pods of four containers
//! each: sandbox on a CNI network, a completed init container, the app's exited previous
//! instance and its running current one), first on Docker (plus containers that are not the
//! kubelet's), then on containerd over CRI (the same pods, made with the kubelet's CRI calls),
//! and at each size measures, in the same run and against the same pods:
//!
//! On Docker:
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
//! - **collector-list**: the same binary with `--event-index=false` (a list call per
//!   request, every container inspected), at concurrency 1 and 32.
//!
//! On containerd (CRI):
//!
//! - **cri-floor**: the CRI calls an answer needs when nothing is kept, made by a bare client
//!   over the same socket: `ListPodSandbox` and `ListContainers` by the pod's labels (at once),
//!   then the verbose `PodSandboxStatus` and `ContainerStatus` of each, all at once (the
//!   collector asks an exited container's status only once);
//! - **cri-list-only**: the two list calls alone;
//! - **cri-collector**: the same binary with `--runtime-endpoint`, measured as on Docker.
//!
//! It prints the tables, writes `bench-results/report.md` and `bench-results/latency.png`, and
//! removes every container and sandbox it made. Run it with `scripts/bench`, which starts a
//! private Docker daemon and a private containerd, builds the images and the release binary,
//! and stops what it started. `PDC_BENCH_RUNTIMES=docker` (or `cri`) measures one runtime only.
//!
//! Environment: every knob and its default is in `config.rs`.
//!
//! Files, one job each:
//!
//! - `main.rs`: the entry, the run over the runtimes and the node's sizes, the clean-up;
//! - `config.rs`: the knobs, read from the environment;
//! - `layout/`: the node as the kubelet would leave it: the pod shape and the check of an
//!   answer (`mod.rs`), on Docker (`docker.rs`: pods through `support`, the containers that
//!   are not the kubelet's, the clean-up) and on containerd (`cri.rs`: pods through
//!   `support::cri`, the clean-up);
//! - `schedule.rs`: which points are measured at each size, in what order, on each runtime;
//! - `measure.rs`: one point: the load loop, its latencies and CPU, percentiles;
//! - `clients/`: the measured clients: `floor` (floor, floor-seq, list-only), `cli` (the
//!   docker CLI), `cri_floor` (cri-floor, cri-list-only) and `collector` (the collector over
//!   HTTP);
//! - `server.rs`: the collector binary as its own process: spawned, ready, its RSS and CPU;
//! - `report.rs`: the tables, the verdicts on the targets and `report.md`;
//! - `plot.rs`: `latency.png`.

#[path = "../../tests/support/mod.rs"]
mod support;

mod clients;
mod config;
mod layout;
mod measure;
mod plot;
mod report;
mod schedule;
mod server;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};

use config::{Config, RuntimeKind};
use layout::PodKey;
use measure::{Bench, Point, Side};
use plot::plot;
use report::{LOAD_AT_START, RuntimeRun, load_average, print_points, render_report};
use schedule::{measure_size, shuffled};
use support::cri::{CriNode, CriPod};
use support::{CreatedPod, Node};

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

pub(crate) fn log(msg: impl AsRef<str>) {
    eprintln!("bench: {}", msg.as_ref());
}

/// Every runtime asked for, one after the other (each node is removed before the next is
/// laid out), then the report of what was measured.
async fn run(config: Config) -> i32 {
    if !config.collector.is_file() {
        log(format!(
            "no collector binary at {}: run `cargo build --release` (scripts/bench does) or set PDC_BENCH_COLLECTOR",
            config.collector.display()
        ));
        return 2;
    }
    if let Err(err) = std::fs::create_dir_all(&config.out_dir) {
        log(format!("{}: {err}", config.out_dir.display()));
        return 1;
    }
    let collector_log = config.out_dir.join("collector.log");
    let _ = std::fs::remove_file(&collector_log);
    let mut runs: Vec<RuntimeRun> = Vec::new();
    let mut code = 0;
    for &kind in &config.runtimes {
        let outcome = match kind {
            RuntimeKind::Docker => run_docker(&config).await,
            RuntimeKind::Cri => run_cri(&config).await,
        };
        match outcome {
            Ok(run) => runs.push(run),
            Err(err) => {
                log(format!("failed ({kind:?}): {err}"));
                code = 1;
            }
        }
    }
    if runs.is_empty() {
        return code.max(1);
    }
    let report = render_report(&config, &runs);
    println!("\n{}", report.summary);
    let md = config.out_dir.join("report.md");
    if let Err(err) = std::fs::write(&md, &report.markdown) {
        log(format!("{}: {err}", md.display()));
        return 1;
    }
    let png = config.out_dir.join("latency.png");
    let points: Vec<Point> = runs.iter().flat_map(|r| r.points.iter().cloned()).collect();
    match plot(&png, &config.font, &points) {
        Ok(()) => log(format!("wrote {} and {}", md.display(), png.display())),
        Err(err) => log(format!("wrote {}; no plot: {err}", md.display())),
    }
    code
}

/// A task's outcome, a panic in it included.
fn joined<T>(outcome: Result<Result<T, String>, tokio::task::JoinError>) -> Result<T, String> {
    outcome.map_err(|err| err.to_string())?
}

/// The Docker part, then the clean-up of its node, whatever happened in between.
async fn run_docker(config: &Config) -> Result<RuntimeRun, String> {
    let node = Arc::new(Node::new().await);
    let docker = node.docker.clone();
    let label = format!("pdc-bench={}", node.suffix);
    let outcome = joined(tokio::spawn(bench_docker(config.clone(), node.clone())).await);
    let started = Instant::now();
    let removed = layout::docker::clean_up(&docker, &node, &label, config.build_parallel).await;
    log(format!(
        "removed {removed} containers in {:.1}s",
        started.elapsed().as_secs_f64()
    ));
    drop(node); // removes the kubelet root directory
    outcome
}

async fn bench_docker(config: Config, node: Arc<Node>) -> Result<RuntimeRun, String> {
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
    layout::docker::add_other_containers(&docker, &label, &node.suffix, config.others).await?;

    let mut pods: Vec<PodKey> = Vec::new();
    let mut run = RuntimeRun {
        kind: RuntimeKind::Docker,
        about: format!(
            "docker: {} (API {}), at `{}`",
            version.version.as_deref().unwrap_or("?"),
            version.api_version.as_deref().unwrap_or("?"),
            config.docker_host,
        ),
        points: Vec::new(),
        facts: Vec::new(),
        builds: Vec::new(),
    };
    let collector_log = config.out_dir.join("collector.log");

    for &size in &config.sizes {
        // Grow the node to `size` pods, a few at a time.
        let started = Instant::now();
        let from = pods.len();
        log(format!("creating pods {from}..{size}"));
        let created: Vec<CreatedPod> = stream::iter(from..size)
            .map(|i| node.run(layout::docker::pod_spec(&node, i)))
            .buffer_unordered(config.build_parallel)
            .collect()
            .await;
        pods.extend(created.into_iter().map(|p| PodKey {
            namespace: p.namespace,
            name: p.name,
        }));
        pods.sort_by(|a, b| a.name.cmp(&b.name));
        let took = started.elapsed();
        run.builds.push((size, took));
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
            side: Side::Docker { node: &node },
            targets,
            size,
            collector_log: &collector_log,
        };
        let (size_points, size_facts) = measure_size(&bench).await?;
        print_points(&size_points);
        run.points.extend(size_points);
        run.facts.extend(size_facts);
    }
    Ok(run)
}

/// The CRI part, then the clean-up of its node, whatever happened in between.
async fn run_cri(config: &Config) -> Result<RuntimeRun, String> {
    if config.cri_endpoint.is_none() {
        return Err(
            "CONTAINER_RUNTIME_ENDPOINT is not set: scripts/bench starts a private containerd \
             (PDC_BENCH_RUNTIMES=docker measures Docker only)"
                .into(),
        );
    }
    let node = CriNode::new()
        .await
        .ok_or("CONTAINER_RUNTIME_ENDPOINT is not set")?;
    let node = Arc::new(node);
    let outcome = joined(tokio::spawn(bench_cri(config.clone(), node.clone())).await);
    let started = Instant::now();
    let removed = layout::cri::clean_up(&node, config.build_parallel).await;
    log(format!(
        "removed {removed} sandboxes (with their containers) in {:.1}s",
        started.elapsed().as_secs_f64()
    ));
    drop(node); // removes the pods' cgroups and the kubelet root directory
    outcome
}

async fn bench_cri(config: Config, node: Arc<CriNode>) -> Result<RuntimeRun, String> {
    let version = node.version.clone();
    log(format!(
        "{} {} (CRI {}) at {}; collector {}; sizes {:?}, {} requests per point, concurrency {:?}",
        version.runtime_name,
        version.runtime_version,
        version.runtime_api_version,
        node.endpoint,
        config.collector.display(),
        config.sizes,
        config.requests,
        config.concurrency
    ));
    // The floor's own connection, as the collector has its own.
    let (channel, _) = support::cri::connect(&node.endpoint).await?;

    let mut pods: Vec<PodKey> = Vec::new();
    // The address CNI gave each pod, by name (names are unique over the namespaces).
    let mut addresses: HashMap<String, String> = HashMap::new();
    let mut run = RuntimeRun {
        kind: RuntimeKind::Cri,
        about: format!(
            "{}: {} (CRI {}), at `{}`",
            version.runtime_name,
            version.runtime_version,
            version.runtime_api_version,
            node.endpoint,
        ),
        points: Vec::new(),
        facts: Vec::new(),
        builds: Vec::new(),
    };
    let collector_log = config.out_dir.join("collector.log");

    for &size in &config.sizes {
        // Grow the node to `size` pods, a few at a time.
        let started = Instant::now();
        let from = pods.len();
        log(format!("creating pods {from}..{size} over CRI"));
        let created: Vec<CriPod> = stream::iter(from..size)
            .map(|i| node.run(layout::cri::pod_spec(&node, i)))
            .buffer_unordered(config.build_parallel)
            .collect()
            .await;
        for pod in created {
            let ip = pod
                .cni_ips
                .first()
                .cloned()
                .ok_or_else(|| format!("CNI gave {}/{} no address", pod.namespace, pod.name))?;
            addresses.insert(pod.name.clone(), ip);
            pods.push(PodKey {
                namespace: pod.namespace.clone(),
                name: pod.name.clone(),
            });
        }
        pods.sort_by(|a, b| a.name.cmp(&b.name));
        let took = started.elapsed();
        run.builds.push((size, took));
        log(format!(
            "containerd node has {size} pods ({} containers of theirs); {} added in {:.1}s",
            size * 4,
            size - from,
            took.as_secs_f64()
        ));
        tokio::time::sleep(Duration::from_secs(2)).await;

        let targets = Arc::new(shuffled(&pods, size as u64));
        let first_ip = addresses.get(&targets[0].name).cloned().unwrap_or_default();
        let bench = Bench {
            config: &config,
            side: Side::Cri {
                node: &node,
                channel: channel.clone(),
                first_ip,
            },
            targets,
            size,
            collector_log: &collector_log,
        };
        let (size_points, size_facts) = measure_size(&bench).await?;
        print_points(&size_points);
        run.points.extend(size_points);
        run.facts.extend(size_facts);
    }
    Ok(run)
}
