use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::allow_from::AllowFrom;
use crate::runtime::RuntimeChoice;

/// Everything the service needs to know about the node it runs on. Built from the command line
/// (`cli`), or directly by tests and embedders.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Address the HTTP server listens on.
    pub listen: SocketAddr,
    /// The runtime to read pods from: a Docker daemon, a CRI socket, or the first of the
    /// well-known sockets that answers.
    pub runtime: RuntimeChoice,
    /// `spec.nodeName` of every rebuilt pod.
    pub node_name: String,
    /// The node's address (`status.hostIP`, and `podIP` of host-network pods).
    pub host_ip: Option<IpAddr>,
    /// Upper bound for every call to the Docker daemon.
    pub runtime_timeout: Duration,
    /// Most calls to the Docker daemon in flight at once, over all requests.
    pub runtime_concurrency: usize,
    /// Keep pod membership from Docker's event log instead of a list call per request (and
    /// the records of exited containers until an event names them). On by default; the
    /// one-shot `get` turns it off (it would build the index for one answer).
    pub event_index: bool,
    /// Largest request body accepted, in bytes.
    pub body_limit: usize,
    /// Who may call the processors besides the node itself (loopback and its own addresses).
    pub allow_from: AllowFrom,
    /// A file holding the token requests must carry (`?token=` or `Authorization: Bearer`).
    pub token_file: Option<PathBuf>,
    /// Serve HTTPS with this PEM certificate chain and key (both or neither).
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// A request's headers, and then its body, must each arrive within this time; an answer
    /// that the client does not read for this long ends the connection.
    pub read_timeout: Duration,
    /// Most connections open at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// Show environment variable values instead of redacting them.
    pub reveal_env: bool,
    /// Where the host's `/proc` is mounted (pod IPs under CNI are read from there).
    pub host_proc: PathBuf,
    /// The kubelet's root directory (volume paths and termination-message files live there).
    pub kubelet_root: PathBuf,
    /// The kubelet's static pod manifest directory.
    pub manifest_dir: PathBuf,
    /// The kubelet's container log directory (`FallbackToLogsOnError` messages).
    pub pod_logs_dir: PathBuf,
}

/// Port 8090 is the KubeDiag agent's own; the collector sits next to it.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:8095";
pub const DEFAULT_RUNTIME_TIMEOUT_SECS: u64 = 10;
/// A KubeDiag context carries every earlier result: bodies reach ~1.5 MiB (SPEC §8).
pub const DEFAULT_BODY_LIMIT: usize = 4 * 1024 * 1024;
pub const DEFAULT_READ_TIMEOUT_SECS: u64 = 10;
/// Far more than the agent needs (one connection per call), few enough to bound memory.
pub const DEFAULT_MAX_CONNECTIONS: usize = 128;
/// Enough for a burst of diagnoses on a node with many pods; few enough that a daemon already in
/// trouble is not buried in calls.
pub const DEFAULT_RUNTIME_CONCURRENCY: usize = 64;

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listen: SocketAddr::from(([0, 0, 0, 0], 8095)),
            runtime: RuntimeChoice::well_known(),
            node_name: String::new(),
            host_ip: None,
            runtime_timeout: Duration::from_secs(DEFAULT_RUNTIME_TIMEOUT_SECS),
            runtime_concurrency: DEFAULT_RUNTIME_CONCURRENCY,
            event_index: true,
            body_limit: DEFAULT_BODY_LIMIT,
            allow_from: AllowFrom::default(),
            token_file: None,
            tls_cert: None,
            tls_key: None,
            read_timeout: Duration::from_secs(DEFAULT_READ_TIMEOUT_SECS),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            reveal_env: false,
            host_proc: PathBuf::from("/proc"),
            kubelet_root: PathBuf::from("/var/lib/kubelet"),
            manifest_dir: PathBuf::from("/etc/kubernetes/manifests"),
            pod_logs_dir: PathBuf::from("/var/log/pods"),
        }
    }
}
