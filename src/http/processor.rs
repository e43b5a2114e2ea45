//! The KubeDiag processors this service answers. Each reads what it needs from the request
//! context and answers one key whose value is JSON text (the agent merges string values only).

use serde::Serialize;
use serde_json::{Map, Value};

use super::request;
use crate::collector::Collector;
use crate::error::{Error, Result};
use crate::{rebuild, redact};
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
    /// about (for the log line). Unless `reveal`, credentials in the container list's command
    /// lines and applied configurations are redacted as they are in rebuilt pods.
    pub async fn answer(
        self,
        collector: &Collector,
        context: &Map<String, Value>,
        reveal: bool,
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
                let mut containers = collector.containers(all).await?;
                if !reveal {
                    containers
                        .as_array_mut()
                        .into_iter()
                        .flatten()
                        .for_each(redact_listed);
                }
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

/// kubectl keeps the whole applied object in this annotation; Docker holds annotations as
/// labels with the `annotation.` prefix.
/// kubectl's applied configuration, as Docker holds it (a label) and as CRI does (an
/// annotation): it carries the whole pod, command lines included.
const LAST_APPLIED: [&str; 2] = [
    "annotation.kubectl.kubernetes.io/last-applied-configuration",
    "kubectl.kubernetes.io/last-applied-configuration",
];

/// Redacts what a runtime's container list entry shows that may hold credentials: Docker's
/// `Command` line and the applied configuration among the labels or annotations.
fn redact_listed(entry: &mut Value) {
    if let Some(command) = entry.get_mut("Command")
        && let Some(line) = command.as_str()
    {
        *command = Value::String(redact::redact_command_line(line));
    }
    for map in ["Labels", "labels", "annotations"] {
        let Some(map) = entry.get_mut(map).and_then(Value::as_object_mut) else {
            continue;
        };
        for key in LAST_APPLIED {
            if let Some(applied) = map.get_mut(key)
                && let Some(text) = applied.as_str()
            {
                *applied = match redact::redact_applied_configuration(text) {
                    Some(redacted) => Value::String(redacted),
                    None => Value::String(crate::rebuild::REDACTED.to_string()),
                };
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
