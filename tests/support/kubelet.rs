//! The kubelet's rules both layouts share ([`super::docker`] lays pods out on Docker as
//! dockershim does, [`super::cri`] over CRI as kuberuntime does): what it computes from a
//! [`Pod`] description (QoS class, cgroup parent, OOM score adjustment, CPU shares and quota,
//! the ports annotation, the container hash, the process an instance runs) and what it
//! prepares on the node before and while it asks the runtime (the pod's UID, its directory
//! under the kubelet root with `etc-hosts` and the volumes, the sandbox and container
//! annotations, the identity labels, the mounts, a termination-log file per instance).
//!
//! The scenario builders themselves live in [`super::scenario`]; their names are re-exported
//! here too, so `support::kubelet::MISSING_COMMAND` and the like keep working.
//!
//! This is test code: the product itself never creates containers.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::util;

// Not every test crate that includes this module uses every name.
#[allow(unused_imports)]
pub use super::scenario::{
    CniAddresses, Container, CreatedInstance, CreatedPod, Instance, MISSING_COMMAND,
    OOM_MEMORY_LIMIT, Pod, Port, Volume, VolumeMount, VolumeSource,
};

/// The kubelet's CFS period (µs).
pub const CPU_PERIOD: i64 = 100_000;

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

impl Pod {
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

    /// The kubelet's `qos.GetContainerOOMScoreAdjust` for a container of this pod (the
    /// runtime may refuse or clamp it).
    pub fn oom_score_adj(&self, c: &Container) -> i64 {
        match self.qos() {
            Qos::Guaranteed => -997,
            Qos::BestEffort => 1000,
            Qos::Burstable => {
                let req = c.effective_memory_request().unwrap_or(0);
                let adj = 1000 - (1000 * req) / memory_capacity();
                if adj < 3 {
                    3
                } else if adj == 1000 {
                    999
                } else {
                    adj
                }
            }
        }
    }
}

/// The node's memory (`MemTotal`), what the Burstable OOM score is relative to.
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

impl Container {
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
            Instance::ExitWithLog(code, lines) => sh(
                format!("printf '%s\\n' \"$@\" >&2; exit {code}"),
                &std::iter::once("sh")
                    .chain(lines.iter().map(String::as_str))
                    .collect::<Vec<_>>(),
            ),
            Instance::OomKilled => (Some(vec!["tail".into(), "/dev/zero".into()]), None),
            Instance::CannotRun => (Some(vec![MISSING_COMMAND.into()]), None),
        }
    }
}

impl Volume {
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

/// What the kubelet has made on the node for a pod before it asks the runtime for the sandbox:
/// the UID, the pod directory with `etc-hosts` and the volumes, and the sandbox's annotations.
#[derive(Clone, Debug)]
pub struct PodSetup {
    pub uid: String,
    /// `<kubelet root>/pods/<uid>`.
    pub pod_dir: PathBuf,
    /// The `/etc/hosts` the kubelet manages for the pod (`<pod dir>/etc-hosts`).
    pub etc_hosts: PathBuf,
    /// The pod's annotations, then the ones the kubelet's config layer adds
    /// (`kubernetes.io/config.{seen,source,hash}`); a later pair wins over an earlier one.
    pub annotations: Vec<(String, String)>,
}

impl PodSetup {
    /// Gives the pod its UID and lays out `<kubelet_root>/pods/<uid>`: `containers/`,
    /// `volumes/`, `etc-hosts`, and each volume's host side. `node_suffix` keeps a static pod's
    /// config hash (its UID) apart from the same manifest on another test's node.
    pub fn prepare(pod: &Pod, kubelet_root: &Path, node_suffix: &str) -> Self {
        let config_hash = config_hash(pod, node_suffix);
        let uid = match (&pod.uid, pod.static_pod) {
            (Some(u), _) => u.clone(),
            (None, true) => config_hash.clone(),
            (None, false) => util::random_uuid(),
        };
        let pod_dir = kubelet_root.join("pods").join(&uid);
        std::fs::create_dir_all(pod_dir.join("containers")).expect("pod dir");
        std::fs::create_dir_all(pod_dir.join("volumes")).expect("pod volumes dir");
        let etc_hosts = write_etc_hosts(&pod_dir, &pod.name);
        prepare_volumes(pod, kubelet_root, &uid);
        let annotations = sandbox_annotations(pod, &config_hash);
        Self {
            uid,
            pod_dir,
            etc_hosts,
            annotations,
        }
    }

    /// `<pod dir>/containers/<name>`, made when missing: where the container's termination-log
    /// files go.
    pub fn container_dir(&self, c: &Container) -> PathBuf {
        let dir = self.pod_dir.join("containers").join(&c.name);
        std::fs::create_dir_all(&dir).expect("container dir");
        dir
    }
}

/// A static pod's `kubernetes.io/config.hash` (the kubelet hashes the manifest), which is also
/// its UID.
fn config_hash(pod: &Pod, node_suffix: &str) -> String {
    let (ns, pod_name) = (&pod.namespace, &pod.name);
    format!(
        "{:016x}{:016x}",
        util::fnv64(&[ns, pod_name, "manifest"]),
        util::fnv64(&[pod_name, ns, node_suffix])
    )
}

/// Writes the `/etc/hosts` the kubelet manages for the pod.
fn write_etc_hosts(pod_dir: &Path, pod_name: &str) -> PathBuf {
    let etc_hosts = pod_dir.join("etc-hosts");
    std::fs::write(
        &etc_hosts,
        format!(
            "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{pod_name}\n"
        ),
    )
    .expect("write etc-hosts");
    etc_hosts
}

/// Makes each volume's host side (a directory when missing); secrets and config maps get one
/// `key` file.
fn prepare_volumes(pod: &Pod, kubelet_root: &Path, uid: &str) {
    for v in &pod.volumes {
        let src = v.host_source(kubelet_root, uid);
        if !src.exists() {
            std::fs::create_dir_all(&src).expect("volume dir");
        }
        if matches!(v.source, VolumeSource::Secret | VolumeSource::ConfigMap) {
            let _ = std::fs::write(src.join("key"), "value");
        }
    }
}

/// The pod's annotations plus what the kubelet's config layer adds to them; the sandbox gets
/// these.
fn sandbox_annotations(pod: &Pod, config_hash: &str) -> Vec<(String, String)> {
    let mut annotations: Vec<(String, String)> = pod.annotations.clone();
    annotations.push(("kubernetes.io/config.seen".into(), util::now_rfc3339_nano()));
    annotations.push((
        "kubernetes.io/config.source".into(),
        if pod.static_pod { "file" } else { "api" }.into(),
    ));
    if pod.static_pod {
        annotations.push(("kubernetes.io/config.hash".into(), config_hash.to_string()));
    }
    annotations
}

/// Adds the kubelet's identity labels of the pod (`io.kubernetes.pod.{name,namespace,uid}`),
/// which its sandbox and every container carry.
pub fn insert_pod_identity(labels: &mut HashMap<String, String>, pod: &Pod, uid: &str) {
    labels.insert("io.kubernetes.pod.name".into(), pod.name.clone());
    labels.insert("io.kubernetes.pod.namespace".into(), pod.namespace.clone());
    labels.insert("io.kubernetes.pod.uid".into(), uid.to_string());
}

/// The kubelet's container annotations (`newContainerAnnotations`: hash, restartCount,
/// terminationMessagePath/Policy, terminationGracePeriod, ports and type when set), then the
/// container's raw ones; a later pair wins over an earlier one. Docker gets them as
/// `annotation.<key>` labels, CRI as annotations.
pub fn container_annotations(
    pod: &Pod,
    c: &Container,
    attempt: u32,
    hash: &str,
) -> Vec<(String, String)> {
    let mut ann: Vec<(String, String)> = vec![
        ("io.kubernetes.container.hash".into(), hash.to_string()),
        (
            "io.kubernetes.container.restartCount".into(),
            attempt.to_string(),
        ),
        (
            "io.kubernetes.container.terminationMessagePath".into(),
            "/dev/termination-log".into(),
        ),
        (
            "io.kubernetes.container.terminationMessagePolicy".into(),
            c.termination_message_policy.clone(),
        ),
        (
            "io.kubernetes.pod.terminationGracePeriod".into(),
            pod.termination_grace_period.to_string(),
        ),
    ];
    if !c.ports.is_empty() {
        ann.push(("io.kubernetes.container.ports".into(), c.ports_json()));
    }
    if let Some(t) = &c.container_type {
        ann.push(("io.kubernetes.container.type".into(), t.clone()));
    }
    ann.extend(c.raw_annotations.iter().cloned());
    ann
}

/// One mount of a container instance: a host path at a path in the container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostMount {
    pub container_path: String,
    pub host_path: PathBuf,
    pub read_only: bool,
}

/// The kubelet's mounts of a container instance (`makeMounts`; dockershim's
/// `GenerateMountBindings` writes the same as binds): the volume mounts, the pod's `/etc/hosts`
/// unless a volume is mounted there, and the termination-log file. A `subPath` mount makes the
/// path inside the volume and binds the kubelet's own
/// `<root>/pods/<uid>/volume-subpaths/<volume>/<container>/<index>` instead.
pub fn container_mounts(
    pod: &Pod,
    c: &Container,
    kubelet_root: &Path,
    uid: &str,
    etc_hosts: &Path,
    termination_log: &Path,
) -> Vec<HostMount> {
    let mount = |container_path: &str, host_path: PathBuf, read_only: bool| HostMount {
        container_path: container_path.to_string(),
        host_path,
        read_only,
    };
    let mut mounts = Vec::new();
    for (index, m) in c.mounts.iter().enumerate() {
        let v = pod
            .volumes
            .iter()
            .find(|v| v.name == m.volume)
            .unwrap_or_else(|| panic!("pod has no volume {}", m.volume));
        let mut src = v.host_source(kubelet_root, uid);
        if let Some(sub) = &m.sub_path {
            // The kubelet makes the path inside the volume, then binds it at its own place.
            let _ = std::fs::create_dir_all(src.join(sub));
            src = kubelet_root
                .join("pods")
                .join(uid)
                .join("volume-subpaths")
                .join(&v.name)
                .join(&c.name)
                .join(index.to_string());
            std::fs::create_dir_all(&src).expect("volume-subpaths dir");
        }
        mounts.push(mount(&m.mount_path, src, m.read_only));
    }
    if !c.mounts.iter().any(|m| m.mount_path == "/etc/hosts") {
        mounts.push(mount("/etc/hosts", etc_hosts.to_path_buf(), false));
    }
    mounts.push(mount(
        "/dev/termination-log",
        termination_log.to_path_buf(),
        false,
    ));
    mounts
}

/// Makes the empty termination-log file of a new instance in its container directory, mode
/// 0666, as the kubelet does for every instance.
pub fn new_termination_log(container_dir: &Path) -> PathBuf {
    let termination_log = container_dir.join(util::random_hex(8));
    std::fs::write(&termination_log, "").expect("termination log file");
    set_mode_666(&termination_log);
    termination_log
}

fn set_mode_666(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666));
}

impl Container {
    /// The container's `resources` as the API server stores them (requests defaulted to the
    /// limits), as JSON the way Go writes quantities (`100m`, `1`, `64Mi`).
    pub fn resources_json(&self) -> serde_json::Value {
        let cpu = |m: i64| {
            if m % 1000 == 0 {
                (m / 1000).to_string()
            } else {
                format!("{m}m")
            }
        };
        let mut requests = serde_json::Map::new();
        let mut limits = serde_json::Map::new();
        if let Some(m) = self.effective_cpu_request() {
            requests.insert("cpu".into(), cpu(m).into());
        }
        if let Some(bytes) = self.effective_memory_request() {
            requests.insert("memory".into(), memory_quantity(bytes).into());
        }
        if let Some(m) = self.cpu_limit_m {
            limits.insert("cpu".into(), cpu(m).into());
        }
        if let Some(bytes) = self.memory_limit {
            limits.insert("memory".into(), memory_quantity(bytes).into());
        }
        let mut resources = serde_json::Map::new();
        if !limits.is_empty() {
            resources.insert("limits".into(), limits.into());
        }
        if !requests.is_empty() {
            resources.insert("requests".into(), requests.into());
        }
        resources.into()
    }
}

/// Bytes as Go's `resource.Quantity` writes a binary amount: `64Mi`, `1Gi`, else plain.
fn memory_quantity(bytes: i64) -> String {
    for (suffix, unit) in [
        ("Ei", 60),
        ("Pi", 50),
        ("Ti", 40),
        ("Gi", 30),
        ("Mi", 20),
        ("Ki", 10),
    ] {
        let size = 1i64 << unit;
        if bytes % size == 0 {
            return format!("{}{suffix}", bytes / size);
        }
    }
    bytes.to_string()
}

/// Writes `<kubelet root>/allocated_pods_state` as a Kubernetes 1.34+ kubelet's checkpoint
/// manager does: `{"data": "<PodResourceCheckpointInfo JSON>", "checksum": N}`, N being
/// FNV-1a (32 bit) of `(string)` and the data (go-spew's `%#v` of a string), for every
/// container of these pods.
pub fn write_allocated_pods_state(kubelet_root: &Path, pods: &[(&str, &Pod)]) {
    let mut entries = serde_json::Map::new();
    for (uid, pod) in pods {
        let containers: serde_json::Map<String, serde_json::Value> = pod
            .containers
            .iter()
            .map(|c| (c.name.clone(), c.resources_json()))
            .collect();
        entries.insert(
            uid.to_string(),
            serde_json::json!({"ContainerResources": containers}),
        );
    }
    // Go's encoding/json writes map keys sorted, as serde_json's map does.
    let data = serde_json::json!({ "entries": entries }).to_string();
    let checksum = b"(string)"
        .iter()
        .chain(data.as_bytes())
        .fold(0x811c_9dc5_u32, |h, b| {
            (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
        });
    let file = serde_json::json!({"data": data, "checksum": u64::from(checksum)});
    std::fs::write(kubelet_root.join("allocated_pods_state"), file.to_string())
        .expect("write allocated_pods_state");
}
