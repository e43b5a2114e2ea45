//! What a run shows: the table of every point (one per runtime), the ratios to the floor of
//! the same runtime and to the CLI, the verdicts on the targets, and `report.md` with the
//! machine and the method.

use std::fmt::Write as _;
use std::time::Duration;

use crate::config::{Config, RuntimeKind};
use crate::measure::{Point, WARMUP, ms};
use crate::server::{PROCESSOR_PATH, STARTUP_SAMPLES, ServerFacts};

/// What was measured on one runtime.
pub(crate) struct RuntimeRun {
    pub(crate) kind: RuntimeKind,
    /// The runtime, its version and its socket, as the report names them.
    pub(crate) about: String,
    pub(crate) points: Vec<Point>,
    pub(crate) facts: Vec<ServerFacts>,
    /// How long growing the node to each size took.
    pub(crate) builds: Vec<(usize, Duration)>,
}

/// The daemon whose CPU the last column shows.
fn daemon_name(kind: RuntimeKind) -> &'static str {
    match kind {
        RuntimeKind::Docker => "dockerd",
        RuntimeKind::Cri => "containerd",
    }
}

/// The floor a collector of this runtime is compared with.
fn floor_path(kind: RuntimeKind) -> &'static str {
    match kind {
        RuntimeKind::Docker => "floor",
        RuntimeKind::Cri => "cri-floor",
    }
}

const MIB: f64 = 1024.0 * 1024.0;

// Targets of the issues: on Docker the default collector (the event index on) against the
// floor and the CLI; over CRI the collector against the CRI floor.
const TARGET_P50_RATIO: f64 = 0.15;
const TARGET_CLI_RATIO: f64 = 40.0;
const TARGET_CRI_P50_RATIO: f64 = 1.2;
const TARGET_RPS_RATIO: f64 = 0.8;
const TARGET_IDLE_RSS_MIB: f64 = 8.0;
const TARGET_LOAD_RSS_MIB: f64 = 20.0;

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

fn point_rows(points: &[Point], daemon: &str) -> String {
    let mut s = format!(
        "| pods | path | concurrency | ok | errors | p50 ms | p90 ms | p99 ms | req/s | CPU µs/req | {daemon} CPU µs/req |\n\
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
            fmt_us(p.daemon_cpu_per_request),
        );
    }
    s
}

/// The points of one size, all from one runtime.
pub(crate) fn print_points(points: &[Point]) {
    let kind = points.first().map_or(RuntimeKind::Docker, |p| p.runtime);
    println!("\n{}", point_rows(points, daemon_name(kind)));
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

pub(crate) struct Report {
    pub(crate) summary: String,
    pub(crate) markdown: String,
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}

pub(crate) fn render_report(config: &Config, runs: &[RuntimeRun]) -> Report {
    let max_c = config.concurrency.iter().copied().max().unwrap_or(1);
    let mut ratios = format!(
        "| pods | collector | collector/floor p50 (c=1) | collector/floor-seq p50 (c=1) | CLI/collector p50 | collector/floor req/s (c={max_c}) | start-up ms | idle RSS MiB | idle RSS after load MiB (of it, the binary's pages) | peak RSS MiB | reply bytes | reply check | lookups index / list (why the list) |\n\
         |---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|\n"
    );
    let mut targets = String::new();
    let f2 = |v: Option<f64>| v.map(|v| format!("{v:.2}")).unwrap_or_else(|| "—".into());
    for run in runs {
        // Ratios are to the floor of the same runtime, measured in the same run.
        let points = &run.points;
        let floor = floor_path(run.kind);
        for f in &run.facts {
            let pods = f.pods;
            let p50 = |path: &str| find(points, pods, path, 1).and_then(Point::p50_ms);
            let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
                (Some(a), Some(b)) if b > 0.0 => Some(a / b),
                _ => None,
            };
            let coll_floor = ratio(p50(f.variant), p50(floor));
            let coll_seq = ratio(p50(f.variant), p50("floor-seq"));
            let cli_coll = ratio(p50("cli"), p50(f.variant));
            let rps = ratio(
                find(points, pods, f.variant, max_c).map(Point::rps),
                find(points, pods, floor, max_c).map(Point::rps),
            );
            let _ = writeln!(
                ratios,
                "| {pods} | {} | {} | {} | {} | {} | {} | {:.1} | {:.1} ({:.1}) | {:.1} | {} | {} | {} |",
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
                mib(f.idle_rss_after_file),
                mib(f.peak_rss),
                f.reply_bytes,
                f.check,
                if run.kind == RuntimeKind::Docker {
                    let why = if f.fallbacks.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", f.fallbacks)
                    };
                    format!("{} / {}{why}", f.lookups_index, f.lookups_list)
                } else {
                    "—".into()
                }
            );
            if Some(&pods) != config.sizes.last() {
                continue;
            }
            let idle = mib(f.idle_rss).max(mib(f.idle_rss_after));
            if f.variant == "collector" {
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
            } else if f.variant == "cri-collector" {
                let _ = writeln!(
                    targets,
                    "- CRI: cri-collector p50 ≤ {TARGET_CRI_P50_RATIO}× cri-floor at {pods} pods: {} ({}×)\n\
                     - CRI: cri-collector req/s at concurrency {max_c} ≥ {:.0}% of the cri-floor's: {} ({}×)\n\
                     - CRI: idle RSS ≤ {TARGET_IDLE_RSS_MIB} MiB: {} ({idle:.1} MiB, the larger of before and after load)\n\
                     - CRI: RSS under load ≤ {TARGET_LOAD_RSS_MIB} MiB: {} ({:.1} MiB peak)",
                    verdict(coll_floor.is_some_and(|r| r <= TARGET_CRI_P50_RATIO)),
                    f2(coll_floor),
                    TARGET_RPS_RATIO * 100.0,
                    verdict(rps.is_some_and(|r| r >= TARGET_RPS_RATIO)),
                    f2(rps),
                    verdict(idle <= TARGET_IDLE_RSS_MIB),
                    verdict(mib(f.peak_rss) <= TARGET_LOAD_RSS_MIB),
                    mib(f.peak_rss),
                );
            }
        }
    }
    let docker = runs.iter().find(|r| r.kind == RuntimeKind::Docker);
    let cri = runs.iter().find(|r| r.kind == RuntimeKind::Cri);
    let raw_docker = docker.map(|r| point_rows(&r.points, daemon_name(r.kind)));
    let raw_cri = cri.map(|r| point_rows(&r.points, daemon_name(r.kind)));
    let raw: String = [raw_docker.as_deref(), raw_cri.as_deref()]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join("\n");
    let summary = format!("{raw}\n{ratios}\nTargets:\n{targets}");

    let machine = machine_facts();
    let build_rows = |run: &RuntimeRun| -> String {
        run.builds
            .iter()
            .map(|(pods, took)| format!("{pods} pods: {:.0} s", took.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let extra_args = Some(config.collector_args.join(" "))
        .filter(|a| !a.is_empty())
        .map(|a| format!("`{a}`"))
        .unwrap_or_else(|| "none".into());
    let compare = config
        .compare
        .as_ref()
        .map(|p| format!("`{}`", p.display()))
        .unwrap_or_else(|| "none".into());

    // The method: what each runtime's node holds, then what each path is.
    let mut method = String::new();
    if let Some(run) = docker {
        let _ = writeln!(
            method,
            "- {}\n\
             - collector: `{}`, its own process, `RUST_LOG=info` as in deploy/\n\
             - node: kubelet-style pods of 4 containers each (sandbox on a CNI network, a completed \
             init container, the app's exited previous instance and its running one, restartCount 1), \
             over 5 namespaces, plus {} containers that are not the kubelet's; built in {} \
             ({} pods created at once)",
            run.about,
            config.collector.display(),
            config.others,
            build_rows(run),
            config.build_parallel,
        );
    } else {
        let _ = writeln!(
            method,
            "- collector: `{}`, its own process, `RUST_LOG=info` as in deploy/",
            config.collector.display(),
        );
    }
    if let Some(run) = cri {
        let _ = writeln!(
            method,
            "- {}\n\
             - CRI node: the same pods, laid out with the kubelet's own CRI calls (`RunPodSandbox` \
             with its PodSandboxConfig, then `CreateContainer` + `StartContainer` per instance, each \
             after the previous one exited), the sandbox's address from containerd's CNI bridge, over \
             5 namespaces; no other containers (CRI lists only the kubelet's); built in {} ({} pods \
             created at once)",
            run.about,
            build_rows(run),
            config.build_parallel,
        );
    }
    let _ = write!(
        method,
        "- per point: {} requests (at least 10 per worker); floor and collector take {} turns \
         of equal share, each after {WARMUP} warm-up requests (or one per worker), time limit \
         {} s a turn",
        config.requests,
        config.rounds,
        config.point_limit.as_secs(),
    );
    if docker.is_some() {
        let _ = write!(
            method,
            "; the CLI path: {} queries, one at a time",
            config.cli_requests
        );
    }
    method.push_str("\n\nPaths:\n\n");
    if docker.is_some() {
        let _ = write!(
            method,
            "- **floor**: a bare bollard client on the same socket making only the calls the \
             answer needs: the filtered list, then every container inspect and image inspect at \
             once (the list names each image);\n\
             - **floor-seq**: the same calls in the collector's order: list → container inspects → \
             image inspects;\n\
             - **list-only**: the filtered list call alone;\n\
             - **cli**: `docker ps -a -q --filter label=…` + `docker inspect` + `docker image inspect`;\n\
             - **collector**: `POST {PROCESSOR_PATH}` over loopback HTTP (keep-alive), answer read \
             in full, with its defaults (the event index on); extra arguments: {extra_args};\n\
             - **collector-list**: the same with `{}` (a list call per request, every container \
             inspected; at concurrency 1 and the highest), when measured;\n\
             - **collector-b**: another build (`PDC_BENCH_COMPARE`: {compare}), same arguments, when \
             measured{}\n",
            config
                .list_args
                .as_ref()
                .map(|a| a.join(" "))
                .unwrap_or_else(|| "not measured".into()),
            if cri.is_some() { ";" } else { "." },
        );
    }
    if cri.is_some() {
        let _ = write!(
            method,
            "- **cri-floor**: a bare CRI client (the same generated client, its own connection) on \
             the same socket making the calls an answer needs when nothing is kept: `ListPodSandbox` \
             and `ListContainers` by the pod's namespace and name labels (at once), then the \
             verbose `PodSandboxStatus` of each sandbox and `ContainerStatus` of each container, \
             all at once (the collector asks an exited container's status only once);\n\
             - **cri-list-only**: the two list calls alone;\n\
             - **cri-collector**: `serve --runtime-endpoint …`, `POST {PROCESSOR_PATH}` over loopback \
             HTTP (keep-alive), answer read in full; extra arguments: {extra_args};\n\
             - **cri-collector-b**: another build (`PDC_BENCH_COMPARE`: {compare}), same arguments, \
             when measured.\n",
        );
    }
    let mut cpu_note = String::from(
        "CPU µs/req is the collector process's CPU time per request (for the floor: the whole \
         benchmark process, i.e. the bare client); dockerd CPU is the daemon's, when known. \
         Both come from /proc with a 10 ms tick: read them as averages over the point.",
    );
    if cri.is_some() {
        cpu_note.push_str(
            " On containerd the last column is containerd's own CPU (not its shims'), when known.",
        );
    }
    let mut every_point = String::new();
    if let Some(raw) = &raw_docker {
        let _ = write!(every_point, "## Every point\n\n{raw}\n");
    }
    if let Some(raw) = &raw_cri {
        let _ = write!(every_point, "## Every point on containerd (CRI)\n\n{raw}\n");
    }
    let markdown = format!(
        "# pod-detail-collector: node benchmark\n\n\
         Generated by `scripts/bench` (`benches/node/`). Every number below comes from one run.\n\n\
         - machine: {machine}\n\
         {method}\n\
         {cpu_note}\n\n\
         ## Targets (at {} pods)\n\n{targets}\n\
         ## Ratios and the collector process\n\n{ratios}\n\
         Start-up is spawn → first `/readyz` 200 (median of {STARTUP_SAMPLES}); the loads begin \
         once `/readyz` no longer says the event index is reading the daemon's clock (its first \
         seconds, answered from lists); idle RSS is read 1 s after that, before any request; idle \
         RSS after load is read {} s after the last \
         load, its connections closed; peak RSS is the kernel's high-water mark (VmHWM) after \
         every load at that size. The targets judge idle RSS by the larger of the two. Lookups: how \
         many of the Docker lookups of every load at that size the collector answered from its \
         event index and how many from a container list (its own metrics), and why the index let \
         the list answer (its `event_index_fallbacks_total`).\n\n\
         {every_point}\
         ![p50 latency against pods on the node](latency.png)\n",
        config.sizes.last().copied().unwrap_or(0),
        config.idle_wait.as_secs(),
    );
    Report { summary, markdown }
}

pub(crate) static LOAD_AT_START: std::sync::OnceLock<String> = std::sync::OnceLock::new();

pub(crate) fn load_average() -> String {
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
