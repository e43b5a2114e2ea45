//! A record kept for later in few bytes, for the caches of exited containers.
//!
//! A node keeps a few exited containers per pod (the previous instance, the init containers)
//! and each record is about 2 KiB of JSON, most of it the kubelet's own vocabulary: field
//! names, label and annotation keys, the paths it mounts. Compressed against a dictionary of
//! exactly that vocabulary, a record keeps a quarter to a third of its JSON in one allocation,
//! and is read back in a few microseconds.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use super::{
    ContainerId, EnvVar, ImageRef, Instance, Mount, NamespaceMode, PodRecord, Resources, Sandbox,
    SandboxState, State,
};
use crate::kubelet;

/// One record, compressed.
#[derive(Debug)]
pub struct Packed {
    bytes: Box<[u8]>,
}

impl Packed {
    pub fn new(record: &PodRecord) -> Option<Packed> {
        let json = serde_json::to_vec(record).ok()?;
        let bytes = lz4_flex::block::compress_prepend_size_with_dict(&json, dictionary());
        Some(Packed {
            bytes: bytes.into_boxed_slice(),
        })
    }

    pub fn unpack(&self) -> Option<PodRecord> {
        let json =
            lz4_flex::block::decompress_size_prepended_with_dict(&self.bytes, dictionary()).ok()?;
        serde_json::from_slice(&json).ok()
    }

    /// Bytes kept.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

/// The JSON of a made-up pod laid out as the kubelet lays pods out, a sandbox and an exited
/// container: what every cached record repeats. Made from the record types themselves, so it
/// follows them when a field is added.
fn dictionary() -> &'static [u8] {
    static DICTIONARY: OnceLock<Vec<u8>> = OnceLock::new();
    DICTIONARY.get_or_init(|| serde_json::to_vec(&typical_pod()).unwrap_or_default())
}

fn typical_pod() -> PodRecord {
    let uid = "00000000-0000-0000-0000-000000000000";
    let id = |runtime: &str| ContainerId {
        runtime: runtime.to_string(),
        id: "0".repeat(64),
    };
    let map = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect()
    };
    let identity = [
        (kubelet::POD_NAME_LABEL, "name"),
        (kubelet::POD_NAMESPACE_LABEL, "kube-system"),
        (kubelet::POD_UID_LABEL, uid),
    ];
    let pod_dir = format!("/var/lib/kubelet/pods/{uid}");
    let mount = |container_path: &str, host_path: String, read_only| Mount {
        container_path: container_path.to_string(),
        host_path,
        read_only,
    };
    let sandbox = Sandbox {
        id: id("docker"),
        attempt: Some(0),
        state: SandboxState::NotReady,
        labels: map(&[
            identity[0],
            identity[1],
            identity[2],
            ("io.kubernetes.docker.type", "podsandbox"),
            ("app.kubernetes.io/name", "name"),
            ("pod-template-hash", "0"),
        ]),
        annotations: map(&[
            (kubelet::CONFIG_SOURCE, "api"),
            (
                "kubernetes.io/config.seen",
                "2026-01-01T00:00:00.000000000Z",
            ),
        ]),
        network: NamespaceMode::Pod,
        cgroup_parent: Some(format!("/kubepods/burstable/pod{uid}")),
        ..Sandbox::default()
    };
    let instance = Instance {
        id: id("containerd"),
        name: "name".to_string(),
        attempt: Some(0),
        sandbox_id: Some(id("docker")),
        state: State::Exited {
            exit_code: 0,
            reason: Some("Completed".to_string()),
            message: None,
            started: None,
            finished: None,
        },
        image: ImageRef {
            spec: "registry.k8s.io/name:v1".to_string(),
            status: "registry.k8s.io/name:v1".to_string(),
            id: "docker://sha256:".to_string(),
        },
        labels: map(&[
            (
                "io.kubernetes.container.logpath",
                "/var/log/pods/kube-system_name_/name/0.log",
            ),
            (kubelet::CONTAINER_NAME_LABEL, "name"),
            ("io.kubernetes.docker.type", "container"),
            identity[0],
            identity[1],
            identity[2],
            ("io.kubernetes.sandbox.id", ""),
        ]),
        annotations: map(&[
            ("io.kubernetes.container.hash", "0"),
            (
                kubelet::PORTS,
                r#"[{"name":"http","containerPort":8080,"protocol":"TCP"}]"#,
            ),
            (kubelet::RESTART_COUNT, "0"),
            (kubelet::TERMINATION_MESSAGE_PATH, "/dev/termination-log"),
            (kubelet::TERMINATION_MESSAGE_POLICY, "File"),
            (kubelet::TERMINATION_GRACE_PERIOD, "30"),
        ]),
        mounts: vec![
            mount(
                "/var/run/secrets/kubernetes.io/serviceaccount",
                format!("{pod_dir}/volumes/kubernetes.io~projected/kube-api-access-0"),
                true,
            ),
            mount("/etc/hosts", format!("{pod_dir}/etc-hosts"), false),
            mount(
                "/dev/termination-log",
                format!("{pod_dir}/containers/name/0"),
                false,
            ),
        ],
        resources: Resources {
            cpu_shares: Some(2),
            cpu_quota: Some(0),
            cpu_period: Some(100000),
            memory_limit: Some(0),
            oom_score_adj: Some(1000),
        },
        cgroup_parent: Some(format!("/kubepods/burstable/pod{uid}")),
        command: Some(vec!["/bin/sh".to_string()]),
        args: Some(vec!["-c".to_string()]),
        env: vec![
            EnvVar {
                name: "KUBERNETES_SERVICE_HOST".to_string(),
                value: "10.96.0.1".to_string(),
            },
            EnvVar {
                name: "KUBERNETES_SERVICE_PORT".to_string(),
                value: "443".to_string(),
            },
        ],
        ..Instance::default()
    };
    PodRecord {
        sandboxes: vec![sandbox],
        containers: vec![instance],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_comes_back_as_it_was() {
        let record = typical_pod();
        let json = serde_json::to_vec(&record).unwrap();
        let back = Packed::new(&record).unwrap().unpack().unwrap();
        assert_eq!(serde_json::to_vec(&back).unwrap(), json);
    }

    #[test]
    fn damaged_bytes_read_back_as_nothing() {
        let mut packed = Packed::new(&typical_pod()).unwrap();
        let half = packed.bytes.len() / 2;
        packed.bytes = packed.bytes[..half].into();
        assert!(packed.unpack().is_none());
    }
}
