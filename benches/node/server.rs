//! The collector under test as its own process: spawned from its binary, polled until
//! ready, its first answer checked, and the RSS and CPU time of a process read from /proc.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::measure::{Bench, Side};

const NODE_NAME: &str = "bench-node";
const HOST_IP: &str = "192.0.2.10";
pub(crate) const PROCESSOR_PATH: &str = "/processor/podDetailCollector";
/// Start-ups measured per size (the median is reported).
pub(crate) const STARTUP_SAMPLES: usize = 5;

pub(crate) struct Server {
    child: Child,
    addr: SocketAddr,
    /// This server's own client: dropping it closes its connections, as an idle node has none.
    pub(crate) http: reqwest::Client,
}

impl Server {
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }
    pub(crate) fn url(&self, path: &str) -> String {
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

/// A configuration of the collector under test.
#[derive(Clone, Debug)]
pub(crate) struct Variant {
    pub(crate) path: &'static str,
    pub(crate) binary: PathBuf,
    pub(crate) args: Vec<String>,
}

fn spawn_collector(
    config: &Config,
    side: &Side,
    log_file: &Path,
    variant: &Variant,
) -> Result<Server, String> {
    let addr = free_port()?;
    let manifests = side.dir().join("manifests");
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
        .args(side.runtime_args(config))
        .arg("--node-name")
        .arg(NODE_NAME)
        .arg("--host-ip")
        .arg(HOST_IP)
        .arg("--kubelet-root")
        .arg(side.kubelet_root())
        .arg("--manifest-dir")
        .arg(&manifests)
        .args(&variant.args)
        // As the DaemonSet runs it (deploy/base): one info line per request.
        .env("RUST_LOG", "info")
        // As the image runs it: the allocator tuned as its Dockerfile says.
        .envs(image_env())
        // The runtime is the one named above: neither variable of the other may pick it.
        .env_remove("DOCKER_HOST")
        .env_remove("CONTAINER_RUNTIME_ENDPOINT")
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

/// The environment `docker/Dockerfile` sets (`ENV KEY=value` lines).
fn image_env() -> Vec<(String, String)> {
    let dockerfile = concat!(env!("CARGO_MANIFEST_DIR"), "/docker/Dockerfile");
    std::fs::read_to_string(dockerfile)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.strip_prefix("ENV "))
        .filter_map(|pair| pair.trim().split_once('='))
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect()
}

/// Waits (at most 10 s) until `/readyz` no longer says the event index is reading the daemon's
/// clock (one to three seconds after start, when requests are answered from lists): what is
/// measured is a collector as it runs for days.
async fn wait_warm(server: &Server) {
    let url = server.url("/readyz");
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(10) {
        let Ok(reply) = server.http.get(&url).send().await else {
            return;
        };
        let Ok(ready) = reply.json::<serde_json::Value>().await else {
            return;
        };
        if ready["event_index"]
            .as_str()
            .is_none_or(|state| state == "ready")
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    crate::log("the collector's event index was still not ready after 10 s");
}

/// A process's memory, in bytes, from `/proc/<pid>/status`.
struct Rss {
    now: u64,
    peak: u64,
    /// Of `now`, the pages of files (the binary's own code and data) rather than the heap.
    file: u64,
}

fn rss(pid: u32) -> Option<Rss> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .map(|kb| kb * 1024)
    };
    Some(Rss {
        now: field("VmRSS:")?,
        peak: field("VmHWM:")?,
        file: field("RssFile:").unwrap_or(0),
    })
}

/// User + system CPU time of a process (`self` for this one).
pub(crate) fn cpu_time(pid: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // USER_HZ is 100 on every Linux this runs on.
    Some(Duration::from_millis((utime + stime) * 10))
}

/// Facts about the collector process at one size.
#[derive(Clone, Debug, Default)]
pub(crate) struct ServerFacts {
    pub(crate) pods: usize,
    pub(crate) variant: &'static str,
    pub(crate) startup: Vec<Duration>,
    pub(crate) idle_rss: u64,
    pub(crate) idle_rss_after: u64,
    /// Of `idle_rss_after`, the pages of the binary itself (code touched by the loads).
    pub(crate) idle_rss_after_file: u64,
    pub(crate) peak_rss: u64,
    pub(crate) reply_bytes: usize,
    pub(crate) check: String,
    /// Docker lookups the collector answered from its event index and from a list (its
    /// `pod_detail_collector_docker_lookups_total`), over every load at that size.
    pub(crate) lookups_index: u64,
    pub(crate) lookups_list: u64,
    /// Why the event index let the list answer (`reason×count`, from
    /// `pod_detail_collector_event_index_fallbacks_total`).
    pub(crate) fallbacks: String,
}

impl ServerFacts {
    pub(crate) fn startup_median(&self) -> Option<Duration> {
        let mut s = self.startup.clone();
        s.sort_unstable();
        s.get(s.len() / 2).copied()
    }
}

impl Bench<'_> {
    /// Measures start-up a few times, then starts the server to measure, idle, and checks
    /// one of its answers.
    pub(crate) async fn start(&self, variant: &Variant) -> Result<(Server, ServerFacts), String> {
        let mut facts = ServerFacts {
            pods: self.size,
            variant: variant.path,
            ..ServerFacts::default()
        };
        for _ in 0..STARTUP_SAMPLES {
            let spawned = Instant::now();
            let mut server = spawn_collector(self.config, &self.side, self.collector_log, variant)?;
            let took = wait_ready(&mut server, spawned).await;
            server.stop();
            facts.startup.push(took?);
        }
        let spawned = Instant::now();
        let mut server = spawn_collector(self.config, &self.side, self.collector_log, variant)?;
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
        wait_warm(server).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        facts.idle_rss = rss(server.pid()).map(|rss| rss.now).unwrap_or(0);
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
        facts.check = self.side.check(&text);
        Ok(())
    }

    /// Reads the memory the server keeps once idle again, and its peak, and stops it.
    pub(crate) async fn finish(&self, mut server: Server, facts: &mut ServerFacts) {
        if let Ok(reply) = server.http.get(server.url("/metrics")).send().await
            && let Ok(text) = reply.text().await
        {
            let lookups = |source: &str| {
                let series =
                    format!("pod_detail_collector_docker_lookups_total{{source=\"{source}\"}} ");
                text.lines()
                    .find_map(|line| line.strip_prefix(&series))
                    .and_then(|value| value.trim().parse::<f64>().ok())
                    .unwrap_or(0.0) as u64
            };
            facts.lookups_index = lookups("event_index");
            facts.lookups_list = lookups("list");
            facts.fallbacks = text
                .lines()
                .filter_map(|line| {
                    let rest = line.strip_prefix(
                        "pod_detail_collector_event_index_fallbacks_total{reason=\"",
                    )?;
                    let (reason, count) = rest.split_once("\"} ")?;
                    Some(format!("{reason}×{}", count.trim()))
                })
                .collect::<Vec<_>>()
                .join(", ");
        }
        server.disconnect();
        tokio::time::sleep(self.config.idle_wait).await;
        if let Some(rss) = rss(server.pid()) {
            facts.idle_rss_after = rss.now;
            facts.idle_rss_after_file = rss.file;
            facts.peak_rss = rss.peak;
        }
        server.stop();
    }
}
