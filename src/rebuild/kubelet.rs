//! How the kubelet (dockershim, cri-dockerd) lays a pod out in Docker: label keys, annotation
//! keys, container names, and a typed view of one inspected container.

use std::collections::HashMap;

use bollard::models::{ContainerInspectResponse, ContainerStateStatusEnum};
use k8s_openapi::jiff::Timestamp;

pub const POD_NAME_LABEL: &str = "io.kubernetes.pod.name";
pub const POD_NAMESPACE_LABEL: &str = "io.kubernetes.pod.namespace";
pub const POD_UID_LABEL: &str = "io.kubernetes.pod.uid";
pub const CONTAINER_NAME_LABEL: &str = "io.kubernetes.container.name";
pub const DOCKER_TYPE_LABEL: &str = "io.kubernetes.docker.type";
pub const SANDBOX_ID_LABEL: &str = "io.kubernetes.sandbox.id";
/// The kubelet's own labels all start with this; they are bookkeeping, not pod labels.
pub const KUBELET_LABEL_PREFIX: &str = "io.kubernetes.";
/// Docker has no annotations, so the kubelet stores each CRI annotation as a label with this prefix.
pub const ANNOTATION_PREFIX: &str = "annotation.";

pub const SANDBOX_CONTAINER_NAME: &str = "POD";
pub const SANDBOX_DOCKER_TYPE: &str = "podsandbox";

pub const CONTAINER_HASH: &str = "io.kubernetes.container.hash";
pub const RESTART_COUNT: &str = "io.kubernetes.container.restartCount";
pub const TERMINATION_MESSAGE_PATH: &str = "io.kubernetes.container.terminationMessagePath";
pub const TERMINATION_MESSAGE_POLICY: &str = "io.kubernetes.container.terminationMessagePolicy";
pub const TERMINATION_GRACE_PERIOD: &str = "io.kubernetes.pod.terminationGracePeriod";
pub const PORTS: &str = "io.kubernetes.container.ports";
pub const CONTAINER_TYPE: &str = "io.kubernetes.container.type";
/// Where the kubelet got the pod: `api`, or `file` / `http` for static pods.
pub const CONFIG_SOURCE: &str = "kubernetes.io/config.source";

/// The kind of container, from the `io.kubernetes.container.type` annotation (recent kubelets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerKind {
    Init,
    App,
    Ephemeral,
}

/// Docker's zero time, written for a container that never started or never finished.
const ZERO_TIME_PREFIX: &str = "0001-01-01";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The pause container that holds the pod's namespaces.
    Sandbox,
    /// An app, init or ephemeral container.
    Container,
}

/// What Docker says an instance is doing, reduced to what the Pod status needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    Running,
    /// Created but never started.
    Created,
    /// Exited (or dead, or being removed).
    Exited,
}

/// One inspected kubelet container (an *instance* of a pod container, or a sandbox).
#[derive(Debug, Clone, Copy)]
pub struct Instance<'a> {
    pub inspect: &'a ContainerInspectResponse,
    pub id: &'a str,
    pub labels: &'a HashMap<String, String>,
    pub role: Role,
    /// The container's name in the pod spec (`POD` for sandboxes).
    pub container_name: &'a str,
    pub created: Option<Timestamp>,
    /// The attempt number from the Docker name (`k8s_<c>_<pod>_<ns>_<uid>_<attempt>`).
    pub attempt: Option<i32>,
}

impl<'a> Instance<'a> {
    /// `None` for containers the kubelet did not make.
    pub fn new(inspect: &'a ContainerInspectResponse) -> Option<Self> {
        let labels = inspect.config.as_ref()?.labels.as_ref()?;
        let container_name = labels.get(CONTAINER_NAME_LABEL)?;
        labels.get(POD_UID_LABEL)?;
        let role = match labels.get(DOCKER_TYPE_LABEL).map(String::as_str) {
            Some(SANDBOX_DOCKER_TYPE) => Role::Sandbox,
            Some(_) => Role::Container,
            // Old kubelets did not write the type; the sandbox is the one named POD.
            None if container_name == SANDBOX_CONTAINER_NAME => Role::Sandbox,
            None => Role::Container,
        };
        Some(Instance {
            inspect,
            id: inspect.id.as_deref()?,
            labels,
            role,
            container_name,
            created: inspect.created.as_deref().and_then(docker_time),
            attempt: inspect.name.as_deref().and_then(attempt_from_name),
        })
    }

    pub fn label(&self, key: &str) -> Option<&'a str> {
        self.labels.get(key).map(String::as_str)
    }

    /// A CRI annotation, which Docker holds as the label `annotation.<key>`.
    pub fn annotation(&self, key: &str) -> Option<&'a str> {
        self.label(&format!("{ANNOTATION_PREFIX}{key}"))
    }

    /// The annotation parsed, or `None` with a debug log when it is missing or malformed.
    pub fn parsed_annotation<T: std::str::FromStr>(&self, key: &str) -> Option<T> {
        let raw = self.annotation(key)?;
        match raw.trim().parse() {
            Ok(value) => Some(value),
            Err(_) => {
                log::debug!("container {}: ignoring malformed {key}={raw:?}", self.id);
                None
            }
        }
    }

    /// Without the annotation a container is an app container: init containers cannot be told
    /// apart on older kubelets.
    pub fn kind(&self) -> ContainerKind {
        match self.annotation(CONTAINER_TYPE) {
            Some("init") => ContainerKind::Init,
            Some("ephemeral") => ContainerKind::Ephemeral,
            _ => ContainerKind::App,
        }
    }

    pub fn pod_uid(&self) -> Option<&'a str> {
        self.label(POD_UID_LABEL)
    }

    /// The kubelet's restart count for this instance: the annotation, else the name's attempt.
    pub fn restart_count(&self) -> Option<i32> {
        self.parsed_annotation(RESTART_COUNT).or(self.attempt)
    }

    pub fn run_state(&self) -> RunState {
        let state = self.inspect.state.as_ref();
        if state.and_then(|s| s.running) == Some(true) {
            return RunState::Running;
        }
        // A start that failed leaves the container "created", with an exit code and an error.
        let failed_to_start = state.is_some_and(|s| {
            s.exit_code.is_some_and(|code| code != 0)
                || s.error.as_ref().is_some_and(|e| !e.is_empty())
        });
        match state.and_then(|s| s.status) {
            Some(ContainerStateStatusEnum::CREATED) if !failed_to_start => RunState::Created,
            Some(ContainerStateStatusEnum::RUNNING | ContainerStateStatusEnum::PAUSED) => {
                RunState::Running
            }
            _ => RunState::Exited,
        }
    }

    pub fn started_at(&self) -> Option<Timestamp> {
        self.inspect
            .state
            .as_ref()
            .and_then(|s| s.started_at.as_deref())
            .and_then(docker_time)
    }

    pub fn finished_at(&self) -> Option<Timestamp> {
        self.inspect
            .state
            .as_ref()
            .and_then(|s| s.finished_at.as_deref())
            .and_then(docker_time)
    }

    /// Whether this instance ever ran (Docker keeps the start time after it exits).
    pub fn ever_started(&self) -> bool {
        self.started_at().is_some()
    }

    /// The image ID the instance runs (`sha256:…`).
    pub fn image_id(&self) -> Option<&'a str> {
        self.inspect.image.as_deref()
    }
}

/// Parses a Docker timestamp; Docker's zero time means "never" and gives `None`.
pub fn docker_time(raw: &str) -> Option<Timestamp> {
    if raw.is_empty() || raw.starts_with(ZERO_TIME_PREFIX) {
        return None;
    }
    raw.parse().ok()
}

/// The attempt part of `/k8s_<container>_<pod>_<namespace>_<uid>_<attempt>[_<suffix>]`.
/// None of the parts can hold `_` (they are DNS names or UIDs), so the split is exact.
fn attempt_from_name(name: &str) -> Option<i32> {
    let mut parts = name.trim_start_matches('/').split('_');
    if parts.next() != Some("k8s") {
        return None;
    }
    parts.nth(4)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempt_is_read_from_kubelet_names() {
        assert_eq!(
            attempt_from_name("/k8s_app_web-0_default_0b8c-11_31"),
            Some(31)
        );
        assert_eq!(
            attempt_from_name("/k8s_POD_web-0_default_0b8c-11_2_1a2b3c4d"),
            Some(2)
        );
        assert_eq!(attempt_from_name("/nginx"), None);
        assert_eq!(attempt_from_name("/k8s_app_web-0_default"), None);
    }

    #[test]
    fn docker_zero_time_is_never() {
        assert!(docker_time("0001-01-01T00:00:00Z").is_none());
        assert!(docker_time("").is_none());
        assert!(docker_time("2021-06-01T01:49:36.123456789Z").is_some());
    }
}
