//! What a runtime holds about one pod, in one shape for every runtime: the rebuild's only input.
//!
//! Each backend (`runtime::docker`, …) fills it from its own answers and decodes its own
//! encoding on the way in (Docker's `annotation.` labels, its zero times, its image defaults);
//! nothing after it knows which runtime spoke. The shape follows what the kubelet itself works
//! from: sandboxes, container instances, and the files it keeps on the node (`host`).

mod packed;
mod view;

pub use packed::{Shelf, pack, unpack};
pub use view::PodView;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Pod, ResourceRequirements};
use k8s_openapi::jiff::Timestamp;

/// Everything known about one pod on this node.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct PodRecord {
    /// Every sandbox the pod had (a restarted pod has several), in any order.
    pub sandboxes: Vec<Sandbox>,
    /// Every container instance, of every sandbox, in any order.
    pub containers: Vec<Instance>,
}

/// A pod sandbox: the namespaces the pod's containers share.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Sandbox {
    pub id: ContainerId,
    pub attempt: Option<u32>,
    pub created: Option<Timestamp>,
    /// When it started, kept by the runtime after it stopped.
    pub started: Option<Timestamp>,
    pub state: SandboxState,
    /// The pod's labels plus the kubelet's identity labels (`io.kubernetes.pod.*`).
    pub labels: BTreeMap<String, String>,
    /// The pod's annotations, plus those the kubelet adds (`kubernetes.io/config.*`).
    pub annotations: BTreeMap<String, String>,
    pub network: NamespaceMode,
    pub pid_namespace: NamespaceMode,
    pub ipc_namespace: NamespaceMode,
    /// The pod IPs as the runtime reports them; `None` when the runtime cannot know them (a
    /// CNI plugin set the network up behind its back: the namespace itself tells).
    pub ips: Option<Vec<IpAddr>>,
    /// The cgroup the kubelet placed the pod in (it names the QoS class).
    pub cgroup_parent: Option<String>,
    /// The sandbox's process on the host, while it runs.
    pub pid: Option<u32>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SandboxState {
    Ready,
    #[default]
    NotReady,
}

/// Whose namespace a pod uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum NamespaceMode {
    /// The pod's own.
    #[default]
    Pod,
    /// The node's (`hostNetwork`, `hostPID`, `hostIPC`).
    Node,
}

/// One instance of a pod's container: each restart is a new instance.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Instance {
    pub id: ContainerId,
    /// The container's name in the pod spec.
    pub name: String,
    pub attempt: Option<u32>,
    pub created: Option<Timestamp>,
    /// The sandbox the instance runs in, where the runtime tells.
    pub sandbox_id: Option<ContainerId>,
    pub state: State,
    pub oom_killed: bool,
    pub image: ImageRef,
    /// The kubelet's labels (`io.kubernetes.pod.*`, `io.kubernetes.container.name`).
    pub labels: BTreeMap<String, String>,
    /// The kubelet's annotations (`io.kubernetes.container.restartCount`, …).
    pub annotations: BTreeMap<String, String>,
    /// Bind mounts from the host, kubelet plumbing included.
    pub mounts: Vec<Mount>,
    pub resources: Resources,
    pub cgroup_parent: Option<String>,
    /// The instance shares the node's network (told when the sandbox is gone).
    pub host_network: bool,
    /// What the pod spec asked for, with what the image supplies taken away where the
    /// runtime merged the two. `None` when the spec did not set it.
    pub command: Option<Vec<String>>,
    pub args: Option<Vec<String>>,
    pub env: Vec<EnvVar>,
    pub working_dir: Option<String>,
    pub tty: bool,
    pub stdin: bool,
    pub stdin_once: bool,
    pub security: Security,
}

/// `<runtime>://<id>`, as the kubelet writes container IDs.
#[derive(
    Debug,
    Clone,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct ContainerId {
    /// `docker`, `containerd`, `cri-o`.
    pub runtime: String,
    pub id: String,
}

impl fmt::Display for ContainerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.runtime, self.id)
    }
}

/// What an instance is doing.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum State {
    /// Created, never started.
    #[default]
    Created,
    Running {
        started: Option<Timestamp>,
    },
    Exited {
        exit_code: i32,
        /// The runtime's reason (`Completed`, `Error`, `OOMKilled`, `ContainerCannotRun`,
        /// `StartError`, …).
        reason: Option<String>,
        /// The runtime's own error text.
        message: Option<String>,
        /// `None` when it never ran.
        started: Option<Timestamp>,
        finished: Option<Timestamp>,
    },
}

/// The image an instance runs, named as the Pod shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImageRef {
    /// `spec.containers[].image`: the reference the pod spec gave, as far as the runtime knows.
    pub spec: String,
    /// `status.containerStatuses[].image`.
    pub status: String,
    /// `status.containerStatuses[].imageID`, with the runtime's prefix where it writes one.
    pub id: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Mount {
    pub container_path: String,
    pub host_path: String,
    pub read_only: bool,
}

/// The cgroup settings the kubelet derived from the container's requests and limits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Resources {
    pub cpu_shares: Option<i64>,
    pub cpu_quota: Option<i64>,
    pub cpu_period: Option<i64>,
    pub memory_limit: Option<i64>,
    pub oom_score_adj: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EnvVar {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Security {
    pub privileged: bool,
    pub read_only_root_filesystem: bool,
    pub capabilities_add: Vec<String>,
    pub capabilities_drop: Vec<String>,
}

/// What the node's own files tell about the pod, beyond the runtime (read by `host`, next to
/// the record rather than in it: no runtime fills it).
#[derive(Debug, Clone, Default)]
pub struct HostFacts {
    /// Addresses in the sandbox's network namespace, for sandboxes whose runtime cannot tell.
    pub pod_ips: Vec<IpAddr>,
    /// Termination-message file contents, by container ID.
    pub termination_messages: HashMap<ContainerId, String>,
    /// The tail of the container's log the kubelet would show instead of an empty
    /// termination message (`FallbackToLogsOnError`), by container ID: only for the instances
    /// that policy applies to.
    pub log_tails: HashMap<ContainerId, String>,
    /// What the kubelet allocated to the pod, where its checkpoint holds it.
    pub allocated: Option<Allocation>,
    /// The static pod manifest the kubelet runs the pod from.
    pub manifest: Option<Pod>,
}

/// The requests and limits the kubelet allocated to a pod (Kubernetes 1.33+,
/// `<kubelet-root>/allocated_pods_state`): memory requests included, which no runtime holds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Allocation {
    /// By container name: init, regular and ephemeral containers alike.
    pub containers: BTreeMap<String, ResourceRequirements>,
    /// Pod-level resources, where the pod asked for them.
    pub pod: Option<ResourceRequirements>,
}
