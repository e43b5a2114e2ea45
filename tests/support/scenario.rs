//! The pod scenarios the tests describe, independent of the runtime they are laid out on: a
//! [`Pod`] with its [`Container`]s, each with the [`Instance`]s (attempts) to create in order,
//! its [`Volume`]s and [`Port`]s; and what laying one out gave back ([`CreatedPod`],
//! [`CreatedInstance`]).
//!
//! The same description is laid out on Docker by [`super::docker::Node`] and over CRI by
//! [`super::cri::CriNode`]; the kubelet rules both apply to it (QoS class, cgroup parent,
//! resources, annotations, host paths, …) are in [`super::kubelet`].
//!
//! This is test code: the product itself never creates containers.

use std::collections::HashMap;
use std::path::PathBuf;

/// 16 MiB: small enough for `tail /dev/zero` to be OOM-killed in well under a second.
pub const OOM_MEMORY_LIMIT: i64 = 16 * 1024 * 1024;

/// What one instance (one container of the runtime, one attempt) of a container does.
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
    /// Like `Exit`, and writes these lines to its stderr (its log) before exiting; the
    /// termination-log file stays empty.
    ExitWithLog(i64, Vec<String>),
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
    /// `terminationMessagePolicy`: `File` (default) or `FallbackToLogsOnError`.
    pub termination_message_policy: String,
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
            termination_message_policy: "File".to_string(),
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
    /// `terminationMessagePolicy: FallbackToLogsOnError`: a failed instance with an empty
    /// termination-log file shows its log's tail.
    pub fn fallback_to_logs_on_error(mut self) -> Self {
        self.termination_message_policy = "FallbackToLogsOnError".to_string();
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
    /// The containers' first instances are created back to back, then started, and only then
    /// waited for, as the kubelet creates a pod's regular containers together.
    pub created_together: bool,
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
            created_together: false,
        }
    }
    /// Creates every container's first instance back to back, then starts them, and only
    /// then waits for them (the kubelet's regular containers, created together); each
    /// container then has that one instance only.
    pub fn containers_created_together(mut self) -> Self {
        self.created_together = true;
        self
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
    /// deleted when the [`super::docker::Node`] is dropped. Not for hostNetwork pods.
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

/// What laying a [`Pod`] out created ([`super::docker::Node::run`], and inside
/// [`super::cri::CriPod`]).
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
