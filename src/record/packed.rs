//! A record kept for later in few bytes, for the caches of exited containers.
//!
//! A node keeps a few exited containers per pod (the previous instance, the init containers)
//! and each record is about 2 KiB of JSON, most of it the kubelet's own vocabulary: field
//! names, label and annotation keys, the paths it mounts. Compressed against a dictionary of
//! exactly that vocabulary, a record keeps about a third of its JSON, and is read back in a
//! few microseconds.

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::OnceLock;

use super::{
    ContainerId, EnvVar, ImageRef, Instance, Mount, NamespaceMode, PodRecord, Resources, Sandbox,
    SandboxState, State,
};
use crate::kubelet;

/// A record's JSON, compressed against the dictionary.
pub fn pack(record: &PodRecord) -> Option<Vec<u8>> {
    let json = serde_json::to_vec(record).ok()?;
    Some(lz4_flex::block::compress_prepend_size_with_dict(
        &json,
        dictionary(),
    ))
}

/// The record [`pack`] made these bytes from; `None` if they are not such bytes.
pub fn unpack(bytes: &[u8]) -> Option<PodRecord> {
    let json = lz4_flex::block::decompress_size_prepended_with_dict(bytes, dictionary()).ok()?;
    serde_json::from_slice(&json).ok()
}

/// Packed records by container ID, all in one block of memory.
///
/// A cache fills while requests come, so records kept one allocation each end up scattered
/// among the requests' short-lived blocks, and each pins its page of the heap after the load
/// is gone. Here every record, its ID and a tag (what its owner needs to find it by, such as
/// its pod) lie one after the other in one growing block; a removed one leaves a hole until
/// the holes are half the block, which is then written anew.
#[derive(Debug)]
pub struct Shelf<M> {
    bytes: Vec<u8>,
    entries: HashMap<u64, Slot<M>>,
    holes: usize,
}

#[derive(Debug)]
struct Slot<M> {
    start: usize,
    id_len: usize,
    tag_len: usize,
    len: usize,
    meta: M,
}

impl<M> Slot<M> {
    fn id<'a>(&self, bytes: &'a [u8]) -> &'a [u8] {
        &bytes[self.start..self.start + self.id_len]
    }

    fn tag<'a>(&self, bytes: &'a [u8]) -> &'a [u8] {
        let from = self.start + self.id_len;
        &bytes[from..from + self.tag_len]
    }

    fn record<'a>(&self, bytes: &'a [u8]) -> &'a [u8] {
        &bytes[self.start + self.id_len + self.tag_len..self.start + self.len]
    }
}

/// Holes are not worth a rewrite below this.
const REWRITE_FROM: usize = 32 * 1024;

impl<M> Default for Shelf<M> {
    fn default() -> Self {
        Shelf {
            bytes: Vec::new(),
            entries: HashMap::new(),
            holes: 0,
        }
    }
}

impl<M> Shelf<M> {
    /// Keeps `record` for container `id`, with what its owner files it under.
    pub fn insert(&mut self, id: &str, tag: &[u8], meta: M, record: &PodRecord) {
        let Some(packed) = pack(record) else {
            return;
        };
        self.remove(id);
        let start = self.bytes.len();
        self.bytes.extend_from_slice(id.as_bytes());
        self.bytes.extend_from_slice(tag);
        self.bytes.extend_from_slice(&packed);
        let slot = Slot {
            start,
            id_len: id.len(),
            tag_len: tag.len(),
            len: self.bytes.len() - start,
            meta,
        };
        // Another ID with the same key (never seen in practice) is simply replaced.
        if let Some(replaced) = self.entries.insert(key(id), slot) {
            self.holes += replaced.len;
        }
    }

    fn slot(&self, id: &str) -> Option<&Slot<M>> {
        self.entries
            .get(&key(id))
            .filter(|slot| slot.id(&self.bytes) == id.as_bytes())
    }

    pub fn contains(&self, id: &str) -> bool {
        self.slot(id).is_some()
    }

    pub fn meta(&self, id: &str) -> Option<&M> {
        self.slot(id).map(|slot| &slot.meta)
    }

    pub fn meta_mut(&mut self, id: &str) -> Option<&mut M> {
        let bytes = &self.bytes;
        self.entries
            .get_mut(&key(id))
            .filter(|slot| slot.id(bytes) == id.as_bytes())
            .map(|slot| &mut slot.meta)
    }

    pub fn record(&self, id: &str) -> Option<PodRecord> {
        unpack(self.slot(id)?.record(&self.bytes))
    }

    pub fn remove(&mut self, id: &str) {
        let key = key(id);
        let bytes = &self.bytes;
        if let Some(slot) = self.entries.remove(&key) {
            if slot.id(bytes) == id.as_bytes() {
                self.holes += slot.len;
                self.rewrite_if_holed();
            } else {
                // Another ID's entry under the same key: it stays.
                self.entries.insert(key, slot);
            }
        }
    }

    /// Keeps the entries `keep` says yes to, given each one's ID, tag and metadata.
    pub fn retain(&mut self, mut keep: impl FnMut(&[u8], &[u8], &M) -> bool) {
        let bytes = &self.bytes;
        let mut holes = 0;
        self.entries.retain(|_, slot| {
            let kept = keep(slot.id(bytes), slot.tag(bytes), &slot.meta);
            if !kept {
                holes += slot.len;
            }
            kept
        });
        self.holes += holes;
        self.rewrite_if_holed();
    }

    pub fn clear(&mut self) {
        *self = Shelf::default();
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes of the block in use, holes included.
    pub fn bytes(&self) -> usize {
        self.bytes.len()
    }

    fn rewrite_if_holed(&mut self) {
        if self.holes < REWRITE_FROM || self.holes * 2 < self.bytes.len() {
            return;
        }
        let mut bytes = Vec::with_capacity(self.bytes.len() - self.holes);
        for slot in self.entries.values_mut() {
            let start = bytes.len();
            bytes.extend_from_slice(&self.bytes[slot.start..slot.start + slot.len]);
            slot.start = start;
        }
        self.bytes = bytes;
        self.holes = 0;
    }
}

fn key(id: &str) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    id.hash(&mut hasher);
    hasher.finish()
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
        let back = unpack(&pack(&record).unwrap()).unwrap();
        assert_eq!(serde_json::to_vec(&back).unwrap(), json);
    }

    fn with_id(id: &str) -> PodRecord {
        let mut record = typical_pod();
        record.containers[0].id.id = id.to_string();
        record
    }

    #[test]
    fn a_shelf_gives_back_what_it_keeps_and_nothing_it_let_go() {
        let mut shelf: Shelf<i64> = Shelf::default();
        for n in 0..800 {
            let id = format!("{n:064x}");
            shelf.insert(&id, b"ns/pod", n, &with_id(&id));
        }
        assert_eq!(shelf.len(), 800);
        let id7 = format!("{:064x}", 7);
        assert_eq!(shelf.meta(&id7), Some(&7));
        assert_eq!(shelf.record(&id7).unwrap().containers[0].id.id, id7);
        assert!(shelf.record("not-kept").is_none());

        // Half go: the block is written anew, and what stays reads back the same.
        let full = shelf.bytes();
        shelf.retain(|id, tag, meta| {
            assert_eq!(tag, b"ns/pod");
            assert_eq!(id.len(), 64);
            meta % 2 == 1
        });
        shelf.remove(&format!("{:064x}", 9));
        assert_eq!(shelf.len(), 399);
        assert!(shelf.bytes() < full * 3 / 4, "{} of {full}", shelf.bytes());
        assert!(shelf.record(&format!("{:064x}", 8)).is_none());
        assert!(!shelf.contains(&format!("{:064x}", 9)));
        for n in (11..800).step_by(2) {
            let id = format!("{n:064x}");
            assert_eq!(shelf.record(&id).unwrap().containers[0].id.id, id);
            assert_eq!(shelf.meta(&id), Some(&n));
        }
        *shelf.meta_mut(&id7).unwrap() = -1;
        assert_eq!(shelf.meta(&id7), Some(&-1));
        shelf.clear();
        assert!(shelf.is_empty());
    }

    #[test]
    fn damaged_bytes_read_back_as_nothing() {
        let packed = pack(&typical_pod()).unwrap();
        assert!(unpack(&packed[..packed.len() / 2]).is_none());
    }
}
