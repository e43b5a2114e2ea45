//! The kubelet's resource allocation checkpoint, `<kubelet-root>/allocated_pods_state`
//! (Kubernetes 1.33+, `pkg/kubelet/allocation/state`): every admitted pod's containers with
//! the requests and limits the kubelet allocated them, memory requests included, which no
//! runtime holds.
//!
//! The file is a checkpoint (`pkg/kubelet/checkpointmanager`): `{"data": "<JSON text>",
//! "checksum": N}`, where N is the FNV-1a (32 bit) hash of `(string)` followed by the data
//! text (how `go-spew` prints a string for `hashutil.DeepHashObject`). The data's shape
//! depends on the kubelet's version:
//!
//! - 1.33: `{"allocationEntries": {"<pod uid>": {"<container>": ResourceRequirements}}}`;
//! - 1.34 and later: `{"entries": {"<pod uid>": {"ContainerResources": {"<container>":
//!   ResourceRequirements}, "PodLevelResources": ResourceRequirements}}}`;
//! - checkpoints with `"version": "v2"` keep those same `entries` beside a protobuf pod list,
//!   for kubelets that read the older shape; those entries are read.
//!
//! A missing, unreadable, corrupt (checksum) or foreign (any other version or shape) file
//! gives nothing, and the Pod is rebuilt as without it. Parsed once per change of the file.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use k8s_openapi::api::core::v1::ResourceRequirements;
use serde::Deserialize;

use crate::record::Allocation;

/// The file's name in the kubelet's root directory.
pub const FILE_NAME: &str = "allocated_pods_state";
/// A node's checkpoint holds a few KiB per pod; anything larger is not the kubelet's.
const SIZE_LIMIT: u64 = 16 * 1024 * 1024;
/// The only versioned shape known: it keeps the unversioned `entries` too.
const VERSION_V2: &str = "v2";

/// The checkpoint file, parsed once until it changes (by modification time and size).
pub struct Allocations {
    path: PathBuf,
    parsed: Mutex<Option<Parsed>>,
}

#[derive(Clone)]
struct Parsed {
    modified: Option<SystemTime>,
    len: u64,
    /// By pod UID; empty when the file is not a checkpoint this reads.
    pods: Arc<HashMap<String, Allocation>>,
}

impl Allocations {
    pub fn new(kubelet_root: &Path) -> Self {
        Allocations {
            path: kubelet_root.join(FILE_NAME),
            parsed: Mutex::new(None),
        }
    }

    /// What the kubelet allocated to the pod with this UID, if the checkpoint holds it.
    pub fn of(&self, uid: &str) -> Option<Allocation> {
        let metadata = std::fs::metadata(&self.path)
            .map_err(|err| log::debug!("{}: {err}", self.path.display()))
            .ok()?;
        let (modified, len) = (metadata.modified().ok(), metadata.len());
        let cached = self
            .parsed
            .lock()
            .ok()
            .and_then(|slot| slot.clone())
            .filter(|parsed| {
                parsed.modified == modified && parsed.len == len && modified.is_some()
            });
        let pods = match cached {
            Some(parsed) => parsed.pods,
            None => {
                let pods = Arc::new(self.read(len));
                if let Ok(mut slot) = self.parsed.lock() {
                    *slot = Some(Parsed {
                        modified,
                        len,
                        pods: pods.clone(),
                    });
                }
                pods
            }
        };
        pods.get(uid).cloned()
    }

    fn read(&self, len: u64) -> HashMap<String, Allocation> {
        if len > SIZE_LIMIT {
            log::warn!(
                "{}: {len} bytes, not a kubelet checkpoint",
                self.path.display()
            );
            return HashMap::new();
        }
        let parsed = std::fs::read(&self.path)
            .map_err(|err| err.to_string())
            .and_then(|bytes| parse(&bytes));
        match parsed {
            Ok(pods) => pods,
            Err(why) => {
                log::warn!(
                    "{}: {why}; requests and limits come from the runtime",
                    self.path.display()
                );
                HashMap::new()
            }
        }
    }
}

/// The checkpoint file as the checkpoint manager writes it.
#[derive(Deserialize)]
struct Checkpoint {
    #[serde(default)]
    version: Option<String>,
    data: String,
    checksum: u64,
}

/// The data of every known version; each reads only its own keys.
#[derive(Deserialize, Default)]
#[serde(default)]
struct Data {
    /// 1.33.
    #[serde(rename = "allocationEntries")]
    allocation_entries: Option<HashMap<String, BTreeMap<String, ResourceRequirements>>>,
    /// 1.34 and later (and v2's copy for older readers).
    entries: Option<HashMap<String, PodEntry>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct PodEntry {
    #[serde(rename = "ContainerResources")]
    container_resources: BTreeMap<String, ResourceRequirements>,
    #[serde(rename = "PodLevelResources")]
    pod_level_resources: Option<ResourceRequirements>,
}

/// The allocations by pod UID, or why the file is not read.
pub fn parse(bytes: &[u8]) -> Result<HashMap<String, Allocation>, String> {
    let checkpoint: Checkpoint =
        serde_json::from_slice(bytes).map_err(|err| format!("not a kubelet checkpoint: {err}"))?;
    match checkpoint.version.as_deref() {
        None | Some("") | Some(VERSION_V2) => {}
        Some(other) => {
            return Err(format!(
                "checkpoint version {other:?} is not one this reads"
            ));
        }
    }
    if checksum(&checkpoint.data) != checkpoint.checksum {
        return Err("checksum does not match: the checkpoint is corrupt".to_string());
    }
    let data: Data = serde_json::from_str(&checkpoint.data)
        .map_err(|err| format!("checkpoint data of an unknown shape: {err}"))?;
    let mut pods = HashMap::new();
    if let Some(entries) = data.allocation_entries {
        for (uid, containers) in entries {
            pods.insert(
                uid,
                Allocation {
                    containers,
                    pod: None,
                },
            );
        }
    }
    if let Some(entries) = data.entries {
        for (uid, entry) in entries {
            pods.insert(
                uid,
                Allocation {
                    containers: entry.container_resources,
                    pod: entry.pod_level_resources,
                },
            );
        }
    }
    Ok(pods)
}

/// The checkpoint manager's checksum of a string: FNV-1a (32 bit) over `go-spew`'s `%#v` of
/// it, which is `(string)` followed by the text.
pub fn checksum(data: &str) -> u64 {
    const OFFSET: u32 = 0x811c_9dc5;
    const PRIME: u32 = 0x0100_0193;
    let hash = b"(string)"
        .iter()
        .chain(data.as_bytes())
        .fold(OFFSET, |hash, byte| {
            (hash ^ u32::from(*byte)).wrapping_mul(PRIME)
        });
    u64::from(hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A checkpoint as the kubelet writes it.
    fn checkpoint(data: &str) -> Vec<u8> {
        serde_json::json!({"data": data, "checksum": checksum(data)})
            .to_string()
            .into_bytes()
    }

    #[test]
    fn checksums_are_the_checkpoint_managers() {
        // Computed with go-spew and hash/fnv, as the kubelet does.
        assert_eq!(checksum("{}"), 694_314_937);
        assert_eq!(checksum(""), 441_364_273);
        assert_eq!(
            checksum(
                r#"{"entries":{"u1":{"ContainerResources":{"app":{"requests":{"memory":"64Mi"}}}}}}"#
            ),
            2_169_556_285
        );
    }

    #[test]
    fn both_shapes_are_read() {
        let v133 = checkpoint(
            r#"{"allocationEntries":{"u1":{"app":{"requests":{"cpu":"100m","memory":"64Mi"}}}}}"#,
        );
        let v134 = checkpoint(
            r#"{"entries":{"u1":{"ContainerResources":{"app":{"requests":{"cpu":"100m","memory":"64Mi"}}},"PodLevelResources":{"limits":{"memory":"1Gi"}}}}}"#,
        );
        for (what, file) in [("1.33", v133), ("1.34", v134)] {
            let pods = parse(&file).unwrap_or_else(|why| panic!("{what}: {why}"));
            let app = pods
                .get("u1")
                .and_then(|pod| pod.containers.get("app"))
                .and_then(|app| app.requests.as_ref())
                .and_then(|requests| requests.get("memory"))
                .map(|q| q.0.as_str());
            assert_eq!(app, Some("64Mi"), "{what}");
        }
    }

    #[test]
    fn a_corrupt_or_foreign_file_gives_nothing() {
        let data = r#"{"entries":{"u1":{"ContainerResources":{"app":{}}}}}"#;
        let corrupt = serde_json::json!({"data": data, "checksum": checksum(data) + 1});
        assert!(parse(corrupt.to_string().as_bytes()).is_err());
        let foreign =
            serde_json::json!({"version": "v3", "data": data, "checksum": checksum(data)});
        assert!(parse(foreign.to_string().as_bytes()).is_err());
        assert!(parse(b"not json").is_err());
        assert!(parse(&checkpoint("[1, 2]")).is_err());
        let v2 = serde_json::json!({"version": "v2", "data": data, "checksum": checksum(data)});
        assert!(parse(v2.to_string().as_bytes()).is_ok_and(|pods| pods.contains_key("u1")));
    }
}
