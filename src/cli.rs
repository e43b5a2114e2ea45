//! The command line: `serve` runs the processor, `get` prints one pod. Every flag can also be
//! set from the environment, which is how the DaemonSet configures it.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::error::Result;
use crate::http::access::AllowFrom;
use crate::pod_ref::PodRef;
use crate::runtime::RuntimeChoice;
use crate::settings::{self, Settings};

#[derive(Debug, Parser)]
#[command(
    name = "pod-detail-collector",
    version,
    about = "Tells KubeDiag what a pod looks like on this node, straight from the container runtime.",
    long_about = "Tells KubeDiag what a pod looks like on this node, straight from the container runtime.\n\n\
        It finds the pod's sandbox and containers in the node's runtime (Docker, or containerd and \
        CRI-O over the CRI API the kubelet uses) by the kubelet's labels and \
        rebuilds a Kubernetes v1 Pod from them: containers, restart counts, exit codes, OOM kills, \
        resources, IPs, QoS. It never asks the API server, so it works when the control plane is \
        down, and it never changes anything on the node.\n\n\
        Log verbosity is set with RUST_LOG (default: info)."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve KubeDiag's processors (POST /processor/podDetailCollector, podListCollector,
    /// containerCollector, runtimeInfoCollector, dockerInfoCollector), plus /healthz, /readyz and
    /// /metrics.
    Serve(ServeArgs),
    /// Rebuild one pod and print it as JSON (same code path as the server).
    Get(GetArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on. KubeDiag's agent uses 8090 on the same host network.
    #[arg(long, env = "PDC_LISTEN", default_value = settings::DEFAULT_LISTEN)]
    pub listen: SocketAddr,

    /// Largest request body accepted, in bytes. A KubeDiag context carries every earlier
    /// result and can reach ~1.5 MiB.
    #[arg(long, env = "PDC_BODY_LIMIT", default_value_t = settings::DEFAULT_BODY_LIMIT, value_name = "BYTES")]
    pub body_limit: usize,

    /// Who may call the processors besides this node (loopback and the node's own addresses,
    /// where the KubeDiag agent calls from): IP addresses and CIDRs separated by commas, or
    /// `any` for anyone who reaches the port. /healthz, /readyz and /metrics answer anyone.
    #[arg(
        long,
        env = "PDC_ALLOW_FROM",
        value_name = "CIDR,...|any",
        default_value = "",
        hide_default_value = true
    )]
    pub allow_from: AllowFrom,

    /// Require the token in this file (e.g. a mounted Secret; read again when it changes) as
    /// `?token=` in the path or as `Authorization: Bearer`.
    #[arg(long, env = "PDC_TOKEN_FILE", value_name = "PATH")]
    pub token_file: Option<PathBuf>,

    /// Serve HTTPS with this PEM certificate chain (read again when it changes).
    #[arg(long, env = "PDC_TLS_CERT", value_name = "PATH", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The PEM private key of --tls-cert.
    #[arg(long, env = "PDC_TLS_KEY", value_name = "PATH", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Seconds a client has to send a request's headers, and then its body; an answer it
    /// does not read for as long ends the connection.
    #[arg(long, env = "PDC_READ_TIMEOUT", default_value_t = settings::DEFAULT_READ_TIMEOUT_SECS, value_name = "SECS")]
    pub read_timeout: u64,

    /// Most connections open at once; more wait until one closes.
    #[arg(long, env = "PDC_MAX_CONNECTIONS", default_value_t = settings::DEFAULT_MAX_CONNECTIONS, value_name = "N")]
    pub max_connections: usize,

    #[command(flatten)]
    pub node: NodeArgs,
}

#[derive(Debug, Args)]
pub struct GetArgs {
    /// The pod, as NAMESPACE/NAME.
    #[arg(value_name = "NAMESPACE/NAME")]
    pub pod: String,

    #[command(flatten)]
    pub node: NodeArgs,
}

/// Where the runtime is and what the node is called: shared by `serve` and `get`.
#[derive(Debug, Args)]
pub struct NodeArgs {
    /// Read pods from this Docker daemon (dockershim and cri-dockerd nodes, Docker Desktop):
    /// unix:///path, /path, tcp://host:port or http://host:port.
    /// [default: the node's runtime, found from the well-known sockets]
    #[arg(long, env = "DOCKER_HOST", conflicts_with = "runtime_endpoint")]
    pub docker_host: Option<String>,

    /// Read pods from this CRI runtime socket (containerd, CRI-O), as crictl does:
    /// unix:///path or /path. Without it and without --docker-host, the collector looks for
    /// /var/run/cri-dockerd.sock (read through Docker), /run/containerd/containerd.sock,
    /// /var/run/crio/crio.sock, then /var/run/docker.sock, and reads the first that answers.
    #[arg(long, env = "CONTAINER_RUNTIME_ENDPOINT", value_name = "ENDPOINT")]
    pub runtime_endpoint: Option<String>,

    /// Node name written as spec.nodeName [default: this host's name].
    #[arg(long, env = "NODE_NAME")]
    pub node_name: Option<String>,

    /// The node's IP, written as status.hostIP and as the podIP of host-network pods.
    #[arg(long, env = "HOST_IP")]
    pub host_ip: Option<IpAddr>,

    /// Seconds any single call to the runtime may take.
    #[arg(long, env = "PDC_RUNTIME_TIMEOUT", default_value_t = settings::DEFAULT_RUNTIME_TIMEOUT_SECS, value_name = "SECS")]
    pub runtime_timeout: u64,

    /// Most calls to the runtime in flight at once, over all requests, so that a storm
    /// of diagnoses cannot overload the runtime.
    #[arg(long, env = "PDC_RUNTIME_CONCURRENCY", default_value_t = settings::DEFAULT_RUNTIME_CONCURRENCY, value_name = "CALLS")]
    pub runtime_concurrency: usize,

    /// Keep which containers belong to which pod from Docker's event log, and the records of
    /// exited containers until an event names them, so that a request needs no container list
    /// call and inspects only running and created containers (much faster on nodes with many
    /// containers). The event window is read by the daemon's own clock; whenever the events
    /// cannot be followed, requests use the list. `--event-index=false` always lists.
    /// `get` never builds it.
    #[arg(
        long,
        env = "PDC_EVENT_INDEX",
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_value_t = true,
        default_missing_value = "true",
        action = clap::ArgAction::Set,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub event_index: bool,

    /// Show environment variable values and the values of credential-looking command-line
    /// flags (--password=…, --token …, --*-key, URL passwords). They are redacted by default
    /// because secrets are often passed that way.
    #[arg(long, env = "PDC_REVEAL_ENV")]
    pub reveal_env: bool,

    /// Where the host's /proc is mounted (read for pod IPs under CNI).
    #[arg(long, env = "PDC_HOST_PROC", default_value = "/proc")]
    pub host_proc: PathBuf,

    /// The kubelet's root directory (its layout names the pod's volumes).
    #[arg(long, env = "PDC_KUBELET_ROOT", default_value = "/var/lib/kubelet")]
    pub kubelet_root: PathBuf,

    /// The kubelet's static pod manifest directory.
    #[arg(
        long,
        env = "PDC_MANIFEST_DIR",
        default_value = "/etc/kubernetes/manifests"
    )]
    pub manifest_dir: PathBuf,
}

impl NodeArgs {
    pub fn settings(&self) -> Settings {
        Settings {
            runtime: match (&self.runtime_endpoint, &self.docker_host) {
                (Some(endpoint), _) => RuntimeChoice::Cri(endpoint.clone()),
                (None, Some(host)) => RuntimeChoice::Docker(host.clone()),
                (None, None) => RuntimeChoice::well_known(),
            },
            node_name: self.node_name.clone().unwrap_or_else(host_name),
            host_ip: self.host_ip,
            runtime_timeout: Duration::from_secs(self.runtime_timeout.max(1)),
            runtime_concurrency: self.runtime_concurrency.max(1),
            event_index: self.event_index,
            reveal_env: self.reveal_env,
            host_proc: self.host_proc.clone(),
            kubelet_root: self.kubelet_root.clone(),
            manifest_dir: self.manifest_dir.clone(),
            ..Settings::default()
        }
    }
}

impl ServeArgs {
    pub fn settings(&self) -> Settings {
        Settings {
            listen: self.listen,
            body_limit: self.body_limit,
            allow_from: self.allow_from.clone(),
            token_file: self.token_file.clone(),
            tls_cert: self.tls_cert.clone(),
            tls_key: self.tls_key.clone(),
            read_timeout: Duration::from_secs(self.read_timeout.max(1)),
            max_connections: self.max_connections.max(1),
            ..self.node.settings()
        }
    }
}

impl GetArgs {
    pub fn pod_ref(&self) -> Result<PodRef> {
        PodRef::parse(&self.pod)
    }
}

/// The kernel's host name, which is the kubelet's default node name.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_string())
        .unwrap_or_default()
}
