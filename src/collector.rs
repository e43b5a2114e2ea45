//! Answers "what does this pod look like on this node": asks the runtime, then rebuilds.
//! The HTTP server and the one-shot `get` command both come through here.

use k8s_openapi::api::core::v1::Pod;

use crate::error::{Error, PodRef, Result};
use crate::host::HostFiles;
use crate::rebuild::{self, Context};
use crate::runtime::DockerRuntime;
use crate::settings::Settings;

pub struct Collector {
    runtime: DockerRuntime,
    host_files: HostFiles,
    context: Context,
}

impl Collector {
    pub fn new(settings: &Settings) -> Result<Self> {
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
            runtime: DockerRuntime::new(&settings.docker_host, settings.runtime_timeout)?,
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
        let mut record = self
            .runtime
            .pod_record(pod)
            .await
            .map_err(|cause| Error::runtime(format!("pod {pod}"), cause))?;
        record.host = self.host_files.facts(pod, &record);
        let rebuilt = rebuild::rebuild(&record, &self.context);
        log::debug!(
            "pod {pod}: rebuilt from {} containers and {} images",
            record.containers.len(),
            record.images.len()
        );
        rebuilt.ok_or_else(|| Error::PodNotFound {
            pod: pod.clone(),
            node: self.context.node_name.clone(),
        })
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
