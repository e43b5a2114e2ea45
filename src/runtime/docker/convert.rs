//! `docker inspect` output turned into the runtime-neutral record. Everything that is Docker's
//! way of holding a kubelet pod is decoded here and nowhere else: CRI annotations stored as
//! `annotation.` labels, the attempt in the container name, Docker's zero times, a failed
//! start left in `created`, the image's own defaults merged into the container's config,
//! image labels merged into the container's labels, bridge IPs, `docker://` and
//! `docker-pullable://`.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use bollard::models::{ContainerInspectResponse, ContainerStateStatusEnum, ImageInspect};
use k8s_openapi::jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::kubelet::{CONTAINER_NAME_LABEL, POD_UID_LABEL};

/// The sandbox's container ID, on app containers.
pub const SANDBOX_ID_LABEL: &str = "io.kubernetes.sandbox.id";
use crate::record::{
    ContainerId, EnvVar, ImageRef, Instance, Mount, NamespaceMode, PodRecord, Resources, Sandbox,
    SandboxState, Security, State,
};

/// Docker has no annotations: the kubelet stores each CRI annotation as a label with this
/// prefix.
pub const ANNOTATION_PREFIX: &str = "annotation.";
/// `podsandbox` or `container`.
pub const DOCKER_TYPE_LABEL: &str = "io.kubernetes.docker.type";
const SANDBOX_DOCKER_TYPE: &str = "podsandbox";
/// The sandbox's container name, which is how kubelets that wrote no type label tell it.
const SANDBOX_CONTAINER_NAME: &str = "POD";
/// Docker's zero time, written for a container that never started or never finished.
const ZERO_TIME_PREFIX: &str = "0001-01-01";
const RUNTIME: &str = "docker";

/// What Docker answered about one pod: its containers inspected (every state, every sandbox
/// and instance) and the images they run, keyed by image ID. This is also the form of the
/// recorded fixtures (`scripts/record-fixture`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Inspected {
    pub containers: Vec<ContainerInspectResponse>,
    pub images: HashMap<String, ImageInspect>,
}

/// The record of one pod. Containers the kubelet did not make are left out.
pub fn pod_record(inspected: &Inspected) -> PodRecord {
    let mut record = PodRecord::default();
    for container in &inspected.containers {
        let image = container
            .image
            .as_deref()
            .and_then(|id| inspected.images.get(id));
        add_container(&mut record, container, image);
    }
    record
}

/// Adds one inspected container, with the image it runs when known, to a pod's record: what
/// [`pod_record`] does for each of its containers. A container the kubelet did not make adds
/// nothing.
pub fn add_container(
    record: &mut PodRecord,
    container: &ContainerInspectResponse,
    image: Option<&ImageInspect>,
) {
    let Some(docker) = Kubelet::of(container) else {
        return;
    };
    match docker.role {
        Role::Sandbox => record.sandboxes.push(sandbox(&docker, image)),
        Role::Container => record.containers.push(instance(&docker, image)),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// The pause container that holds the pod's namespaces.
    Sandbox,
    /// An app, init or ephemeral container.
    Container,
}

/// A container the kubelet made, with its labels split into labels and annotations.
struct Kubelet<'a> {
    inspect: &'a ContainerInspectResponse,
    role: Role,
    name: &'a str,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
}

impl<'a> Kubelet<'a> {
    /// `None` for containers the kubelet did not make.
    fn of(inspect: &'a ContainerInspectResponse) -> Option<Self> {
        let all = inspect.config.as_ref()?.labels.as_ref()?;
        let name = all.get(CONTAINER_NAME_LABEL)?;
        all.get(POD_UID_LABEL)?;
        inspect.id.as_deref()?;
        let role = match all.get(DOCKER_TYPE_LABEL).map(String::as_str) {
            Some(SANDBOX_DOCKER_TYPE) => Role::Sandbox,
            Some(_) => Role::Container,
            // Old kubelets did not write the type; the sandbox is the one named POD.
            None if name == SANDBOX_CONTAINER_NAME => Role::Sandbox,
            None => Role::Container,
        };
        let mut labels = BTreeMap::new();
        let mut annotations = BTreeMap::new();
        for (key, value) in all {
            match key.strip_prefix(ANNOTATION_PREFIX) {
                Some(annotation) => annotations.insert(annotation.to_string(), value.clone()),
                None => labels.insert(key.clone(), value.clone()),
            };
        }
        Some(Kubelet {
            inspect,
            role,
            name,
            labels,
            annotations,
        })
    }

    fn id(&self) -> ContainerId {
        docker_id(self.inspect.id.as_deref().unwrap_or_default())
    }

    fn host_mode(&self, mode: fn(&bollard::models::HostConfig) -> Option<&String>) -> bool {
        self.inspect
            .host_config
            .as_ref()
            .and_then(mode)
            .is_some_and(|mode| mode == "host")
    }
}

fn docker_id(id: &str) -> ContainerId {
    ContainerId {
        runtime: RUNTIME.to_string(),
        id: id.to_string(),
    }
}

fn sandbox(docker: &Kubelet, image: Option<&ImageInspect>) -> Sandbox {
    let inspect = docker.inspect;
    let state = inspect.state.as_ref();
    let host = inspect.host_config.as_ref();
    let namespace = |host: bool| {
        if host {
            NamespaceMode::Node
        } else {
            NamespaceMode::Pod
        }
    };
    // Docker merges the image's labels into the container's: the pause image's are not the
    // pod's.
    let image_labels = image
        .and_then(|image| image.config.as_ref())
        .and_then(|config| config.labels.as_ref());
    let labels = docker
        .labels
        .iter()
        .filter(|(key, value)| image_labels.and_then(|l| l.get(*key)) != Some(*value))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    let network_mode = host.and_then(|h| h.network_mode.as_deref());
    Sandbox {
        id: docker.id(),
        attempt: inspect.name.as_deref().and_then(attempt_from_name),
        created: inspect.created.as_deref().and_then(docker_time),
        started: state
            .and_then(|s| s.started_at.as_deref())
            .and_then(docker_time),
        state: match run_state(docker) {
            RunState::Running => SandboxState::Ready,
            RunState::Created | RunState::Exited => SandboxState::NotReady,
        },
        labels,
        annotations: docker.annotations.clone(),
        network: namespace(network_mode == Some("host")),
        pid_namespace: namespace(docker.host_mode(|h| h.pid_mode.as_ref())),
        ipc_namespace: namespace(docker.host_mode(|h| h.ipc_mode.as_ref())),
        // Under CNI (or kubenet) Docker gives the sandbox no network of its own and never
        // learns the pod's addresses.
        ips: (network_mode != Some("none")).then(|| bridge_ips(inspect)),
        cgroup_parent: host.and_then(|h| h.cgroup_parent.clone()),
        pid: state
            .and_then(|s| s.pid)
            .and_then(|pid| u32::try_from(pid).ok())
            .filter(|pid| *pid > 0),
    }
}

/// The addresses of the sandbox's endpoints on Docker's own networks.
fn bridge_ips(inspect: &ContainerInspectResponse) -> Vec<IpAddr> {
    let endpoints = inspect
        .network_settings
        .as_ref()
        .and_then(|n| n.networks.as_ref())
        .into_iter()
        .flat_map(|networks| networks.values());
    let mut ips = Vec::new();
    for endpoint in endpoints {
        for ip in [&endpoint.ip_address, &endpoint.global_ipv6_address]
            .into_iter()
            .flatten()
            .filter_map(|ip| ip.parse::<IpAddr>().ok())
        {
            if !ips.contains(&ip) {
                ips.push(ip);
            }
        }
    }
    ips
}

fn instance(docker: &Kubelet, image: Option<&ImageInspect>) -> Instance {
    let inspect = docker.inspect;
    let config = inspect.config.as_ref();
    let host = inspect.host_config.as_ref();
    let image_config = image.and_then(|image| image.config.as_ref());

    // Docker fills in the image's entrypoint and, when the entrypoint is not overridden, its
    // cmd; only what differs from the image came from the pod spec.
    let entrypoint = config
        .and_then(|c| c.entrypoint.clone())
        .unwrap_or_default();
    let cmd = config.and_then(|c| c.cmd.clone()).unwrap_or_default();
    let image_entrypoint = image_config
        .and_then(|c| c.entrypoint.clone())
        .unwrap_or_default();
    let image_cmd = image_config.and_then(|c| c.cmd.clone()).unwrap_or_default();
    let command =
        Some(entrypoint).filter(|e| !e.is_empty() && (image.is_none() || *e != image_entrypoint));
    let args = Some(cmd)
        .filter(|c| !c.is_empty() && (image.is_none() || command.is_some() || *c != image_cmd));
    let working_dir = config
        .and_then(|c| c.working_dir.clone())
        .filter(|dir| !dir.is_empty())
        .filter(|dir| image_config.and_then(|c| c.working_dir.as_ref()) != Some(dir));
    let image_env = image_config
        .and_then(|config| config.env.as_deref())
        .unwrap_or_default();
    let env = config
        .and_then(|c| c.env.as_deref())
        .unwrap_or_default()
        .iter()
        .filter(|entry| !image_env.contains(entry))
        .map(|entry| {
            let (name, value) = entry.split_once('=').unwrap_or((entry, ""));
            EnvVar {
                name: name.to_string(),
                value: value.to_string(),
            }
        })
        .collect();

    Instance {
        id: docker.id(),
        name: docker.name.to_string(),
        attempt: inspect.name.as_deref().and_then(attempt_from_name),
        created: inspect.created.as_deref().and_then(docker_time),
        sandbox_id: docker
            .labels
            .get(SANDBOX_ID_LABEL)
            .filter(|id| !id.is_empty())
            .map(|id| docker_id(id)),
        state: state(docker),
        oom_killed: inspect.state.as_ref().and_then(|s| s.oom_killed) == Some(true),
        image: image_ref(inspect, image),
        labels: docker.labels.clone(),
        annotations: docker.annotations.clone(),
        mounts: mounts(inspect),
        resources: Resources {
            cpu_shares: host.and_then(|h| h.cpu_shares),
            cpu_quota: host.and_then(|h| h.cpu_quota),
            cpu_period: host.and_then(|h| h.cpu_period),
            memory_limit: host.and_then(|h| h.memory),
            oom_score_adj: host.and_then(|h| h.oom_score_adj),
        },
        cgroup_parent: host.and_then(|h| h.cgroup_parent.clone()),
        // The kubelet's app containers join the sandbox's network and, for host-network pods
        // only, the host's UTS namespace (older kubelets gave them the host network directly).
        host_network: docker.host_mode(|h| h.network_mode.as_ref())
            || docker.host_mode(|h| h.uts_mode.as_ref()),
        command,
        args,
        env,
        working_dir,
        tty: config.and_then(|c| c.tty) == Some(true),
        stdin: config.and_then(|c| c.open_stdin) == Some(true),
        stdin_once: config.and_then(|c| c.stdin_once) == Some(true),
        security: Security {
            privileged: host.and_then(|h| h.privileged) == Some(true),
            read_only_root_filesystem: host.and_then(|h| h.readonly_rootfs) == Some(true),
            capabilities_add: host.and_then(|h| h.cap_add.clone()).unwrap_or_default(),
            capabilities_drop: host.and_then(|h| h.cap_drop.clone()).unwrap_or_default(),
        },
    }
}

/// How the image is named: its first repo tag (what the user wrote, give or take a registry
/// prefix), else what the container was created from (the kubelet passes the image ID).
fn image_ref(inspect: &ContainerInspectResponse, image: Option<&ImageInspect>) -> ImageRef {
    let tag = image
        .and_then(|image| image.repo_tags.as_ref())
        .and_then(|tags| tags.iter().find(|tag| tag.as_str() != "<none>:<none>"))
        .cloned();
    let image_id = inspect.image.clone().unwrap_or_default();
    let repo_digest = image
        .and_then(|image| image.repo_digests.as_ref())
        .and_then(|digests| digests.first());
    ImageRef {
        spec: tag
            .clone()
            .or_else(|| inspect.config.as_ref().and_then(|c| c.image.clone()))
            .unwrap_or_default(),
        status: tag.unwrap_or_else(|| image_id.clone()),
        id: match repo_digest {
            Some(digest) => format!("docker-pullable://{digest}"),
            None => format!("docker://{image_id}"),
        },
    }
}

/// The bind mounts: the kubelet only binds, Docker's own volumes are not the pod's. In the
/// kubelet's order, which is `HostConfig.Binds`': Docker lists `Mounts` in the order of a Go
/// map, a new one on every inspect.
fn mounts(inspect: &ContainerInspectResponse) -> Vec<Mount> {
    let mut mounts: Vec<Mount> = inspect
        .mounts
        .iter()
        .flatten()
        .filter(|mount| mount.typ.as_deref().is_none_or(|typ| typ == "bind"))
        .filter_map(|mount| {
            Some(Mount {
                container_path: mount.destination.clone()?,
                host_path: mount.source.clone()?,
                read_only: mount.rw == Some(false),
            })
        })
        .collect();
    // `source:destination[:options]`
    let bound: Vec<&str> = inspect
        .host_config
        .as_ref()
        .and_then(|host| host.binds.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|bind| bind.split(':').nth(1))
        .collect();
    mounts.sort_by_key(|mount| {
        bound
            .iter()
            .position(|destination| *destination == mount.container_path)
            .unwrap_or(usize::MAX)
    });
    mounts
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RunState {
    Running,
    Created,
    Exited,
}

fn run_state(docker: &Kubelet) -> RunState {
    let state = docker.inspect.state.as_ref();
    if state.and_then(|s| s.running) == Some(true) {
        return RunState::Running;
    }
    // A start that failed leaves the container "created", with an exit code and an error.
    let failed_to_start = state.is_some_and(|s| {
        s.exit_code.is_some_and(|code| code != 0) || s.error.as_ref().is_some_and(|e| !e.is_empty())
    });
    match state.and_then(|s| s.status) {
        Some(ContainerStateStatusEnum::CREATED) if !failed_to_start => RunState::Created,
        Some(ContainerStateStatusEnum::RUNNING | ContainerStateStatusEnum::PAUSED) => {
            RunState::Running
        }
        _ => RunState::Exited,
    }
}

fn state(docker: &Kubelet) -> State {
    let state = docker.inspect.state.as_ref();
    let started = state
        .and_then(|s| s.started_at.as_deref())
        .and_then(docker_time);
    match run_state(docker) {
        RunState::Running => State::Running { started },
        RunState::Created => State::Created,
        RunState::Exited => {
            let exit_code = state
                .and_then(|s| s.exit_code)
                .and_then(|code| i32::try_from(code).ok())
                .unwrap_or_default();
            let finished = state
                .and_then(|s| s.finished_at.as_deref())
                .and_then(docker_time);
            let oom_killed = state.and_then(|s| s.oom_killed) == Some(true);
            let reason = match (finished, oom_killed, exit_code) {
                // Docker never started it (bad command, missing mount): cri-dockerd's reason.
                (None, _, code) if code != 0 => "ContainerCannotRun",
                (_, true, _) => "OOMKilled",
                (_, false, 0) => "Completed",
                (_, false, _) => "Error",
            };
            State::Exited {
                exit_code,
                reason: Some(reason.to_string()),
                message: state
                    .and_then(|s| s.error.clone())
                    .filter(|error| !error.is_empty()),
                started,
                finished,
            }
        }
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
fn attempt_from_name(name: &str) -> Option<u32> {
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
    fn mounts_keep_the_kubelets_order_whatever_order_docker_lists_them_in() {
        let bind = |destination: &str| {
            serde_json::json!({"Type": "bind", "Source": format!("/host{destination}"),
                               "Destination": destination, "RW": true})
        };
        let inspect: ContainerInspectResponse = serde_json::from_value(serde_json::json!({
            "HostConfig": {"Binds": ["/host/etc/db:/etc/db:ro", "/host/cache:/cache",
                                     "/host/dev/termination-log:/dev/termination-log"]},
            "Mounts": [bind("/dev/termination-log"), bind("/cache"), bind("/extra"),
                       bind("/etc/db")],
        }))
        .unwrap_or_default();
        let order: Vec<String> = mounts(&inspect)
            .into_iter()
            .map(|m| m.container_path)
            .collect();
        assert_eq!(
            order,
            ["/etc/db", "/cache", "/dev/termination-log", "/extra"]
        );
    }

    #[test]
    fn docker_zero_time_is_never() {
        assert!(docker_time("0001-01-01T00:00:00Z").is_none());
        assert!(docker_time("").is_none());
        assert!(docker_time("2021-06-01T01:49:36.123456789Z").is_some());
    }

    fn inspected(container: serde_json::Value, image: serde_json::Value) -> Inspected {
        serde_json::from_value(serde_json::json!({
            "containers": [container],
            "images": {"sha256:1": image},
        }))
        .unwrap_or_default()
    }

    #[test]
    fn image_defaults_are_not_the_pod_spec() {
        let record = pod_record(&inspected(
            serde_json::json!({
                "Id": "c1", "Image": "sha256:1", "Name": "/k8s_app_web_ns_u1_0",
                "Config": {
                    "Labels": {"io.kubernetes.container.name": "app", "io.kubernetes.pod.uid": "u1",
                               "io.kubernetes.sandbox.id": "s1",
                               "annotation.io.kubernetes.container.restartCount": "0"},
                    "Cmd": ["sleep", "1"], "Env": ["PATH=/bin", "DB_PASSWORD=hunter2"],
                    "WorkingDir": "/srv"
                },
                "State": {"Status": "running", "Running": true, "StartedAt": "2026-01-01T00:00:00Z"}
            }),
            serde_json::json!({"Id": "sha256:1", "RepoTags": ["app:1"],
                "Config": {"Cmd": ["sleep", "1"], "Env": ["PATH=/bin"], "WorkingDir": "/srv"}}),
        ));
        let [instance] = record.containers.as_slice() else {
            panic!("one instance: {record:?}");
        };
        assert_eq!(instance.command, None);
        assert_eq!(instance.args, None);
        assert_eq!(instance.working_dir, None);
        assert_eq!(
            instance.env,
            [EnvVar {
                name: "DB_PASSWORD".into(),
                value: "hunter2".into()
            }]
        );
        assert_eq!(
            instance
                .annotations
                .get("io.kubernetes.container.restartCount"),
            Some(&"0".to_string())
        );
        assert!(
            !instance
                .labels
                .keys()
                .any(|k| k.starts_with(ANNOTATION_PREFIX))
        );
        assert_eq!(instance.id.to_string(), "docker://c1");
        assert_eq!(
            instance
                .sandbox_id
                .as_ref()
                .map(ToString::to_string)
                .as_deref(),
            Some("docker://s1")
        );
        assert_eq!(instance.image.spec, "app:1");
        assert_eq!(instance.image.id, "docker://sha256:1");
        assert_eq!(instance.attempt, Some(0));
    }

    #[test]
    fn a_failed_start_left_in_created_cannot_run() {
        let record = pod_record(&inspected(
            serde_json::json!({
                "Id": "c2", "Image": "sha256:1", "Created": "2026-01-01T00:00:00Z",
                "Config": {"Labels": {"io.kubernetes.container.name": "app", "io.kubernetes.pod.uid": "u1"}},
                "State": {"Status": "created", "ExitCode": 127, "Error": "exec: \"nope\": not found",
                          "StartedAt": "0001-01-01T00:00:00Z", "FinishedAt": "0001-01-01T00:00:00Z"}
            }),
            serde_json::json!({}),
        ));
        assert_eq!(
            record.containers.first().map(|i| i.state.clone()),
            Some(State::Exited {
                exit_code: 127,
                reason: Some("ContainerCannotRun".into()),
                message: Some("exec: \"nope\": not found".into()),
                started: None,
                finished: None,
            })
        );
    }

    #[test]
    fn containers_the_kubelet_did_not_make_are_left_out() {
        let record = pod_record(&inspected(
            serde_json::json!({"Id": "x", "Config": {"Labels": {"io.kubernetes.pod.uid": "u1"}}}),
            serde_json::json!({}),
        ));
        assert!(record.containers.is_empty() && record.sandboxes.is_empty());
    }
}
