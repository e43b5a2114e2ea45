//! Static pods: the kubelet runs them from manifest files on the node, and the mirror pod's name
//! is the manifest's name plus `-<nodeName>`. The manifest holds what Docker cannot (probes,
//! restart policy, tolerations, volume names…).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use k8s_openapi::api::core::v1::Pod;

use crate::pod_ref::PodRef;

/// Files larger than this are not manifests.
const MANIFEST_SIZE_LIMIT: u64 = 1024 * 1024;

/// The manifest directory, each file parsed once until it changes (by modification time and
/// size): a diagnosis storm must not re-parse every manifest per request.
pub struct Manifests {
    dir: PathBuf,
    parsed: Mutex<HashMap<PathBuf, Parsed>>,
}

#[derive(Clone)]
struct Parsed {
    modified: Option<SystemTime>,
    len: u64,
    /// `None`: not a manifest the kubelet would run.
    pod: Option<Arc<Pod>>,
}

impl Manifests {
    pub fn new(dir: PathBuf) -> Self {
        Manifests {
            dir,
            parsed: Mutex::new(HashMap::new()),
        }
    }

    /// The manifest that the static pod `pod` was made from, if the directory holds it.
    pub fn find(&self, pod: &PodRef, node_name: &str) -> Option<Pod> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(err) => {
                log::debug!(
                    "static pod {pod}: cannot read {}: {err}",
                    self.dir.display()
                );
                return None;
            }
        };
        let mut candidates = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            let Some(manifest) = self.read(&path) else {
                continue;
            };
            let Some(name) = manifest.metadata.name.as_deref() else {
                continue;
            };
            let namespace = manifest.metadata.namespace.as_deref().unwrap_or("default");
            if namespace != pod.namespace {
                continue;
            }
            if !node_name.is_empty() && pod.name == format!("{name}-{node_name}") {
                log::debug!("static pod {pod}: spec from {}", path.display());
                return Some(Pod::clone(&manifest));
            }
            // The node name the collector was given may differ from the kubelet's.
            if pod
                .name
                .strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('-'))
            {
                candidates.push(manifest);
            }
        }
        if candidates.len() == 1 {
            return candidates.pop().map(|manifest| Pod::clone(&manifest));
        }
        None
    }

    /// One manifest file, from the cache while it is unchanged.
    fn read(&self, path: &Path) -> Option<Arc<Pod>> {
        let file_name = path.file_name()?.to_str()?;
        if file_name.starts_with('.') {
            return None;
        }
        let metadata = std::fs::metadata(path).ok()?;
        if !metadata.is_file() || metadata.len() > MANIFEST_SIZE_LIMIT {
            return None;
        }
        let (modified, len) = (metadata.modified().ok(), metadata.len());
        let mut parsed = self
            .parsed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(known) = parsed.get(path)
            && known.modified.is_some()
            && known.modified == modified
            && known.len == len
        {
            return known.pod.clone();
        }
        let pod = parse(path).map(Arc::new);
        // Files come and go: forget those that are gone before remembering more.
        parsed.retain(|known, _| known.exists());
        parsed.insert(
            path.to_path_buf(),
            Parsed {
                modified,
                len,
                pod: pod.clone(),
            },
        );
        pod
    }
}

/// One manifest file, YAML or JSON, as the kubelet reads them (dot files are skipped).
fn parse(path: &Path) -> Option<Pod> {
    let parse_as = match path.extension().and_then(|ext| ext.to_str()) {
        Some("json") => |text: &str| serde_json::from_str::<Pod>(text).map_err(|e| e.to_string()),
        Some("yaml" | "yml") => {
            |text: &str| serde_saphyr::from_str::<Pod>(text).map_err(|e| e.to_string())
        }
        _ => return None,
    };
    let text = std::fs::read_to_string(path).ok()?;
    parse_as(&text)
        .map_err(|err| log::debug!("ignoring manifest {}: {err}", path.display()))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_manifest_of_a_mirror_pod() {
        let dir = std::env::temp_dir().join(format!("pdc-manifests-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        std::fs::write(
            dir.join("kube-scheduler.yaml"),
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: kube-scheduler\n  namespace: kube-system\n\
             spec:\n  priorityClassName: system-node-critical\n  containers:\n  - name: kube-scheduler\n    image: registry.k8s.io/kube-scheduler:v1.29.4\n",
        )
        .expect("write");
        std::fs::write(dir.join("etcd.json"), r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"etcd","namespace":"kube-system"},"spec":{"containers":[{"name":"etcd"}]}}"#).expect("write");
        std::fs::write(dir.join("broken.yaml"), "{not: [yaml").expect("write");
        std::fs::write(dir.join(".kube-scheduler.yaml.swp"), "x").expect("write");

        let pod = |name: &str| PodRef {
            namespace: "kube-system".into(),
            name: name.into(),
        };
        let manifests = Manifests::new(dir.clone());
        let find = |_: &Path, pod: &PodRef, node: &str| manifests.find(pod, node);
        let found = find(&dir, &pod("kube-scheduler-n1"), "n1").expect("manifest");
        assert_eq!(
            found.spec.and_then(|s| s.priority_class_name).as_deref(),
            Some("system-node-critical")
        );
        assert!(find(&dir, &pod("etcd-n1"), "n1").is_some());
        // Another node name still finds the one manifest the pod name starts with.
        assert!(find(&dir, &pod("etcd-other"), "n1").is_some());
        assert!(find(&dir, &pod("kube-apiserver-n1"), "n1").is_none());
        assert!(
            find(
                &dir,
                &PodRef {
                    namespace: "default".into(),
                    name: "etcd-n1".into()
                },
                "n1"
            )
            .is_none()
        );
        // A changed file is read again; an unchanged one comes from the cache.
        std::fs::write(
            dir.join("etcd.json"),
            r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"etcd","namespace":"kube-system"},"spec":{"priorityClassName":"changed","containers":[{"name":"etcd"}]}}"#,
        )
        .expect("write");
        let changed = find(&dir, &pod("etcd-n1"), "n1").and_then(|p| p.spec?.priority_class_name);
        assert_eq!(changed.as_deref(), Some("changed"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
