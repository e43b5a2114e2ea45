//! The benchmark's knobs, read from the environment.
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
//! `PDC_BENCH_COLLECTOR_ARGS` (extra `serve` arguments), `PDC_BENCH_LIST_ARGS`
//! (`--event-index=false`: the list path, measured as collector-list; empty: not measured),
//! `PDC_BENCH_COMPARE` (another build of the
//! collector, measured as collector-b beside the first), `DOCKER_HOST`,
//! `PDC_TEST_PAUSE_IMAGE`, `PDC_TEST_APP_IMAGE`;
//! for the CRI part: `PDC_BENCH_RUNTIMES` (`docker,cri`: which runtimes are measured, in that
//! order), `CONTAINER_RUNTIME_ENDPOINT` (the containerd CRI socket, `unix:///…`),
//! `PDC_BENCH_CONTAINERD_PID` (to report containerd's CPU per query),
//! `PDC_TEST_CRI_PAUSE_IMAGE`, `PDC_TEST_CRI_APP_IMAGE`.

use std::path::PathBuf;
use std::time::Duration;

use crate::support;

/// A runtime the node is laid out on and measured through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RuntimeKind {
    /// Docker, as dockershim and cri-dockerd leave pods (`--docker-host`).
    Docker,
    /// containerd over the CRI API, as the kubelet's kuberuntime leaves pods
    /// (`--runtime-endpoint`).
    Cri,
}

impl RuntimeKind {
    fn parse(word: &str) -> Option<Self> {
        match word.trim().to_ascii_lowercase().as_str() {
            "docker" => Some(RuntimeKind::Docker),
            "cri" | "containerd" => Some(RuntimeKind::Cri),
            _ => None,
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Config {
    /// The runtimes measured, in order (`PDC_BENCH_RUNTIMES`).
    pub(crate) runtimes: Vec<RuntimeKind>,
    pub(crate) sizes: Vec<usize>,
    pub(crate) requests: usize,
    pub(crate) cli_requests: usize,
    pub(crate) concurrency: Vec<usize>,
    pub(crate) point_limit: Duration,
    pub(crate) others: usize,
    pub(crate) build_parallel: usize,
    pub(crate) collector: PathBuf,
    pub(crate) docker_cli: String,
    pub(crate) out_dir: PathBuf,
    pub(crate) font: PathBuf,
    pub(crate) dockerd_pid: Option<u32>,
    pub(crate) docker_host: String,
    /// The CRI socket of the containerd measured (`unix:///…`), when set.
    pub(crate) cri_endpoint: Option<String>,
    pub(crate) containerd_pid: Option<u32>,
    /// Extra arguments of `serve` for every collector started.
    pub(crate) collector_args: Vec<String>,
    /// Arguments that turn the event index off (the list path, a second collector measured
    /// too), if any.
    pub(crate) list_args: Option<Vec<String>>,
    /// Another build of the collector to measure beside the first (an A/B of a change).
    pub(crate) compare: Option<PathBuf>,
    /// Turns the floor and the collector take at each concurrency.
    pub(crate) rounds: usize,
    /// Quiet time after the loads before the idle RSS is read (the collector trims its heap
    /// every 5 s).
    pub(crate) idle_wait: Duration,
}

impl Config {
    pub(crate) fn from_env() -> Self {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let target_dir = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target"));
        let mut sizes = list_env("PDC_BENCH_PODS", &[10, 100, 250]);
        sizes.sort_unstable();
        sizes.dedup();
        Config {
            runtimes: runtimes_env("PDC_BENCH_RUNTIMES"),
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
            cri_endpoint: support::cri::endpoint(),
            containerd_pid: std::env::var("PDC_BENCH_CONTAINERD_PID")
                .ok()
                .and_then(|v| v.trim().parse().ok()),
            collector_args: words_env("PDC_BENCH_COLLECTOR_ARGS", ""),
            list_args: Some(words_env("PDC_BENCH_LIST_ARGS", "--event-index=false"))
                .filter(|args| !args.is_empty()),
            rounds: num_env("PDC_BENCH_ROUNDS", 4).max(1),
            idle_wait: Duration::from_secs(num_env("PDC_BENCH_IDLE_SECS", 7) as u64),
            compare: std::env::var_os("PDC_BENCH_COMPARE")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
        }
    }
}

/// `docker,cri` by default; unknown words are left out, an empty list means both.
fn runtimes_env(key: &str) -> Vec<RuntimeKind> {
    let mut runtimes: Vec<RuntimeKind> = Vec::new();
    for word in std::env::var(key).unwrap_or_default().split(',') {
        match RuntimeKind::parse(word) {
            Some(r) if !runtimes.contains(&r) => runtimes.push(r),
            Some(_) => {}
            None if word.trim().is_empty() => {}
            None => crate::log(format!("{key}: unknown runtime {word:?} (docker, cri)")),
        }
    }
    if runtimes.is_empty() {
        runtimes = vec![RuntimeKind::Docker, RuntimeKind::Cri];
    }
    runtimes
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
