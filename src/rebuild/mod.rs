//! Rebuilds a Kubernetes `v1.Pod` from the runtime-neutral record of a pod.
//!
//! Pure: record in, `Pod` out, no I/O and no runtime's types. A field that the runtime does
//! not reveal is left out rather than guessed.

mod kinds;
mod quantity;
mod resources;
mod spec;
mod status;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::kubelet::{self, KUBELET_LABEL_PREFIX};
use crate::record::{HostFacts, PodView};

/// What the rebuild needs to know about the node and the operator's choices.
#[derive(Debug, Clone, Default)]
pub struct Context {
    pub node_name: String,
    pub host_ip: Option<IpAddr>,
    pub reveal_env: bool,
    /// The kubelet's root directory, whose layout names the pod's volumes.
    pub kubelet_root: PathBuf,
}

/// The collector's own annotation on a Pod whose init containers were told by the order the
/// kubelet ran the containers in (no runtime holds which ones they are): value `inferred`.
pub const INIT_CONTAINERS_ANNOTATION: &str = "pod-detail-collector.kubediag.org/init-containers";

/// The text that stands in for an environment value unless the operator reveals them.
pub use crate::redact::REDACTED;

/// The Pod as JSON text, as the API server would write it. k8s-openapi always writes a
/// referenced config map's `name`, which the rebuild cannot know; Kubernetes leaves an empty
/// one out, and so does this.
pub fn to_json(pod: &Pod) -> serde_json::Result<String> {
    let unnamed_config_map = pod
        .spec
        .iter()
        .flat_map(|spec| spec.volumes.iter().flatten())
        .any(|volume| {
            volume
                .config_map
                .as_ref()
                .is_some_and(|c| c.name.is_empty())
        });
    if !unnamed_config_map {
        return serde_json::to_string(pod);
    }
    let mut value = serde_json::to_value(pod)?;
    let volumes = value
        .pointer_mut("/spec/volumes")
        .and_then(|volumes| volumes.as_array_mut());
    for volume in volumes.into_iter().flatten() {
        if let Some(config_map) = volume.get_mut("configMap").and_then(|c| c.as_object_mut())
            && config_map.get("name").and_then(|name| name.as_str()) == Some("")
        {
            config_map.remove("name");
        }
    }
    serde_json::to_string(&value)
}

/// Rebuilds the pod from its view and what the node's files add.
pub fn rebuild(view: &PodView, host: &HostFacts, context: &Context) -> Pod {
    let manifest_spec = host.manifest.as_ref().and_then(|m| m.spec.as_ref());
    let kinds = kinds::kinds(view, manifest_spec);
    let mut spec = spec::pod_spec(view, &kinds, host.allocated.as_ref(), context);
    if let Some(manifest_spec) = manifest_spec {
        spec = spec::with_manifest(manifest_spec.clone(), spec);
    }
    if !context.reveal_env {
        spec::redact_env(&mut spec);
        crate::redact::redact_pod_spec(&mut spec);
    }
    let status = status::pod_status(view, &kinds, &spec, host, context);
    let mut metadata = metadata(view, context);
    if kinds.inferred && kinds.has_init() {
        metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(
                INIT_CONTAINERS_ANNOTATION.to_string(),
                "inferred".to_string(),
            );
    }
    Pod {
        metadata,
        spec: Some(spec),
        status: Some(status),
    }
}

/// kubectl keeps the whole applied object in this annotation, environment values included.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

fn metadata(view: &PodView, context: &Context) -> ObjectMeta {
    let identity = view.identity_labels();
    let label = |key| identity.and_then(|labels| labels.get(key)).cloned();
    let mut meta = ObjectMeta {
        name: label(kubelet::POD_NAME_LABEL),
        namespace: label(kubelet::POD_NAMESPACE_LABEL),
        uid: Some(view.uid.to_string()),
        // The kubelet writes it on the containers it creates once the pod is being deleted.
        deletion_grace_period_seconds: view
            .newest()
            .find_map(|i| i.parsed_annotation(kubelet::DELETION_GRACE_PERIOD)),
        ..ObjectMeta::default()
    };
    // Pod labels and annotations are kept on the sandbox only.
    if let Some(sandbox) = view.sandbox {
        let labels: BTreeMap<String, String> = sandbox
            .labels
            .iter()
            .filter(|(key, _)| !key.starts_with(KUBELET_LABEL_PREFIX))
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        let mut annotations = BTreeMap::new();
        for (key, value) in &sandbox.annotations {
            let value = match key.as_str() {
                LAST_APPLIED if !context.reveal_env => match redact_applied(value) {
                    Some(redacted) => redacted,
                    // Not the JSON kubectl writes: it cannot be shown safely.
                    None => continue,
                },
                _ => value.clone(),
            };
            annotations.insert(key.clone(), value);
        }
        meta.labels = Some(labels).filter(|l| !l.is_empty());
        meta.annotations = Some(annotations).filter(|a| !a.is_empty());
    }
    meta
}

/// The applied object with its containers' environment values redacted.
fn redact_applied(applied: &str) -> Option<String> {
    let mut object: serde_json::Value = serde_json::from_str(applied).ok()?;
    let spec = object.get_mut("spec")?;
    for list in ["containers", "initContainers", "ephemeralContainers"] {
        let containers = spec.get_mut(list).and_then(|c| c.as_array_mut());
        for container in containers.into_iter().flatten() {
            let vars = container.get_mut("env").and_then(|e| e.as_array_mut());
            for var in vars.into_iter().flatten() {
                if let Some(value) = var.get_mut("value").filter(|v| v.is_string()) {
                    *value = serde_json::Value::String(REDACTED.to_string());
                }
            }
            crate::redact::redact_container_value(container);
        }
    }
    serde_json::to_string(&object).ok()
}

#[cfg(test)]
mod applied_tests {
    use super::*;

    #[test]
    fn applied_configuration_loses_its_env_values() {
        let applied = r#"{"apiVersion":"v1","kind":"Pod","spec":{"containers":[{"name":"a","env":[{"name":"TOKEN","value":"s3cret"},{"name":"FROM","valueFrom":{"secretKeyRef":{"name":"x","key":"y"}}}]}]}}"#;
        let redacted = redact_applied(applied).unwrap_or_default();
        assert!(!redacted.contains("s3cret"), "{redacted}");
        assert!(
            redacted.contains(REDACTED) && redacted.contains("secretKeyRef"),
            "{redacted}"
        );
        assert!(redact_applied("not json").is_none());
    }
}

#[cfg(test)]
mod tests;
