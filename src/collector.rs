//! Answers "what does this pod look like on this node": asks the runtime, then rebuilds.
//! The HTTP server and the one-shot `get` command both come through here.

use std::sync::Arc;

use bollard::models::{ContainerSummary, SystemInfo};
use k8s_openapi::api::core::v1::Pod;

use crate::error::{Error, PodRef, Result};
use crate::host::HostFiles;
use crate::metrics::Metrics;
use crate::rebuild::{self, Context, PodRecord};
use crate::runtime::{DockerRuntime, Scope};
use crate::settings::Settings;

pub struct Collector {
    runtime: DockerRuntime,
    host_files: HostFiles,
    context: Context,
}

impl Collector {
    pub fn new(settings: &Settings, metrics: Arc<Metrics>) -> Result<Self> {
        let host_files = HostFiles {
            host_proc: settings.host_proc.clone(),
            manifest_dir: settings.manifest_dir.clone(),
            node_name: settings.node_name.clone(),
        };
        let host_ip = settings.host_ip.or_else(|| {
            let detected = host_files.node_ip();
            match detected {
                Some(ip) => {
                    log::info!("node address {ip} (default route); set HOST_IP to choose another")
                }
                None => log::info!("node address unknown: set HOST_IP to report hostIP"),
            }
            detected
        });
        Ok(Collector {
            runtime: DockerRuntime::new(settings, metrics)?,
            host_files,
            context: Context {
                node_name: settings.node_name.clone(),
                host_ip,
                reveal_env: settings.reveal_env,
                kubelet_root: settings.kubelet_root.clone(),
            },
        })
    }

    pub async fn pod(&self, pod: &PodRef) -> Result<Pod> {
        let mut records = self
            .runtime
            .pod_records(Scope::Pod(pod))
            .await
            .map_err(|cause| Error::runtime(format!("pod {pod}"), cause))?;
        records
            .remove(pod)
            .and_then(|record| self.rebuild(pod, record))
            .ok_or_else(|| Error::PodNotFound {
                pod: pod.clone(),
                node: self.context.node_name.clone(),
            })
    }

    /// Every pod with a container on this node, optionally in one namespace, each rebuilt as
    /// `pod` rebuilds it.
    pub async fn pods(&self, namespace: Option<&str>) -> Result<Vec<Pod>> {
        let scope = namespace.map_or(Scope::Node, Scope::Namespace);
        let records = self.runtime.pod_records(scope).await.map_err(|cause| {
            let scope =
                namespace.map_or("all namespaces".to_string(), |ns| format!("namespace {ns}"));
            Error::runtime(format!("pods in {scope}"), cause)
        })?;
        Ok(records
            .into_iter()
            .filter_map(|(pod, record)| self.rebuild(&pod, record))
            .collect())
    }

    pub async fn containers(&self, all: bool) -> Result<Vec<ContainerSummary>> {
        self.runtime
            .containers(all)
            .await
            .map_err(|cause| Error::runtime("container list", cause))
    }

    pub async fn docker_info(&self) -> Result<SystemInfo> {
        self.runtime
            .info()
            .await
            .map_err(|cause| Error::runtime("docker info", cause))
    }

    /// Adds what the node's files tell, then rebuilds.
    fn rebuild(&self, pod: &PodRef, mut record: PodRecord) -> Option<Pod> {
        record.host = self.host_files.facts(pod, &record);
        let rebuilt = rebuild::rebuild(&record, &self.context);
        log::debug!(
            "pod {pod}: rebuilt from {} containers and {} images",
            record.containers.len(),
            record.images.len()
        );
        rebuilt
    }

    /// Whether the runtime answers; the reason when it does not.
    pub async fn ready(&self) -> Result<()> {
        self.runtime
            .ping()
            .await
            .map_err(|cause| Error::runtime("not ready", cause))
    }

    pub fn docker_host(&self) -> &str {
        self.runtime.host()
    }
}
