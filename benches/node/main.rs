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
//! - **collector-list**: the same binary with `--event-index=false` (a list call per
//!   request, every container inspected), at concurrency 1 and 32.
//!
//! It prints the tables, writes `bench-results/report.md` and `bench-results/latency.png`, and
//! removes every container it made. Run it with `scripts/bench`, which starts a private Docker
//! daemon, builds the images and the release binary, and stops what it started.
//!
//! Environment: every knob and its default is in `config.rs`.
//!
//! Files, one job each:
//!
//! - `main.rs`: the entry, the run over the node's sizes, the clean-up;
//! - `config.rs`: the knobs, read from the environment;
//! - `layout.rs`: the node as the kubelet would leave it on Docker (pods through `support`,
//!   the containers that are not the kubelet's), the check of an answer, the clean-up;
//! - `schedule.rs`: which points are measured at each size, in what order;
//! - `measure.rs`: one point: the load loop, its latencies and CPU, percentiles;
//! - `clients/`: the measured clients: `floor` (floor, floor-seq, list-only), `cli` (the
//!   docker CLI) and `collector` (the collector over HTTP);
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

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};

use config::Config;
use layout::{PodKey, add_other_containers, clean_up, pod_spec};
use measure::{Bench, Point};
use plot::plot;
use report::{LOAD_AT_START, load_average, print_points, render_report};
use schedule::{measure_size, shuffled};
use server::ServerFacts;
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
