//! One measured point: the load loop, what it records (latencies, errors, CPU per request)
//! and the percentiles read from it.
//!
//! [`Bench`] is what one size's measurements share, on one runtime ([`Side`]);
//! [`Bench::point`] measures one point. Each measured client adds its own method in
//! [`crate::clients`] (`floor`, `floor_seq`, `list_only`, `cli`, `cri_floor`,
//! `cri_list_only`, `collector`); the collector process's `start` and `finish` are in
//! [`crate::server`].

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bollard::Docker;
use futures_util::future::join_all;
use tonic::transport::Channel;

use crate::config::{Config, RuntimeKind};
use crate::layout::{self, PodKey};
use crate::server::cpu_time;
use crate::support::Node;
use crate::support::cri::CriNode;

/// Requests made before each measured point (connections, caches).
pub(crate) const WARMUP: usize = 10;

/// One measured point: a path at a concurrency.
#[derive(Clone, Debug)]
pub(crate) struct Point {
    pub(crate) runtime: RuntimeKind,
    pub(crate) pods: usize,
    pub(crate) path: &'static str,
    pub(crate) concurrency: usize,
    /// Sorted latencies of the successful requests.
    pub(crate) latencies: Vec<Duration>,
    pub(crate) errors: usize,
    pub(crate) first_error: Option<String>,
    pub(crate) wall: Duration,
    /// CPU time of the answering side per request (collector process; bench process for the
    /// floor), when known.
    pub(crate) cpu_per_request: Option<Duration>,
    /// The runtime daemon's CPU time per request (dockerd, containerd), when its pid is known.
    pub(crate) daemon_cpu_per_request: Option<Duration>,
}

impl Point {
    /// One point from the rounds of the same path and concurrency.
    pub(crate) fn merge(parts: Vec<Point>) -> Option<Point> {
        let weight = |p: &Point| (p.ok() + p.errors) as u32;
        let average = |parts: &[Point], f: fn(&Point) -> Option<Duration>| {
            let n: u32 = parts.iter().map(weight).sum();
            let sum: Option<Duration> = parts.iter().map(|p| Some(f(p)? * weight(p))).sum();
            sum.filter(|_| n > 0).map(|s| s / n.max(1))
        };
        let cpu = average(&parts, |p| p.cpu_per_request);
        let daemon = average(&parts, |p| p.daemon_cpu_per_request);
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
        merged.daemon_cpu_per_request = daemon;
        Some(merged)
    }

    pub(crate) fn ok(&self) -> usize {
        self.latencies.len()
    }
    pub(crate) fn percentile(&self, p: f64) -> Option<Duration> {
        if self.latencies.is_empty() {
            return None;
        }
        let rank = ((p / 100.0) * self.latencies.len() as f64).ceil() as usize;
        Some(self.latencies[rank.clamp(1, self.latencies.len()) - 1])
    }
    pub(crate) fn p50_ms(&self) -> Option<f64> {
        self.percentile(50.0).map(ms)
    }
    pub(crate) fn rps(&self) -> f64 {
        self.ok() as f64 / self.wall.as_secs_f64().max(1e-9)
    }
}

pub(crate) fn ms(d: Duration) -> f64 {
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

fn cpu_delta(before: Option<Duration>, after: Option<Duration>, n: usize) -> Option<Duration> {
    match (before, after) {
        (Some(b), Some(a)) if n > 0 => Some(a.saturating_sub(b) / n as u32),
        _ => None,
    }
}

/// The runtime one size is measured on, and its node.
pub(crate) enum Side<'a> {
    Docker {
        node: &'a Node,
    },
    Cri {
        node: &'a CriNode,
        /// The bare client's connection to the CRI socket (the floor's).
        channel: Channel,
        /// The address CNI gave the first target, which its answer must show.
        first_ip: String,
    },
}

impl Side<'_> {
    pub(crate) fn kind(&self) -> RuntimeKind {
        match self {
            Side::Docker { .. } => RuntimeKind::Docker,
            Side::Cri { .. } => RuntimeKind::Cri,
        }
    }

    /// The kubelet root the pods are laid out under.
    pub(crate) fn kubelet_root(&self) -> &Path {
        match self {
            Side::Docker { node } => &node.kubelet_root,
            Side::Cri { node, .. } => &node.kubelet_root,
        }
    }

    /// The node's own directory (the collector's manifest directory goes there).
    pub(crate) fn dir(&self) -> PathBuf {
        match self {
            Side::Docker { node } => node.dir.clone(),
            Side::Cri { node, .. } => node.dir.clone(),
        }
    }

    /// The arguments of `serve` that name the runtime.
    pub(crate) fn runtime_args(&self, config: &Config) -> Vec<String> {
        match self {
            Side::Docker { .. } => vec!["--docker-host".into(), config.docker_host.clone()],
            Side::Cri { node, .. } => vec!["--runtime-endpoint".into(), node.endpoint.clone()],
        }
    }

    /// Whether the answer about the first target holds the pod as it was made.
    pub(crate) fn check(&self, reply: &str) -> String {
        match self {
            Side::Docker { .. } => {
                layout::check_reply(reply, |ip| ip.starts_with(layout::docker::POD_IP_PREFIX))
            }
            Side::Cri { first_ip, .. } => layout::check_reply(reply, |ip| ip == first_ip),
        }
    }
}

/// What one size's measurements share.
pub(crate) struct Bench<'a> {
    pub(crate) config: &'a Config,
    pub(crate) side: Side<'a>,
    pub(crate) targets: Arc<Vec<PodKey>>,
    pub(crate) size: usize,
    pub(crate) collector_log: &'a Path,
}

impl Bench<'_> {
    /// The Docker client of a Docker node.
    pub(crate) fn docker(&self) -> &Docker {
        match &self.side {
            Side::Docker { node } => &node.docker,
            Side::Cri { .. } => panic!("a Docker client asked for on a CRI node"),
        }
    }

    /// The bare CRI connection of a CRI node.
    pub(crate) fn cri_channel(&self) -> Channel {
        match &self.side {
            Side::Cri { channel, .. } => channel.clone(),
            Side::Docker { .. } => panic!("a CRI connection asked for on a Docker node"),
        }
    }

    fn daemon_cpu(&self) -> Option<Duration> {
        let pid = match self.side.kind() {
            RuntimeKind::Docker => self.config.dockerd_pid,
            RuntimeKind::Cri => self.config.containerd_pid,
        };
        pid.and_then(|pid| cpu_time(&pid.to_string()))
    }

    /// Runs one point: warm-up, then `total` queries, timing each and counting CPU.
    pub(crate) async fn point<F, Fut>(
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
        let (cpu_before, daemon_before) = (cpu(), self.daemon_cpu());
        let (latencies, errors, wall) =
            load(self.targets.clone(), total, concurrency, limit, query).await;
        let n = latencies.len() + errors.len();
        Point {
            runtime: self.side.kind(),
            pods: self.size,
            path,
            concurrency,
            latencies,
            errors: errors.len(),
            first_error: errors.into_iter().next(),
            wall,
            cpu_per_request: cpu_delta(cpu_before, cpu(), n),
            daemon_cpu_per_request: cpu_delta(daemon_before, self.daemon_cpu(), n),
        }
    }
}
