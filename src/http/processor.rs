//! The KubeDiag processors this service answers. Each reads what it needs from the request
//! context and answers one key whose value is JSON text (the agent merges string values only).

use serde::Serialize;
use serde_json::{Map, Value};

use super::request;
use crate::collector::Collector;
use crate::error::{Error, Result};
use crate::rebuild;
use k8s_openapi::api::core::v1::Pod;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Processor {
    /// One pod, rebuilt from the runtime.
    PodDetail,
    /// Every pod on the node (or in one namespace), rebuilt the same way.
    PodList,
    /// The node's containers as the runtime lists them.
    Containers,
    /// The runtime's name, version and status.
    RuntimeInfo,
    /// Docker's `/info` (Docker nodes only).
    DockerInfo,
}

impl Processor {
    pub const ALL: [Processor; 5] = [
        Processor::PodDetail,
        Processor::PodList,
        Processor::Containers,
        Processor::RuntimeInfo,
        Processor::DockerInfo,
    ];

    /// The last part of its path, `/processor/<name>`.
    pub fn name(self) -> &'static str {
        self.path().trim_start_matches("/processor/")
    }

    /// Where it is served.
    pub fn path(self) -> &'static str {
        match self {
            Processor::PodDetail => "/processor/podDetailCollector",
            Processor::PodList => "/processor/podListCollector",
            Processor::Containers => "/processor/containerCollector",
            Processor::RuntimeInfo => "/processor/runtimeInfoCollector",
            Processor::DockerInfo => "/processor/dockerInfoCollector",
        }
    }

    /// The key of the answer, as KubeDiag's own processors name it.
    pub fn result_key(self) -> &'static str {
        match self {
            Processor::PodDetail => "collector.kubernetes.pod.detail",
            Processor::PodList => "collector.kubernetes.pod.list",
            Processor::Containers => "collector.kubernetes.container.list",
            Processor::RuntimeInfo => "collector.kubernetes.runtime.info",
            Processor::DockerInfo => "collector.kubernetes.docker.info",
        }
    }

    pub fn named(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|processor| processor.name() == name)
    }

    /// Answers the request context with the JSON text of the result, and says what it was
    /// about (for the log line).
    pub async fn answer(
        self,
        collector: &Collector,
        context: &Map<String, Value>,
    ) -> Result<(String, String)> {
        match self {
            Processor::PodDetail => {
                let pod_ref = request::pod_ref(context)?;
                let pod = collector.pod(&pod_ref).await?;
                Ok((format!("pod {pod_ref}"), pod_json(&pod, &pod_ref)?))
            }
            Processor::PodList => {
                let namespace = request::optional_namespace(context)?;
                let pods = collector.pods(namespace).await?;
                let scope =
                    namespace.map_or("all namespaces".to_string(), |ns| format!("namespace {ns}"));
                let subject = format!("{} pods in {scope}", pods.len());
                let pods = pods
                    .iter()
                    .map(|pod| pod_json(pod, "a pod of the list"))
                    .collect::<Result<Vec<_>>>()?;
                Ok((subject, format!("[{}]", pods.join(","))))
            }
            Processor::Containers => {
                let all = request::flag(context, request::CONTAINER_ALL_KEY)?;
                let containers = collector.containers(all).await?;
                let count = containers.as_array().map_or(0, Vec::len);
                Ok((
                    format!("{count} containers"),
                    to_json(&containers, "the container list")?,
                ))
            }
            Processor::RuntimeInfo => {
                let info = collector.runtime_info().await?;
                Ok(("runtime info".to_string(), to_json(&info, "runtime info")?))
            }
            Processor::DockerInfo => {
                let info = collector.docker_info().await?;
                Ok(("docker info".to_string(), to_json(&info, "docker info")?))
            }
        }
    }
}

fn pod_json(pod: &Pod, what: impl std::fmt::Display) -> Result<String> {
    rebuild::to_json(pod).map_err(|err| encoding(what, err))
}

fn to_json(value: &impl Serialize, what: impl std::fmt::Display) -> Result<String> {
    serde_json::to_string(value).map_err(|err| encoding(what, err))
}

pub(super) fn encoding(subject: impl std::fmt::Display, cause: serde_json::Error) -> Error {
    Error::Encoding {
        subject: subject.to_string(),
        cause: cause.to_string(),
    }
}
