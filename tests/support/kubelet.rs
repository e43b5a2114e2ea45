//! Creates pods on the real Docker daemon exactly the way the kubelet's dockershim /
//! cri-dockerd lays them out (SPEC §3): a pause sandbox plus one Docker container per
//! container instance, with the kubelet's names, labels, annotations-as-labels, cgroup
//! parents, resources, namespaces and bind mounts.
//!
//! ```ignore
//! let node = Node::new().await;
//! let pod = node
//!     .run(
//!         Pod::new(node.ns("kube-system"), "kube-scheduler-test-node")
//!             .host_network()
//!             .static_pod()
//!             .label("component", "kube-scheduler")
//!             .container(
//!                 Container::new("kube-scheduler")
//!                     .cpu_request(100)
//!                     .first_attempt(30)
//!                     .instance(Instance::Exit(2))
//!                     .instance(Instance::Running),
//!             ),
//!     )
//!     .await;
//! let old = pod.instance("kube-scheduler", 30);
//! ```
//!
//! This is test code: the product itself never creates containers.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use bollard::Docker;
use bollard::models::{
    ContainerCreateBody, ContainerStateStatusEnum, HealthConfig, HostConfig, RestartPolicy,
    RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    CreateContainerOptions, ListContainersOptions, RemoveContainerOptions, StopContainerOptions,
};

use super::util;

/// 16 MiB: small enough for `tail /dev/zero` to be OOM-killed in well under a second.
pub const OOM_MEMORY_LIMIT: i64 = 16 * 1024 * 1024;
/// The kubelet's CFS period (µs).
pub const CPU_PERIOD: i64 = 100_000;
const WAIT: Duration = Duration::from_secs(60);

/// What one instance (one Docker container, one attempt) of a container does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Instance {
    /// Started and still running: the container's command/args, else the image's
    /// `sleep 86400`.
    Running,
    /// Started and exited with this code: runs `sh -c 'exit N'` (the container's own
    /// command/args are not used, so the instance surely ends as asked).
    Exit(i64),
    /// Like `Exit`, and writes this text to `/dev/termination-log` before exiting.
    ExitWithMessage(i64, String),
    /// Killed by the kernel OOM killer: `tail /dev/zero` under the container's memory limit
    /// (16 MiB unless set; exit 137).
    OomKilled,
    /// Created but never started (e.g. the kubelet is still setting it up); the container's
    /// command/args.
    Created,
    /// Created, then `docker start` fails because the command does not exist: Docker leaves
    /// it `created` with exit code 127, an error text and no start or finish time.
    CannotRun,
}

/// The command of a [`Instance::CannotRun`] instance.
pub const MISSING_COMMAND: &str = "/usr/local/bin/no-such-command";

/// A container port, as in the `io.kubernetes.container.ports` annotation.
#[derive(Clone, Debug)]
pub struct Port {
    pub name: Option<String>,
    pub container_port: u16,
    pub protocol: String,
    pub host_port: Option<u16>,
}

/// Where a pod volume comes from.
#[derive(Clone, Debug)]
pub enum VolumeSource {
    Secret,
    ConfigMap,
    EmptyDir,
    Projected,
    /// A host path (file or directory); created as a directory when missing.
    HostPath(PathBuf),
}

/// A pod volume.
#[derive(Clone, Debug)]
pub struct Volume {
    pub name: String,
    pub source: VolumeSource,
}

impl Volume {
    pub fn secret(name: &str) -> Self {
        Self::new(name, VolumeSource::Secret)
    }
    pub fn config_map(name: &str) -> Self {
        Self::new(name, VolumeSource::ConfigMap)
    }
    pub fn empty_dir(name: &str) -> Self {
        Self::new(name, VolumeSource::EmptyDir)
    }
    pub fn projected(name: &str) -> Self {
        Self::new(name, VolumeSource::Projected)
    }
    pub fn host_path(name: &str, path: impl Into<PathBuf>) -> Self {
        Self::new(name, VolumeSource::HostPath(path.into()))
    }
    fn new(name: &str, source: VolumeSource) -> Self {
        Self {
            name: name.to_string(),
            source,
        }
    }
    /// The kubelet's plugin directory name (`/` escaped as `~`), for kubelet-managed volumes.
    pub fn plugin_dir(&self) -> Option<&'static str> {
        match self.source {
            VolumeSource::Secret => Some("kubernetes.io~secret"),
            VolumeSource::ConfigMap => Some("kubernetes.io~configmap"),
            VolumeSource::EmptyDir => Some("kubernetes.io~empty-dir"),
            VolumeSource::Projected => Some("kubernetes.io~projected"),
            VolumeSource::HostPath(_) => None,
        }
    }
    /// The host side of the volume for a pod.
    pub fn host_source(&self, kubelet_root: &Path, uid: &str) -> PathBuf {
        match (&self.source, self.plugin_dir()) {
            (VolumeSource::HostPath(p), _) => p.clone(),
            (_, Some(plugin)) => kubelet_root
                .join("pods")
                .join(uid)
                .join("volumes")
                .join(plugin)
                .join(&self.name),
            (_, None) => unreachable!("only hostPath has no plugin dir"),
        }
    }
}

/// A volume mount of a container.
#[derive(Clone, Debug)]
pub struct VolumeMount {
    pub volume: String,
    pub mount_path: String,
    pub read_only: bool,
    /// `subPath`: the kubelet binds `<root>/pods/<uid>/volume-subpaths/<volume>/<container>/<index>`
    /// (index = position among the container's volume mounts) instead of the volume itself.
    pub sub_path: Option<String>,
}

/// A container of a pod spec, plus the instances (attempts) to create for it.
#[derive(Clone, Debug)]
pub struct Container {
    pub name: String,
    pub image: Option<String>,
    pub command: Option<Vec<String>>,
    pub args: Option<Vec<String>>,
    pub env: Vec<(String, String)>,
    pub cpu_request_m: Option<i64>,
    pub cpu_limit_m: Option<i64>,
    pub memory_request: Option<i64>,
    pub memory_limit: Option<i64>,
    pub ports: Vec<Port>,
    pub mounts: Vec<VolumeMount>,
    pub working_dir: Option<String>,
    pub privileged: bool,
    pub container_type: Option<String>,
    pub first_attempt: u32,
    pub instances: Vec<Instance>,
    /// Annotations written as given, over the kubelet's own (to model odd or broken values).
    pub raw_annotations: Vec<(String, String)>,
}

impl Container {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            image: None,
            command: None,
            args: None,
            env: Vec::new(),
            cpu_request_m: None,
            cpu_limit_m: None,
            memory_request: None,
            memory_limit: None,
            ports: Vec::new(),
            mounts: Vec::new(),
            working_dir: None,
            privileged: false,
            container_type: None,
            first_attempt: 0,
            instances: Vec::new(),
            raw_annotations: Vec::new(),
        }
    }
    /// Image reference (default: the test app image). The container's `Config.Image` will be
    /// the image ID, as the kubelet passes it.
    pub fn image(mut self, image: &str) -> Self {
        self.image = Some(image.to_string());
        self
    }
    /// `command` (Docker Entrypoint).
    pub fn command<S: AsRef<str>>(mut self, cmd: impl IntoIterator<Item = S>) -> Self {
        self.command = Some(cmd.into_iter().map(|s| s.as_ref().to_string()).collect());
        self
    }
    /// `args` (Docker Cmd).
    pub fn args<S: AsRef<str>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.args = Some(args.into_iter().map(|s| s.as_ref().to_string()).collect());
        self
    }
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }
    /// cpu request and limit in millicores.
    pub fn cpu(self, request_m: i64, limit_m: i64) -> Self {
        self.cpu_request(request_m).cpu_limit(limit_m)
    }
    pub fn cpu_request(mut self, m: i64) -> Self {
        self.cpu_request_m = Some(m);
        self
    }
    pub fn cpu_limit(mut self, m: i64) -> Self {
        self.cpu_limit_m = Some(m);
        self
    }
    /// Memory request in bytes: never reaches Docker, only decides the QoS class.
    pub fn memory_request(mut self, bytes: i64) -> Self {
        self.memory_request = Some(bytes);
        self
    }
    pub fn memory_limit(mut self, bytes: i64) -> Self {
        self.memory_limit = Some(bytes);
        self
    }
    /// A named TCP port.
    pub fn port(mut self, name: &str, container_port: u16) -> Self {
        self.ports.push(Port {
            name: Some(name.to_string()),
            container_port,
            protocol: "TCP".to_string(),
            host_port: None,
        });
        self
    }
    pub fn port_full(mut self, port: Port) -> Self {
        self.ports.push(port);
        self
    }
    pub fn mount(mut self, volume: &str, mount_path: &str, read_only: bool) -> Self {
        self.mounts.push(VolumeMount {
            volume: volume.to_string(),
            mount_path: mount_path.to_string(),
            read_only,
            sub_path: None,
        });
        self
    }
    /// A `subPath` mount of a volume: Docker binds the kubelet's prepared
    /// `volume-subpaths/<volume>/<container>/<index>` path (a directory here).
    pub fn mount_sub_path(
        mut self,
        volume: &str,
        mount_path: &str,
        sub_path: &str,
        read_only: bool,
    ) -> Self {
        self.mounts.push(VolumeMount {
            volume: volume.to_string(),
            mount_path: mount_path.to_string(),
            read_only,
            sub_path: Some(sub_path.to_string()),
        });
        self
    }
    pub fn working_dir(mut self, dir: &str) -> Self {
        self.working_dir = Some(dir.to_string());
        self
    }
    /// `securityContext.privileged`. Note: sandboxed test machines may refuse to *start* a
    /// privileged container ("unable to apply caps"); `Instance::Created` still works.
    pub fn privileged(mut self) -> Self {
        self.privileged = true;
        self
    }
    /// Sets the `io.kubernetes.container.type` annotation (`init`, `container`, `ephemeral`),
    /// which only recent kubelets write.
    pub fn container_type(mut self, t: &str) -> Self {
        self.container_type = Some(t.to_string());
        self
    }
    /// Writes this container annotation (label `annotation.<key>`) as given, replacing the
    /// kubelet's value: for malformed or unknown annotations.
    pub fn raw_annotation(mut self, key: &str, value: &str) -> Self {
        self.raw_annotations
            .push((key.to_string(), value.to_string()));
        self
    }
    /// Attempt number (= restartCount) of the first instance created; the next ones count up.
    pub fn first_attempt(mut self, attempt: u32) -> Self {
        self.first_attempt = attempt;
        self
    }
    /// Adds an instance; instances are created in order, each after the previous one is
    /// settled. Without any, one `Running` instance is created. An `OomKilled` instance gives
    /// the container a 16 MiB memory limit when it has none.
    pub fn instance(mut self, instance: Instance) -> Self {
        if instance == Instance::OomKilled && self.memory_limit.is_none() {
            self.memory_limit = Some(OOM_MEMORY_LIMIT);
        }
        self.instances.push(instance);
        self
    }

    pub(super) fn instances_or_default(&self) -> Vec<Instance> {
        if self.instances.is_empty() {
            vec![Instance::Running]
        } else {
            self.instances.clone()
        }
    }
    /// Requests after the API server's defaulting (request defaults to the limit).
    pub(super) fn effective_cpu_request(&self) -> Option<i64> {
        self.cpu_request_m.or(self.cpu_limit_m)
    }
    pub(super) fn effective_memory_request(&self) -> Option<i64> {
        self.memory_request.or(self.memory_limit)
    }
    /// The kubelet's `MilliCPUToShares`.
    pub fn cpu_shares(&self) -> i64 {
        let m = self.effective_cpu_request().unwrap_or(0);
        (m * 1024 / 1000).max(2)
    }
    /// The kubelet's `MilliCPUToQuota` (0 = no limit).
    pub fn cpu_quota(&self) -> i64 {
        match self.cpu_limit_m {
            Some(m) if m > 0 => (m * CPU_PERIOD / 1000).max(1000),
            _ => 0,
        }
    }
    /// The JSON of the ports annotation, like the kubelet's `json.Marshal(container.Ports)`
    /// (Go field order, zero values left out).
    pub fn ports_json(&self) -> String {
        let q = |s: &str| serde_json::to_string(s).expect("json string");
        let ports: Vec<String> = self
            .ports
            .iter()
            .map(|p| {
                let mut fields = Vec::new();
                if let Some(n) = &p.name {
                    fields.push(format!("\"name\":{}", q(n)));
                }
                if let Some(h) = p.host_port {
                    fields.push(format!("\"hostPort\":{h}"));
                }
                fields.push(format!("\"containerPort\":{}", p.container_port));
                fields.push(format!("\"protocol\":{}", q(&p.protocol)));
                format!("{{{}}}", fields.join(","))
            })
            .collect();
        format!("[{}]", ports.join(","))
    }
    pub(super) fn spec_hash(&self, image: &str) -> String {
        let cmd = self.command.clone().unwrap_or_default().join(" ");
        let args = self.args.clone().unwrap_or_default().join(" ");
        format!(
            "{:x}",
            util::fnv64(&[&self.name, image, &cmd, &args]) & 0xffff_ffff
        )
    }
}

/// The pod's QoS class, computed the way Kubernetes does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Qos {
    Guaranteed,
    Burstable,
    BestEffort,
}

impl Qos {
    pub fn as_str(self) -> &'static str {
        match self {
            Qos::Guaranteed => "Guaranteed",
            Qos::Burstable => "Burstable",
            Qos::BestEffort => "BestEffort",
        }
    }
}

/// A pod spec plus how the kubelet saw it.
#[derive(Clone, Debug)]
pub struct Pod {
    pub namespace: String,
    pub name: String,
    pub uid: Option<String>,
    pub labels: Vec<(String, String)>,
    pub annotations: Vec<(String, String)>,
    pub host_network: bool,
    pub host_pid: bool,
    pub host_ipc: bool,
    pub static_pod: bool,
    pub termination_grace_period: i64,
    pub volumes: Vec<Volume>,
    pub containers: Vec<Container>,
    pub sandbox_attempt: u32,
    pub finished: bool,
    pub pod_ip: Option<String>,
    pub name_clash_suffix: bool,
    /// Sandbox image (default: the test pause image).
    pub sandbox_image: Option<String>,
    /// CNI-style addresses through a veth whose host end stays in the host namespace.
    pub cni: Option<CniAddresses>,
}

/// What [`Pod::cni_veth`] gives the pod's `eth0`.
#[derive(Clone, Debug)]
pub struct CniAddresses {
    /// IPv4 address with prefix length, e.g. `198.51.100.23/24`.
    pub ipv4: String,
    /// IPv6 address with prefix length, e.g. `2001:db8::23/64`; only added when IPv6 can be
    /// enabled in the sandbox's network namespace.
    pub ipv6: Option<String>,
}

impl Pod {
    pub fn new(namespace: impl Into<String>, name: &str) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.to_string(),
            uid: None,
            labels: Vec::new(),
            annotations: Vec::new(),
            host_network: false,
            host_pid: false,
            host_ipc: false,
            static_pod: false,
            termination_grace_period: 30,
            volumes: Vec::new(),
            containers: Vec::new(),
            sandbox_attempt: 0,
            finished: false,
            pod_ip: None,
            name_clash_suffix: false,
            sandbox_image: None,
            cni: None,
        }
    }
    /// Fixed UID (default: a random UUID, or the config hash for static pods).
    pub fn uid(mut self, uid: &str) -> Self {
        self.uid = Some(uid.to_string());
        self
    }
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.push((key.to_string(), value.to_string()));
        self
    }
    pub fn annotation(mut self, key: &str, value: &str) -> Self {
        self.annotations.push((key.to_string(), value.to_string()));
        self
    }
    pub fn host_network(mut self) -> Self {
        self.host_network = true;
        self
    }
    pub fn host_pid(mut self) -> Self {
        self.host_pid = true;
        self
    }
    pub fn host_ipc(mut self) -> Self {
        self.host_ipc = true;
        self
    }
    /// A static pod from the kubelet's manifest directory: `kubernetes.io/config.source=file`,
    /// `kubernetes.io/config.hash` set, and the UID equal to that hash.
    pub fn static_pod(mut self) -> Self {
        self.static_pod = true;
        self
    }
    pub fn termination_grace_period(mut self, seconds: i64) -> Self {
        self.termination_grace_period = seconds;
        self
    }
    pub fn volume(mut self, volume: Volume) -> Self {
        self.volumes.push(volume);
        self
    }
    pub fn container(mut self, container: Container) -> Self {
        self.containers.push(container);
        self
    }
    pub fn sandbox_attempt(mut self, attempt: u32) -> Self {
        self.sandbox_attempt = attempt;
        self
    }
    /// Plays the CNI plugin: once the sandbox runs, gives its network namespace an `eth0`
    /// (a veth whose peer stays inside the namespace) with this address, e.g.
    /// `198.51.100.23/24`. Not for hostNetwork pods.
    pub fn pod_ip(mut self, cidr: &str) -> Self {
        self.pod_ip = Some(cidr.to_string());
        self
    }
    /// Plays a CNI plugin the way the bridge/ptp plugins do it: a veth pair is made in the
    /// host namespace, its peer moved into the sandbox's network namespace (found through the
    /// sandbox's pid) and renamed `eth0`, then given these addresses (IPv6 with `nodad`, and
    /// only when IPv6 can be enabled there). The host end stays down (nothing is routed) and is
    /// deleted when the [`Node`] is dropped. Not for hostNetwork pods.
    pub fn cni_veth(mut self, ipv4_cidr: &str, ipv6_cidr: Option<&str>) -> Self {
        self.cni = Some(CniAddresses {
            ipv4: ipv4_cidr.to_string(),
            ipv6: ipv6_cidr.map(str::to_string),
        });
        self
    }
    /// Runs the sandbox from this image instead of the test pause image (e.g. one whose image
    /// carries labels, which Docker merges into the sandbox's labels).
    pub fn sandbox_image(mut self, image: &str) -> Self {
        self.sandbox_image = Some(image.to_string());
        self
    }
    /// Names every Docker container with the seventh `_<8 hex>` part the kubelet adds after a
    /// name clash.
    pub fn name_clash_suffix(mut self) -> Self {
        self.name_clash_suffix = true;
        self
    }
    /// The pod has finished (a Job's pod): once every container instance is settled, the
    /// sandbox is stopped, as the kubelet does.
    pub fn finished(mut self) -> Self {
        self.finished = true;
        self
    }

    /// The QoS class as Kubernetes computes it from requests and limits.
    pub fn qos(&self) -> Qos {
        let any = self.containers.iter().any(|c| {
            c.cpu_request_m.is_some()
                || c.cpu_limit_m.is_some()
                || c.memory_request.is_some()
                || c.memory_limit.is_some()
        });
        if !any {
            return Qos::BestEffort;
        }
        let guaranteed = self.containers.iter().all(|c| {
            c.cpu_limit_m.is_some()
                && c.memory_limit.is_some()
                && c.effective_cpu_request() == c.cpu_limit_m
                && c.effective_memory_request() == c.memory_limit
        });
        if guaranteed {
            Qos::Guaranteed
        } else {
            Qos::Burstable
        }
    }

    /// The cgroup parent the kubelet (cgroupfs driver) gives the pod.
    pub fn cgroup_parent(&self, uid: &str) -> String {
        match self.qos() {
            Qos::Guaranteed => format!("/kubepods/pod{uid}"),
            Qos::Burstable => format!("/kubepods/burstable/pod{uid}"),
            Qos::BestEffort => format!("/kubepods/besteffort/pod{uid}"),
        }
    }

    /// The kubelet's container `oom_score_adj`, when it is one Docker here accepts (these
    /// machines refuse negative values, so Guaranteed containers keep the default).
    fn container_oom_score_adj(&self, c: &Container) -> Option<i64> {
        match self.qos() {
            Qos::Guaranteed => None,
            Qos::BestEffort => Some(1000),
            Qos::Burstable => {
                let capacity = memory_capacity();
                let req = c.effective_memory_request().unwrap_or(0);
                let adj = 1000 - (1000 * req) / capacity;
                Some(adj.clamp(3, 999))
            }
        }
    }
}

pub(super) fn memory_capacity() -> i64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<i64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(8 << 30)
}

/// One created container instance.
#[derive(Clone, Debug)]
pub struct CreatedInstance {
    pub attempt: u32,
    pub id: String,
    pub instance: Instance,
    /// Host path of the termination-log file mounted at `/dev/termination-log`.
    pub termination_log: PathBuf,
}

/// What [`Node::run`] created.
#[derive(Clone, Debug)]
pub struct CreatedPod {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub sandbox_id: String,
    pub pod: Pod,
    /// Per container name (in spec order), its instances oldest first.
    pub containers: Vec<(String, Vec<CreatedInstance>)>,
    /// Annotations the kubelet put on the sandbox (the pod's plus `kubernetes.io/config.*`).
    pub annotations: HashMap<String, String>,
    /// Addresses [`Pod::cni_veth`] put on `eth0` (without prefix length), IPv4 first; the
    /// IPv6 one only when it could be added.
    pub cni_ips: Vec<String>,
    /// The host end of the [`Pod::cni_veth`] pair.
    pub host_veth: Option<String>,
}

impl CreatedPod {
    /// All instances of a container, oldest first.
    pub fn instances(&self, container: &str) -> &[CreatedInstance] {
        self.containers
            .iter()
            .find(|(n, _)| n == container)
            .map(|(_, v)| v.as_slice())
            .unwrap_or_else(|| panic!("pod {} has no container {container}", self.name))
    }
    /// The newest instance's container ID.
    pub fn current(&self, container: &str) -> &str {
        &self.instances(container).last().expect("an instance").id
    }
    /// The second-newest instance's container ID.
    pub fn previous(&self, container: &str) -> &str {
        let v = self.instances(container);
        assert!(v.len() >= 2, "container {container} has one instance only");
        &v[v.len() - 2].id
    }
    /// The container ID of the instance with this attempt number.
    pub fn instance(&self, container: &str, attempt: u32) -> &str {
        &self
            .instances(container)
            .iter()
            .find(|i| i.attempt == attempt)
            .unwrap_or_else(|| panic!("container {container} has no attempt {attempt}"))
            .id
    }
}

/// One test's view of the node: a Docker connection, a private kubelet root directory and
/// unique namespaces. Dropping it force-removes every container of its namespaces and the
/// directory (best effort).
pub struct Node {
    pub docker: Docker,
    pub suffix: String,
    /// Temporary directory of this test; holds `kubelet/` and `host/`.
    pub dir: PathBuf,
    /// The kubelet root (`--root-dir`) the pods are laid out under.
    pub kubelet_root: PathBuf,
    namespaces: Mutex<Vec<String>>,
    /// Containers made outside the kubelet's layout ([`Node::run_plain`]), removed on drop.
    plain_containers: Mutex<Vec<String>>,
    /// Host ends of CNI veth pairs, deleted on drop.
    host_veths: Mutex<Vec<String>>,
}

impl Node {
    /// Connects to the daemon (panics if none answers) and makes a fresh kubelet root.
    pub async fn new() -> Self {
        let docker = util::connect_docker().await;
        let suffix = util::random_hex(8);
        let dir = std::env::temp_dir().join(format!("pdc-test-{suffix}"));
        let kubelet_root = dir.join("kubelet");
        std::fs::create_dir_all(kubelet_root.join("pods")).expect("create kubelet root");
        std::fs::create_dir_all(dir.join("host")).expect("create host dir");
        Self {
            docker,
            suffix,
            dir,
            kubelet_root,
            namespaces: Mutex::new(Vec::new()),
            plain_containers: Mutex::new(Vec::new()),
            host_veths: Mutex::new(Vec::new()),
        }
    }

    /// A namespace unique to this test: `<base>-<random suffix>`; cleaned up on drop.
    pub fn ns(&self, base: &str) -> String {
        let ns = format!("{base}-{}", self.suffix);
        let mut list = self.namespaces.lock().unwrap();
        if !list.contains(&ns) {
            list.push(ns.clone());
        }
        ns
    }

    /// A directory for hostPath volumes, outside the kubelet root.
    pub fn host_dir(&self) -> PathBuf {
        self.dir.join("host")
    }

    /// Creates the pod's sandbox and container instances like the kubelet, waiting for each
    /// instance to settle (running, exited, or just created).
    pub async fn run(&self, pod: Pod) -> CreatedPod {
        {
            let mut list = self.namespaces.lock().unwrap();
            if !list.contains(&pod.namespace) {
                list.push(pod.namespace.clone());
            }
        }
        let docker = &self.docker;
        let pod_name = &pod.name;
        let ns = &pod.namespace;

        // Static pods: UID = config hash (the kubelet hashes the manifest).
        let config_hash = format!(
            "{:016x}{:016x}",
            util::fnv64(&[ns, pod_name, "manifest"]),
            util::fnv64(&[pod_name, ns, &self.suffix])
        );
        let uid = match (&pod.uid, pod.static_pod) {
            (Some(u), _) => u.clone(),
            (None, true) => config_hash.clone(),
            (None, false) => util::random_uuid(),
        };
        let pod_dir = self.kubelet_root.join("pods").join(&uid);
        std::fs::create_dir_all(pod_dir.join("containers")).expect("pod dir");
        std::fs::create_dir_all(pod_dir.join("volumes")).expect("pod volumes dir");

        // /etc/hosts the kubelet manages.
        let etc_hosts = pod_dir.join("etc-hosts");
        std::fs::write(
            &etc_hosts,
            format!(
                "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{pod_name}\n"
            ),
        )
        .expect("write etc-hosts");

        // Volumes.
        for v in &pod.volumes {
            let src = v.host_source(&self.kubelet_root, &uid);
            if !src.exists() {
                std::fs::create_dir_all(&src).expect("volume dir");
            }
            if matches!(v.source, VolumeSource::Secret | VolumeSource::ConfigMap) {
                let _ = std::fs::write(src.join("key"), "value");
            }
        }

        // Annotations the kubelet adds on the sandbox.
        let mut annotations: Vec<(String, String)> = pod.annotations.clone();
        annotations.push(("kubernetes.io/config.seen".into(), util::now_rfc3339_nano()));
        annotations.push((
            "kubernetes.io/config.source".into(),
            if pod.static_pod { "file" } else { "api" }.into(),
        ));
        if pod.static_pod {
            annotations.push(("kubernetes.io/config.hash".into(), config_hash.clone()));
        }

        let cgroup_parent = pod.cgroup_parent(&uid);

        // --- sandbox ---------------------------------------------------------------------
        let labels = sandbox_labels(&pod, &uid, &annotations);

        let clash = || {
            if pod.name_clash_suffix {
                format!("_{}", util::random_hex(8))
            } else {
                String::new()
            }
        };
        let sandbox_name = format!(
            "k8s_POD_{pod_name}_{ns}_{uid}_{}{}",
            pod.sandbox_attempt,
            clash()
        );
        let sandbox_body = ContainerCreateBody {
            image: Some(pod.sandbox_image.clone().unwrap_or_else(util::pause_image)),
            hostname: if pod.host_network {
                None
            } else {
                Some(pod_name.clone())
            },
            labels: Some(labels),
            host_config: Some(HostConfig {
                network_mode: Some(if pod.host_network { "host" } else { "none" }.into()),
                // Docker 20.10 makes IPC private by default; the sandbox must be shareable so
                // the app containers can join it.
                ipc_mode: Some(if pod.host_ipc { "host" } else { "shareable" }.into()),
                pid_mode: pod.host_pid.then(|| "host".to_string()),
                cgroup_parent: Some(cgroup_parent.clone()),
                cpu_shares: Some(2),
                // OomScoreAdj -998 left out: these machines refuse negative values.
                restart_policy: Some(RestartPolicy {
                    name: Some(RestartPolicyNameEnum::NO),
                    maximum_retry_count: None,
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let sandbox_id = create(docker, &sandbox_name, sandbox_body).await;
        docker
            .start_container(&sandbox_id, None)
            .await
            .unwrap_or_else(|e| panic!("start sandbox {sandbox_name}: {e}"));
        let sandbox = util::wait_status(
            docker,
            &sandbox_id,
            &[ContainerStateStatusEnum::RUNNING],
            WAIT,
        )
        .await;
        if let Some(cidr) = &pod.pod_ip {
            assert!(!pod.host_network, "a hostNetwork pod gets no CNI address");
            let pid = sandbox
                .state
                .as_ref()
                .and_then(|s| s.pid)
                .expect("sandbox pid");
            cni_add(pid, cidr);
        }
        let mut cni_ips = Vec::new();
        let mut host_veth = None;
        if let Some(cni) = &pod.cni {
            assert!(!pod.host_network, "a hostNetwork pod gets no CNI address");
            let pid = sandbox
                .state
                .as_ref()
                .and_then(|s| s.pid)
                .expect("sandbox pid");
            let host_end = format!("pdc{}", util::random_hex(8));
            self.host_veths.lock().unwrap().push(host_end.clone());
            cni_ips = cni_veth(pid, &host_end, cni);
            host_veth = Some(host_end);
        }

        // --- app containers ----------------------------------------------------------------
        let mut created = Vec::new();
        for c in &pod.containers {
            let image_ref = c.image.clone().unwrap_or_else(util::app_image);
            let image_id = docker
                .inspect_image(&image_ref)
                .await
                .unwrap_or_else(|e| {
                    panic!("test image {image_ref} is missing ({e}); run scripts/test to build it")
                })
                .id
                .expect("image id");
            let hash = c.spec_hash(&image_ref);
            let container_dir = pod_dir.join("containers").join(&c.name);
            std::fs::create_dir_all(&container_dir).expect("container dir");

            let mut instances = Vec::new();
            for (i, inst) in c.instances_or_default().into_iter().enumerate() {
                let attempt = c.first_attempt + i as u32;
                // The kubelet makes a new termination-log file per instance.
                let termination_log = container_dir.join(util::random_hex(8));
                std::fs::write(&termination_log, "").expect("termination log file");
                set_mode_666(&termination_log);

                let labels = container_labels(&pod, c, &uid, attempt, &hash, &sandbox_id);

                let (entrypoint, cmd) = inst.process(c);

                let binds = container_binds(
                    &pod,
                    c,
                    &self.kubelet_root,
                    &uid,
                    &etc_hosts,
                    &termination_log,
                );
                let body = ContainerCreateBody {
                    image: Some(image_id.clone()),
                    entrypoint,
                    cmd,
                    env: Some(c.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
                    working_dir: c.working_dir.clone(),
                    labels: Some(labels),
                    healthcheck: Some(HealthConfig {
                        test: Some(vec!["NONE".into()]),
                        ..Default::default()
                    }),
                    host_config: Some(container_host_config(
                        &pod,
                        c,
                        &sandbox_id,
                        &cgroup_parent,
                        binds,
                    )),
                    ..Default::default()
                };
                let name = format!("k8s_{}_{pod_name}_{ns}_{uid}_{attempt}{}", c.name, clash());
                let id = create(docker, &name, body).await;
                settle(docker, &id, &name, &inst).await;
                instances.push(CreatedInstance {
                    attempt,
                    id,
                    instance: inst,
                    termination_log,
                });
            }
            created.push((c.name.clone(), instances));
        }

        if pod.finished {
            // The kubelet stops the sandbox of a finished pod.
            docker
                .stop_container(
                    &sandbox_id,
                    Some(StopContainerOptions {
                        t: Some(10),
                        ..Default::default()
                    }),
                )
                .await
                .unwrap_or_else(|e| panic!("stop sandbox {sandbox_name}: {e}"));
            util::wait_status(
                docker,
                &sandbox_id,
                &[ContainerStateStatusEnum::EXITED],
                WAIT,
            )
            .await;
        }

        CreatedPod {
            namespace: ns.clone(),
            name: pod_name.clone(),
            uid,
            sandbox_id,
            containers: created,
            annotations: annotations.into_iter().collect(),
            cni_ips,
            host_veth,
            pod,
        }
    }

    /// Runs a container that is not the kubelet's (no pod layout; only the labels given), from
    /// the test app image with `--network none`: running (`exit_code` `None`, the image's
    /// `sleep`) or exited with that code. Removed when the node is dropped. Returns its ID.
    pub async fn run_plain(
        &self,
        name: &str,
        labels: &[(&str, &str)],
        exit_code: Option<i64>,
    ) -> String {
        let name = format!("{name}-{}", self.suffix);
        let body = ContainerCreateBody {
            image: Some(util::app_image()),
            entrypoint: exit_code
                .map(|code| vec!["sh".into(), "-c".into(), format!("exit {code}")]),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            host_config: Some(HostConfig {
                network_mode: Some("none".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let id = create(&self.docker, &name, body).await;
        self.plain_containers.lock().unwrap().push(id.clone());
        self.docker
            .start_container(&id, None)
            .await
            .unwrap_or_else(|e| panic!("start container {name}: {e}"));
        let wanted = if exit_code.is_some() {
            ContainerStateStatusEnum::EXITED
        } else {
            ContainerStateStatusEnum::RUNNING
        };
        util::wait_status(&self.docker, &id, &[wanted], WAIT).await;
        id
    }

    /// Stops a running container (e.g. a sandbox) and waits until it has exited.
    pub async fn stop(&self, id: &str) {
        self.docker
            .stop_container(
                id,
                Some(StopContainerOptions {
                    t: Some(10),
                    ..Default::default()
                }),
            )
            .await
            .unwrap_or_else(|e| panic!("stop {id}: {e}"));
        util::wait_status(&self.docker, id, &[ContainerStateStatusEnum::EXITED], WAIT).await;
    }
}

impl Instance {
    /// Entrypoint and Cmd of the instance: the spec's command/args for instances that run or
    /// wait; a process that surely behaves as asked for the ones that end.
    pub(super) fn process(&self, c: &Container) -> (Option<Vec<String>>, Option<Vec<String>>) {
        let sh = |script: String, extra: &[&str]| {
            let mut v = vec!["sh".to_string(), "-c".to_string(), script];
            v.extend(extra.iter().map(|s| s.to_string()));
            (Some(v), None)
        };
        match self {
            Instance::Running | Instance::Created => (c.command.clone(), c.args.clone()),
            Instance::Exit(code) => sh(format!("exit {code}"), &[]),
            Instance::ExitWithMessage(code, msg) => sh(
                format!("printf '%s' \"$1\" > /dev/termination-log; exit {code}"),
                &["sh", msg],
            ),
            Instance::OomKilled => (Some(vec!["tail".into(), "/dev/zero".into()]), None),
            Instance::CannotRun => (Some(vec![MISSING_COMMAND.into()]), None),
        }
    }
}

/// Sandbox labels: the pod's labels verbatim, its annotations as `annotation.<key>`, and the
/// kubelet's identity labels.
fn sandbox_labels(
    pod: &Pod,
    uid: &str,
    annotations: &[(String, String)],
) -> HashMap<String, String> {
    let mut labels: HashMap<String, String> = pod.labels.iter().cloned().collect();
    for (k, v) in annotations {
        labels.insert(format!("annotation.{k}"), v.clone());
    }
    labels.insert("io.kubernetes.pod.name".into(), pod.name.clone());
    labels.insert("io.kubernetes.pod.namespace".into(), pod.namespace.clone());
    labels.insert("io.kubernetes.pod.uid".into(), uid.to_string());
    labels.insert("io.kubernetes.container.name".into(), "POD".into());
    labels.insert("io.kubernetes.docker.type".into(), "podsandbox".into());
    labels
}

/// Labels of a container instance: identity, the kubelet's container annotations as
/// `annotation.<key>`, type, log path and sandbox ID.
fn container_labels(
    pod: &Pod,
    c: &Container,
    uid: &str,
    attempt: u32,
    hash: &str,
    sandbox_id: &str,
) -> HashMap<String, String> {
    let (ns, pod_name) = (&pod.namespace, &pod.name);
    let mut labels: HashMap<String, String> = HashMap::new();
    labels.insert("io.kubernetes.container.name".into(), c.name.clone());
    labels.insert("io.kubernetes.pod.name".into(), pod_name.clone());
    labels.insert("io.kubernetes.pod.namespace".into(), ns.clone());
    labels.insert("io.kubernetes.pod.uid".into(), uid.to_string());
    let mut ann: Vec<(&str, String)> = vec![
        ("io.kubernetes.container.hash", hash.to_string()),
        ("io.kubernetes.container.restartCount", attempt.to_string()),
        (
            "io.kubernetes.container.terminationMessagePath",
            "/dev/termination-log".into(),
        ),
        (
            "io.kubernetes.container.terminationMessagePolicy",
            "File".into(),
        ),
        (
            "io.kubernetes.pod.terminationGracePeriod",
            pod.termination_grace_period.to_string(),
        ),
    ];
    if !c.ports.is_empty() {
        ann.push(("io.kubernetes.container.ports", c.ports_json()));
    }
    if let Some(t) = &c.container_type {
        ann.push(("io.kubernetes.container.type", t.clone()));
    }
    for (k, v) in ann {
        labels.insert(format!("annotation.{k}"), v);
    }
    for (k, v) in &c.raw_annotations {
        labels.insert(format!("annotation.{k}"), v.clone());
    }
    labels.insert("io.kubernetes.docker.type".into(), "container".into());
    labels.insert(
        "io.kubernetes.container.logpath".into(),
        format!(
            "/var/log/pods/{ns}_{pod_name}_{uid}/{}/{attempt}.log",
            c.name
        ),
    );
    labels.insert("io.kubernetes.sandbox.id".into(), sandbox_id.to_string());
    labels
}

/// Bind mounts of a container instance, as dockershim's `GenerateMountBindings`: the
/// volumes, the kubelet's `/etc/hosts`, and the termination-log file.
fn container_binds(
    pod: &Pod,
    c: &Container,
    kubelet_root: &Path,
    uid: &str,
    etc_hosts: &Path,
    termination_log: &Path,
) -> Vec<String> {
    let mut binds = Vec::new();
    for m in &c.mounts {
        let v = pod
            .volumes
            .iter()
            .find(|v| v.name == m.volume)
            .unwrap_or_else(|| panic!("pod has no volume {}", m.volume));
        let mut src = v.host_source(kubelet_root, uid);
        if let Some(sub) = &m.sub_path {
            // The kubelet makes the path inside the volume, then binds it at its own place.
            let _ = std::fs::create_dir_all(src.join(sub));
            let index = c
                .mounts
                .iter()
                .position(|x| std::ptr::eq(x, m))
                .expect("mount of this container");
            src = kubelet_root
                .join("pods")
                .join(uid)
                .join("volume-subpaths")
                .join(&v.name)
                .join(&c.name)
                .join(index.to_string());
            std::fs::create_dir_all(&src).expect("volume-subpaths dir");
        }
        let mut b = format!("{}:{}", src.display(), m.mount_path);
        if m.read_only {
            b.push_str(":ro");
        }
        binds.push(b);
    }
    if !c.mounts.iter().any(|m| m.mount_path == "/etc/hosts") {
        binds.push(format!("{}:/etc/hosts", etc_hosts.display()));
    }
    binds.push(format!(
        "{}:/dev/termination-log",
        termination_log.display()
    ));
    binds
}

/// HostConfig of a container instance: the sandbox's namespaces, the pod's cgroup, the
/// kubelet's resource conversion.
fn container_host_config(
    pod: &Pod,
    c: &Container,
    sandbox_id: &str,
    cgroup_parent: &str,
    binds: Vec<String>,
) -> HostConfig {
    let sandbox_ns = format!("container:{sandbox_id}");
    HostConfig {
        binds: Some(binds),
        restart_policy: Some(RestartPolicy {
            name: Some(RestartPolicyNameEnum::NO),
            maximum_retry_count: None,
        }),
        // dockershim joins the sandbox's namespaces even for hostNetwork pods (the sandbox
        // itself is on the host network), and shares the host's UTS namespace then.
        network_mode: Some(sandbox_ns.clone()),
        ipc_mode: Some(sandbox_ns),
        uts_mode: pod.host_network.then(|| "host".to_string()),
        pid_mode: pod.host_pid.then(|| "host".to_string()),
        cgroup_parent: Some(cgroup_parent.to_string()),
        cpu_shares: Some(c.cpu_shares()),
        cpu_quota: (c.cpu_quota() > 0).then(|| c.cpu_quota()),
        cpu_period: Some(CPU_PERIOD),
        memory: c.memory_limit,
        memory_swap: c.memory_limit,
        oom_score_adj: pod.container_oom_score_adj(c),
        privileged: c.privileged.then_some(true),
        ..Default::default()
    }
}

async fn create(docker: &Docker, name: &str, body: ContainerCreateBody) -> String {
    docker
        .create_container(
            Some(CreateContainerOptions {
                name: Some(name.to_string()),
                ..Default::default()
            }),
            body,
        )
        .await
        .unwrap_or_else(|e| panic!("create container {name}: {e}"))
        .id
}

/// Starts the instance (unless it is `Created`) and waits until it is in its final state.
async fn settle(docker: &Docker, id: &str, name: &str, inst: &Instance) {
    use ContainerStateStatusEnum::{CREATED, EXITED, RUNNING};
    if *inst == Instance::Created {
        util::wait_status(docker, id, &[CREATED], WAIT).await;
        return;
    }
    if *inst == Instance::CannotRun {
        let started = docker.start_container(id, None).await;
        assert!(
            started.is_err(),
            "container {name} was meant to fail to start"
        );
        let c = util::wait_status(docker, id, &[CREATED, EXITED], WAIT).await;
        let st = c.state.as_ref().expect("state");
        assert_ne!(st.exit_code, Some(0), "container {name}: {st:?}");
        return;
    }
    docker
        .start_container(id, None)
        .await
        .unwrap_or_else(|e| panic!("start container {name}: {e}"));
    match inst {
        Instance::Running => {
            let c = util::wait_status(docker, id, &[RUNNING, EXITED], WAIT).await;
            assert_eq!(
                util::status_of(&c),
                Some(RUNNING),
                "container {name} was meant to keep running but exited: {:?}",
                c.state
            );
        }
        Instance::Exit(code) | Instance::ExitWithMessage(code, _) => {
            let c = util::wait_status(docker, id, &[EXITED], WAIT).await;
            let got = c.state.as_ref().and_then(|s| s.exit_code);
            assert_eq!(got, Some(*code), "container {name} exit code");
        }
        Instance::OomKilled => {
            let mut c = util::wait_status(docker, id, &[EXITED], WAIT).await;
            // Docker learns of the OOM kill from its own event, which may be handled just
            // after the exit: give the flag a moment to be set.
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while c.state.as_ref().and_then(|s| s.oom_killed) != Some(true)
                && std::time::Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
                c = util::inspect(docker, id).await;
            }
            let st = c.state.as_ref().expect("state");
            assert_eq!(
                st.oom_killed,
                Some(true),
                "container {name} was meant to be OOM-killed: {st:?}"
            );
        }
        Instance::Created | Instance::CannotRun => unreachable!(),
    }
}

/// Adds `eth0` with this address inside the network namespace of `pid`, as a CNI plugin
/// would (with `nsenter` and `ip` from util-linux and iproute2). Nothing leaves the namespace:
/// both ends of the veth stay inside it.
fn cni_add(pid: i64, cidr: &str) {
    let pid = pid.to_string();
    let steps: [&[&str]; 4] = [
        &[
            "link", "add", "eth0", "type", "veth", "peer", "name", "cni-peer",
        ],
        &["addr", "add", cidr, "dev", "eth0"],
        &["link", "set", "cni-peer", "up"],
        &["link", "set", "eth0", "up"],
    ];
    for args in steps {
        let out = std::process::Command::new("nsenter")
            .args(["-t", &pid, "-n", "ip"])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("run nsenter/ip (util-linux, iproute2): {e}"));
        assert!(
            out.status.success(),
            "ip {args:?} in the sandbox's network namespace: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Runs `ip` in the host's network namespace, or in the one of `pid`.
fn ip_in(pid: Option<&str>, args: &[&str]) -> std::process::Output {
    let mut cmd = match pid {
        Some(pid) => {
            let mut c = std::process::Command::new("nsenter");
            c.args(["-t", pid, "-n", "ip"]);
            c
        }
        None => std::process::Command::new("ip"),
    };
    cmd.args(args)
        .output()
        .unwrap_or_else(|e| panic!("run ip (iproute2) / nsenter (util-linux): {e}"))
}

fn must_ip(pid: Option<&str>, args: &[&str]) {
    let out = ip_in(pid, args);
    assert!(
        out.status.success(),
        "ip {args:?} (network namespace of {}): {}",
        pid.unwrap_or("the host"),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The CNI bridge/ptp plugins' way: a veth pair made in the host namespace, the peer moved into
/// the sandbox's namespace and renamed `eth0`, addresses added there. The host end stays down.
/// Returns the addresses added, without prefix length.
fn cni_veth(pid: i64, host_end: &str, cni: &CniAddresses) -> Vec<String> {
    let pid = pid.to_string();
    let peer = format!("{host_end}p");
    must_ip(
        None,
        &[
            "link", "add", host_end, "type", "veth", "peer", "name", &peer,
        ],
    );
    must_ip(None, &["link", "set", &peer, "netns", &pid]);
    must_ip(Some(&pid), &["link", "set", &peer, "name", "eth0"]);
    must_ip(Some(&pid), &["addr", "add", &cni.ipv4, "dev", "eth0"]);
    must_ip(Some(&pid), &["link", "set", "eth0", "up"]);
    let bare = |cidr: &str| cidr.split('/').next().unwrap_or(cidr).to_string();
    let mut ips = vec![bare(&cni.ipv4)];
    if let Some(v6) = &cni.ipv6 {
        // A new namespace may start with IPv6 off on new links; a CNI plugin turns it on.
        let enabled = std::process::Command::new("nsenter")
            .args(["-t", &pid, "-n", "sh", "-c"])
            .arg("echo 0 > /proc/sys/net/ipv6/conf/eth0/disable_ipv6")
            .output()
            .is_ok_and(|o| o.status.success());
        if enabled
            && ip_in(
                Some(&pid),
                &["-6", "addr", "add", v6, "dev", "eth0", "nodad"],
            )
            .status
            .success()
        {
            ips.push(bare(v6));
        } else {
            eprintln!("IPv6 cannot be enabled in the sandbox's network namespace: IPv4 only");
        }
    }
    ips
}

fn set_mode_666(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666));
}

/// Force-removes every container of these namespaces (all states). Best effort.
pub async fn remove_namespaces(docker: &Docker, namespaces: &[String]) {
    for ns in namespaces {
        let filters = HashMap::from([(
            "label".to_string(),
            vec![format!("io.kubernetes.pod.namespace={ns}")],
        )]);
        let Ok(list) = docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(filters),
                ..Default::default()
            }))
            .await
        else {
            continue;
        };
        for c in list {
            if let Some(id) = c.id {
                let _ = docker
                    .remove_container(
                        &id,
                        Some(RemoveContainerOptions {
                            force: true,
                            v: true,
                            ..Default::default()
                        }),
                    )
                    .await;
            }
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let namespaces = self
            .namespaces
            .lock()
            .map(|l| l.clone())
            .unwrap_or_default();
        let dir = self.dir.clone();
        let plain = self
            .plain_containers
            .lock()
            .map(|l| l.clone())
            .unwrap_or_default();
        let veths = self
            .host_veths
            .lock()
            .map(|l| l.clone())
            .unwrap_or_default();
        if std::env::var_os("PDC_TEST_KEEP").is_some() {
            eprintln!(
                "PDC_TEST_KEEP set: leaving namespaces {namespaces:?} and {}",
                dir.display()
            );
            return;
        }
        // Drop cannot await, and may run inside the test's runtime: clean up on a thread with
        // its own runtime and connection.
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                rt.block_on(async {
                    let host = util::docker_host();
                    if let Ok(d) = Docker::connect_with_host(&host)
                        && let Ok(d) = d.negotiate_version().await
                    {
                        remove_namespaces(&d, &namespaces).await;
                        for id in &plain {
                            let _ = d
                                .remove_container(
                                    id,
                                    Some(RemoveContainerOptions {
                                        force: true,
                                        v: true,
                                        ..Default::default()
                                    }),
                                )
                                .await;
                        }
                    }
                });
            }
            // Removing the sandbox removes its namespace and with it the pair; a host end
            // whose sandbox is kept somehow goes here.
            for veth in &veths {
                if ip_in(None, &["link", "show", veth]).status.success() {
                    let _ = ip_in(None, &["link", "del", veth]);
                }
            }
            let _ = std::fs::remove_dir_all(&dir);
        })
        .join();
    }
}
