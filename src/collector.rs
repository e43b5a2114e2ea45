//! Answers "what does this pod look like on this node": asks the runtime, then rebuilds.
//! The HTTP server and the one-shot `get` command both come through here.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::host::{HostFiles, HostPaths};
use crate::metrics::Metrics;
use crate::pod_ref::PodRef;
use crate::rebuild::{self, Context};
use crate::record::{PodRecord, PodView};
use crate::runtime::{Runtime, Scope};
use crate::settings::Settings;

pub struct Collector {
    runtime: Runtime,
    /// Shared with the blocking threads that read the node's files and rebuild.
    rebuilder: Arc<Rebuilder>,
}

/// What turns a pod's record into a Pod: the node's files, then the pure rebuild.
struct Rebuilder {
    host_files: HostFiles,
    context: Context,
}

impl Collector {
    pub fn new(settings: &Settings, metrics: Arc<Metrics>) -> Result<Self> {
        let host_files = HostFiles::new(
            HostPaths {
                host_proc: settings.host_proc.clone(),
                manifest_dir: settings.manifest_dir.clone(),
                kubelet_root: settings.kubelet_root.clone(),
                pod_logs: settings.pod_logs_dir.clone(),
            },
            settings.node_name.clone(),
        );
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
            runtime: Runtime::new(settings, metrics)?,
            rebuilder: Arc::new(Rebuilder {
                host_files,
                context: Context {
                    node_name: settings.node_name.clone(),
                    host_ip,
                    reveal_env: settings.reveal_env,
                    kubelet_root: settings.kubelet_root.clone(),
                },
            }),
        })
    }

    pub async fn pod(&self, pod: &PodRef) -> Result<Pod> {
        let mut records = self
            .runtime
            .pod_records(Scope::Pod(pod))
            .await
            .map_err(|cause| Error::runtime(format!("pod {pod}"), cause))?;
        let record = records.remove(pod).unwrap_or_default();
        // One pod is a few small file reads and a fraction of a millisecond of work: done in
        // place it costs less than the hand-over to a blocking thread and back, which a
        // node-wide answer is worth.
        self.rebuilder
            .rebuild(pod, &record)
            .ok_or_else(|| Error::PodNotFound {
                pod: pod.clone(),
                node: self.rebuilder.context.node_name.clone(),
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
        Ok(self.rebuild(records.into_iter().collect()).await)
    }

    /// The runtime's containers as it lists them.
    pub async fn containers(&self, all: bool) -> Result<Value> {
        self.runtime
            .containers(all)
            .await
            .map_err(|cause| Error::runtime("container list", cause))
    }

    /// The runtime's name, version and status.
    pub async fn runtime_info(&self) -> Result<Value> {
        self.runtime
            .info()
            .await
            .map_err(|cause| Error::runtime("runtime info", cause))
    }

    pub async fn docker_info(&self) -> Result<Value> {
        self.runtime
            .docker_info()
            .await
            .map_err(|cause| Error::runtime("docker info", cause))
    }

    /// Adds what the node's files tell, then rebuilds, on a blocking thread: the files of
    /// many pods are read with blocking I/O. Records with nothing the kubelet made give no Pod.
    async fn rebuild(&self, records: Vec<(PodRef, PodRecord)>) -> Vec<Pod> {
        let rebuilder = self.rebuilder.clone();
        let rebuilt = tokio::task::spawn_blocking(move || {
            records
                .iter()
                .filter_map(|(pod, record)| rebuilder.rebuild(pod, record))
                .collect()
        })
        .await;
        // A rebuild does not panic; if one did, the pods it held are not answered.
        rebuilt.unwrap_or_else(|err| {
            log::error!("rebuild failed: {err}");
            Vec::new()
        })
    }

    /// Which runtime answers (name, version, endpoint); the reason when none does.
    pub async fn ready(&self) -> Result<Value> {
        self.runtime
            .ping()
            .await
            .map_err(|cause| Error::runtime("not ready", cause))
    }

    /// `spec.nodeName` of the pods it rebuilds.
    pub fn node_name(&self) -> &str {
        &self.rebuilder.context.node_name
    }

    /// The runtime as the operator named it, or where the collector looks for it.
    pub fn runtime_choice(&self) -> String {
        self.runtime.describe_choice()
    }
}

impl Rebuilder {
    fn rebuild(&self, pod: &PodRef, record: &PodRecord) -> Option<Pod> {
        let view = PodView::new(record)?;
        let host = self.host_files.facts(pod, &view);
        log::debug!(
            "pod {pod}: rebuilt from {} sandboxes and {} containers",
            record.sandboxes.len(),
            record.containers.len()
        );
        Some(rebuild::rebuild(&view, &host, &self.context))
    }
}
