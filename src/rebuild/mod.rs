//! Rebuilds a Kubernetes `v1.Pod` from what Docker holds about the pod's containers.
//!
//! Pure: inspected containers and images in, a `Pod` out, no I/O. A field that the runtime does
//! not reveal is left out rather than guessed.

pub mod kubelet;
mod quantity;
mod spec;
mod status;

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::PathBuf;

use bollard::models::{ContainerInspectResponse, ImageInspect};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};

use kubelet::{ANNOTATION_PREFIX, Instance, KUBELET_LABEL_PREFIX, Role};

/// Everything the runtime told about one pod: its containers (every state, every sandbox and
/// instance) and the images they run, keyed by image ID.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PodRecord {
    pub containers: Vec<ContainerInspectResponse>,
    pub images: HashMap<String, ImageInspect>,
    /// What the node's files add (read by `host`, not by the rebuild).
    #[serde(default)]
    pub host: HostFacts,
}

/// What the node's own files tell about the pod, beyond Docker.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HostFacts {
    /// Addresses of `eth0` in the sandbox's network namespace (CNI pods).
    #[serde(default)]
    pub pod_ips: Vec<IpAddr>,
    /// Termination-message file contents, by container ID.
    #[serde(default)]
    pub termination_messages: HashMap<String, String>,
    /// The static pod manifest the kubelet runs the pod from.
    #[serde(default)]
    pub manifest: Option<Pod>,
}

/// What the rebuild needs to know about the node and the operator's choices.
#[derive(Debug, Clone, Default)]
pub struct Context {
    pub node_name: String,
    pub host_ip: Option<IpAddr>,
    pub reveal_env: bool,
    /// The kubelet's root directory, whose layout names the pod's volumes.
    pub kubelet_root: PathBuf,
}

/// The text that stands in for an environment value unless the operator reveals them.
pub use crate::redact::REDACTED;

/// The pod's containers sorted out: the newest sandbox and, per container name, its instances
/// newest first. Instances of another pod with the same name (an older UID) are history and
/// left out.
pub struct PodView<'a> {
    pub sandbox: Option<Instance<'a>>,
    pub uid: &'a str,
    /// By container name, newest instance first.
    pub containers: BTreeMap<&'a str, Vec<Instance<'a>>>,
    pub images: &'a HashMap<String, ImageInspect>,
}

impl<'a> PodView<'a> {
    pub fn new(record: &'a PodRecord) -> Option<Self> {
        let mut instances: Vec<Instance<'a>> =
            record.containers.iter().filter_map(Instance::new).collect();
        // Newest first; the attempt breaks ties between instances created in the same instant.
        instances.sort_by_key(|i| std::cmp::Reverse((i.created, i.attempt)));

        let sandbox = instances.iter().find(|i| i.role == Role::Sandbox).copied();
        let uid = sandbox.or(instances.first().copied())?.pod_uid()?;

        let mut containers: BTreeMap<&str, Vec<Instance>> = BTreeMap::new();
        for instance in instances {
            if instance.role == Role::Container && instance.pod_uid() == Some(uid) {
                containers
                    .entry(instance.container_name)
                    .or_default()
                    .push(instance);
            }
        }
        Some(PodView {
            sandbox,
            uid,
            containers,
            images: &record.images,
        })
    }

    pub fn image(&self, instance: &Instance) -> Option<&'a ImageInspect> {
        self.images.get(instance.image_id()?)
    }

    /// The newest instance of every container.
    pub fn newest(&self) -> impl Iterator<Item = &Instance<'a>> {
        self.containers
            .values()
            .filter_map(|history| history.first())
    }

    /// Where the pod's identity is read: the sandbox, else its newest container.
    fn identity(&self) -> Option<&Instance<'a>> {
        self.sandbox.as_ref().or_else(|| self.newest().next())
    }
}

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

/// Rebuilds the pod, or `None` when the record holds no container the kubelet made.
pub fn rebuild(record: &PodRecord, context: &Context) -> Option<Pod> {
    let view = PodView::new(record)?;
    let mut spec = spec::pod_spec(&view, context);
    if let Some(manifest_spec) = record.host.manifest.as_ref().and_then(|m| m.spec.clone()) {
        spec = spec::with_manifest(manifest_spec, spec);
    }
    if !context.reveal_env {
        spec::redact_env(&mut spec);
        crate::redact::redact_pod_spec(&mut spec);
    }
    let status = status::pod_status(&view, &spec, &record.host, context);
    Some(Pod {
        metadata: metadata(&view, context),
        spec: Some(spec),
        status: Some(status),
    })
}

/// kubectl keeps the whole applied object in this annotation, environment values included.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

fn metadata(view: &PodView, context: &Context) -> ObjectMeta {
    let identity = view.identity();
    let label = |key| identity.and_then(|i| i.label(key)).map(str::to_string);
    let mut meta = ObjectMeta {
        name: label(kubelet::POD_NAME_LABEL),
        namespace: label(kubelet::POD_NAMESPACE_LABEL),
        uid: Some(view.uid.to_string()),
        ..ObjectMeta::default()
    };
    // Pod labels and annotations are written on the sandbox only.
    if let Some(sandbox) = &view.sandbox {
        let image_labels = view
            .image(sandbox)
            .and_then(|image| image.config.as_ref())
            .and_then(|config| config.labels.as_ref());
        let mut labels = BTreeMap::new();
        let mut annotations = BTreeMap::new();
        for (key, value) in sandbox.labels {
            if let Some(annotation) = key.strip_prefix(ANNOTATION_PREFIX) {
                let value = match annotation {
                    LAST_APPLIED if !context.reveal_env => match redact_applied(value) {
                        Some(redacted) => redacted,
                        // Not the JSON kubectl writes: it cannot be shown safely.
                        None => continue,
                    },
                    _ => value.clone(),
                };
                annotations.insert(annotation.to_string(), value);
            } else if !key.starts_with(KUBELET_LABEL_PREFIX)
                && image_labels.and_then(|l| l.get(key)) != Some(value)
            {
                labels.insert(key.clone(), value.clone());
            }
        }
        meta.labels = Some(labels).filter(|l| !l.is_empty());
        meta.annotations = Some(annotations).filter(|a| !a.is_empty());
    }
    meta
}

/// The image's first repo tag (what the user wrote, give or take a registry prefix).
fn image_name(image: Option<&ImageInspect>) -> Option<String> {
    image?
        .repo_tags
        .as_ref()?
        .iter()
        .find(|tag| tag.as_str() != "<none>:<none>")
        .cloned()
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
mod tests {
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
