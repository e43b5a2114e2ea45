//! The kubelet's own vocabulary: the label and annotation keys it writes on every sandbox and
//! container, whatever the runtime (CRI annotations; Docker stores them as prefixed labels,
//! which its backend decodes), and the layout of its root directory.

use std::path::Path;

pub const POD_NAME_LABEL: &str = "io.kubernetes.pod.name";
pub const POD_NAMESPACE_LABEL: &str = "io.kubernetes.pod.namespace";
pub const POD_UID_LABEL: &str = "io.kubernetes.pod.uid";
pub const CONTAINER_NAME_LABEL: &str = "io.kubernetes.container.name";
/// The kubelet's own labels all start with this; they are bookkeeping, not pod labels.
pub const KUBELET_LABEL_PREFIX: &str = "io.kubernetes.";

pub const RESTART_COUNT: &str = "io.kubernetes.container.restartCount";
pub const TERMINATION_MESSAGE_PATH: &str = "io.kubernetes.container.terminationMessagePath";
pub const TERMINATION_MESSAGE_POLICY: &str = "io.kubernetes.container.terminationMessagePolicy";
/// The policy under which the kubelet shows the log's tail when the message file is empty.
pub const FALLBACK_TO_LOGS_ON_ERROR: &str = "FallbackToLogsOnError";
/// cri-dockerd's reason for a container that never started (it has no log).
pub const CONTAINER_CANNOT_RUN: &str = "ContainerCannotRun";
pub const TERMINATION_GRACE_PERIOD: &str = "io.kubernetes.pod.terminationGracePeriod";
/// Written only on containers created for a pod already being deleted: its
/// `metadata.deletionGracePeriodSeconds`.
pub const DELETION_GRACE_PERIOD: &str = "io.kubernetes.pod.deletionGracePeriod";
pub const PORTS: &str = "io.kubernetes.container.ports";
pub const PRE_STOP_HANDLER: &str = "io.kubernetes.container.preStopHandler";
/// Written by some kubelet forks only: honoured when present, never relied on.
pub const CONTAINER_TYPE: &str = "io.kubernetes.container.type";
/// Where the kubelet got the pod: `api`, or `file` / `http` for static pods.
pub const CONFIG_SOURCE: &str = "kubernetes.io/config.source";

/// The kind of container, from the `io.kubernetes.container.type` annotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerKind {
    Init,
    App,
    Ephemeral,
}

impl ContainerKind {
    /// Without the annotation a container is an app container.
    pub fn from_annotation(value: Option<&str>) -> Self {
        match value {
            Some("init") => ContainerKind::Init,
            Some("ephemeral") => ContainerKind::Ephemeral,
            _ => ContainerKind::App,
        }
    }
}

/// The log of one instance as the kubelet lays it out:
/// `<pod-logs>/<namespace>_<name>_<uid>/<container>/<restart count>.log`.
pub fn container_log_path(
    pod_logs: &Path,
    namespace: &str,
    name: &str,
    uid: &str,
    container: &str,
    restart_count: i32,
) -> std::path::PathBuf {
    pod_logs
        .join(format!("{namespace}_{name}_{uid}"))
        .join(container)
        .join(format!("{restart_count}.log"))
}

/// Where a bind mount's source comes from, told by the kubelet's directory layout.
#[derive(Debug, PartialEq, Eq)]
pub enum MountSource<'a> {
    /// `<root>/pods/<uid>/volumes/<plugin>/<name>`; the plugin dir uses `~` for `/`.
    Volume { plugin: String, name: &'a str },
    /// `<root>/pods/<uid>/volume-subpaths/<name>/<container>/<index>`.
    SubPath { name: &'a str },
    /// The termination-log file and `/etc/hosts`: the kubelet's plumbing, not volumes.
    Plumbing,
    /// Anything else: a host path.
    Host,
}

pub fn mount_source<'a>(source: &'a str, uid: &str, kubelet_root: &Path) -> MountSource<'a> {
    let pod_dir = kubelet_root.join("pods").join(uid);
    let Ok(rest) = Path::new(source).strip_prefix(&pod_dir) else {
        return MountSource::Host;
    };
    let parts: Vec<&str> = rest.iter().filter_map(|part| part.to_str()).collect();
    match parts.as_slice() {
        ["volumes", plugin, name, ..] => MountSource::Volume {
            plugin: plugin.replace('~', "/"),
            name,
        },
        ["volume-subpaths", name, ..] => MountSource::SubPath { name },
        _ => MountSource::Plumbing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubelet_paths_name_their_volumes() {
        let root = Path::new("/var/lib/kubelet");
        assert_eq!(
            mount_source(
                "/var/lib/kubelet/pods/u1/volumes/kubernetes.io~secret/token",
                "u1",
                root
            ),
            MountSource::Volume {
                plugin: "kubernetes.io/secret".to_string(),
                name: "token"
            }
        );
        assert_eq!(
            mount_source("/var/lib/kubelet/pods/u1/etc-hosts", "u1", root),
            MountSource::Plumbing
        );
        assert_eq!(
            mount_source("/var/lib/kubelet/pods/u1/containers/app/1a2b", "u1", root),
            MountSource::Plumbing
        );
        assert_eq!(
            mount_source("/etc/kubernetes/scheduler.conf", "u1", root),
            MountSource::Host
        );
        // Another pod's directory is not this pod's volume.
        assert_eq!(
            mount_source("/var/lib/kubelet/pods/u2/volumes/x/y", "u1", root),
            MountSource::Host
        );
    }

    #[test]
    fn only_the_annotation_makes_an_init_container() {
        assert_eq!(
            ContainerKind::from_annotation(Some("init")),
            ContainerKind::Init
        );
        assert_eq!(
            ContainerKind::from_annotation(Some("ephemeral")),
            ContainerKind::Ephemeral
        );
        assert_eq!(ContainerKind::from_annotation(None), ContainerKind::App);
    }
}
