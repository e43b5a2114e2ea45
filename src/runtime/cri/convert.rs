//! CRI answers turned into the runtime-neutral record. Labels and annotations come verbatim;
//! what the kubelet asked for (command, args, env, working dir, security) comes from the
//! verbose `info.config` containerd keeps; where a runtime keeps less (CRI-O, cri-dockerd),
//! the plain status fields and the runtime spec stand in, and what stays ambiguous is left out.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use k8s_openapi::jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::cri_api::{
    ContainerState, ContainerStatusResponse, ImageStatusResponse, LinuxContainerResources,
    NamespaceMode as CriNamespaceMode, PodSandboxState, PodSandboxStatusResponse,
};
use crate::record::{
    ContainerId, EnvVar, ImageRef, Instance, Mount, NamespaceMode, PodRecord, Resources, Sandbox,
    SandboxState, Security, State,
};

/// CRI-O keeps the pod's cgroup parent in this sandbox annotation.
const CRIO_CGROUP_PARENT: &str = "io.kubernetes.cri-o.CgroupParent";

/// What a CRI runtime answered about one pod: the verbose status of each sandbox and
/// container, and of the images they run where those were needed. This is also the form of
/// the recorded fixtures (`tests/fixtures/cri/`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Answered {
    /// `Version().runtime_name`: the prefix of container IDs (`containerd`, `cri-o`).
    pub runtime_name: String,
    pub sandboxes: Vec<PodSandboxStatusResponse>,
    pub containers: Vec<ContainerStatusResponse>,
    /// `ImageStatus(verbose)` by image reference, for containers without `info.config`.
    pub images: HashMap<String, ImageStatusResponse>,
    /// Each container's sandbox as `ListContainers` named it (`pod_sandbox_id`), by container
    /// ID: for runtimes whose verbose info does not say.
    pub sandbox_ids: HashMap<String, String>,
}

pub fn pod_record(answered: &Answered) -> PodRecord {
    PodRecord {
        sandboxes: answered
            .sandboxes
            .iter()
            .filter_map(|sandbox| self::sandbox(&answered.runtime_name, sandbox))
            .collect(),
        containers: answered
            .containers
            .iter()
            .filter_map(|container| instance(answered, container))
            .collect(),
    }
}

/// A nanosecond timestamp; CRI's zero means "never".
fn time(nanos: i64) -> Option<Timestamp> {
    (nanos > 0)
        .then(|| Timestamp::from_nanosecond(i128::from(nanos)).ok())
        .flatten()
}

fn container_id(runtime: &str, id: &str) -> ContainerId {
    ContainerId {
        runtime: runtime.to_string(),
        id: id.to_string(),
    }
}

/// The verbose `info` map's `info` key: a JSON document whose shape each runtime chooses,
/// read straight into the few fields wanted (the OCI spec in it is most of an answer's bytes:
/// no tree of it is built).
fn info_json<T: serde::de::DeserializeOwned + Default>(info: &HashMap<String, String>) -> T {
    info.get("info")
        .and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or_default()
}

/// Sandbox verbose info, the keys containerd and CRI-O write that are read here.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct SandboxInfo {
    pid: Option<u32>,
    config: SandboxConfigInfo,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct SandboxConfigInfo {
    linux: SandboxLinuxInfo,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct SandboxLinuxInfo {
    cgroup_parent: String,
}

fn sandbox(runtime: &str, answer: &PodSandboxStatusResponse) -> Option<Sandbox> {
    let status = answer.status.as_ref()?;
    let info: SandboxInfo = info_json(&answer.info);
    let ready = status.state == PodSandboxState::SandboxReady as i32;
    let options = status
        .linux
        .as_ref()
        .and_then(|linux| linux.namespaces.as_ref())
        .and_then(|namespaces| namespaces.options.as_ref());
    let mode = |mode: Option<i32>| {
        if mode == Some(CriNamespaceMode::Node as i32) {
            NamespaceMode::Node
        } else {
            NamespaceMode::Pod
        }
    };
    // The runtime reports the pod's addresses only while the sandbox is ready.
    let ips = status
        .network
        .as_ref()
        .filter(|_| ready)
        .map(|network| {
            std::iter::once(network.ip.as_str())
                .chain(network.additional_ips.iter().map(|ip| ip.ip.as_str()))
                .filter_map(|ip| ip.parse::<IpAddr>().ok())
                .collect()
        })
        .unwrap_or_default();
    let cgroup_parent = Some(info.config.linux.cgroup_parent)
        .filter(|parent| !parent.is_empty())
        .or_else(|| status.annotations.get(CRIO_CGROUP_PARENT).cloned());
    // The sandbox is created and started in one call: CRI keeps one time for both.
    let created = time(status.created_at);
    Some(Sandbox {
        id: container_id(runtime, &status.id),
        attempt: status.metadata.as_ref().map(|m| m.attempt),
        created,
        started: created,
        state: if ready {
            SandboxState::Ready
        } else {
            SandboxState::NotReady
        },
        labels: sorted(&status.labels),
        annotations: sorted(&status.annotations),
        network: mode(options.map(|o| o.network)),
        pid_namespace: mode(options.map(|o| o.pid)),
        ipc_namespace: mode(options.map(|o| o.ipc)),
        ips: Some(ips),
        cgroup_parent,
        pid: info.pid.filter(|pid| *pid > 0),
    })
}

fn sorted(map: &HashMap<String, String>) -> BTreeMap<String, String> {
    map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// Container verbose info: containerd's `config` is the ContainerConfig as the kubelet sent
/// it; CRI-O has only the merged `runtimeSpec` and `privileged`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ContainerInfo {
    config: Option<ConfigInfo>,
    /// containerd and CRI-O both write it.
    #[serde(rename = "sandboxID")]
    sandbox_id: String,
    #[serde(rename = "runtimeSpec")]
    runtime_spec: RuntimeSpec,
    privileged: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ConfigInfo {
    image: ImageInfo,
    command: Vec<String>,
    args: Vec<String>,
    working_dir: String,
    envs: Vec<KeyValue>,
    tty: bool,
    stdin: bool,
    stdin_once: bool,
    linux: ConfigLinux,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ImageInfo {
    user_specified_image: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct KeyValue {
    key: String,
    value: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ConfigLinux {
    resources: Option<LinuxContainerResources>,
    security_context: SecurityInfo,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct SecurityInfo {
    privileged: bool,
    readonly_rootfs: bool,
    capabilities: CapabilitiesInfo,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct CapabilitiesInfo {
    add_capabilities: Vec<String>,
    drop_capabilities: Vec<String>,
}

/// The OCI runtime spec, as far as it is read here.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RuntimeSpec {
    process: Option<SpecProcess>,
    linux: SpecLinux,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct SpecProcess {
    args: Vec<String>,
    env: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct SpecLinux {
    #[serde(rename = "cgroupsPath")]
    cgroups_path: String,
}

/// `ImageStatus(verbose)`'s info, as far as it is read here.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ImageInfoDoc {
    #[serde(rename = "imageSpec")]
    image_spec: ImageSpecDoc,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ImageSpecDoc {
    config: Option<ImageConfig>,
}

/// The image config, from `ImageStatus(verbose)`'s info (`imageSpec.config`).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ImageConfig {
    #[serde(rename = "Entrypoint")]
    entrypoint: Vec<String>,
    #[serde(rename = "Cmd")]
    cmd: Vec<String>,
    #[serde(rename = "Env")]
    env: Vec<String>,
}

fn image_config(image: Option<&ImageStatusResponse>) -> Option<ImageConfig> {
    let info: ImageInfoDoc = info_json(&image?.info);
    info.image_spec.config
}

fn instance(answered: &Answered, answer: &ContainerStatusResponse) -> Option<Instance> {
    let status = answer.status.as_ref()?;
    let metadata = status.metadata.as_ref()?;
    let info: ContainerInfo = info_json(&answer.info);
    let runtime = &answered.runtime_name;

    let state = match ContainerState::try_from(status.state) {
        Ok(ContainerState::ContainerCreated) => State::Created,
        Ok(ContainerState::ContainerRunning) => State::Running {
            started: time(status.started_at),
        },
        Ok(ContainerState::ContainerExited) | Ok(ContainerState::ContainerUnknown) | Err(_) => {
            State::Exited {
                exit_code: status.exit_code,
                reason: Some(status.reason.clone()).filter(|r| !r.is_empty()),
                message: Some(status.message.clone()).filter(|m| !m.is_empty()),
                started: time(status.started_at),
                finished: time(status.finished_at),
            }
        }
    };
    let shown_image = status
        .image
        .as_ref()
        .map(|image| image.image.clone())
        .unwrap_or_default();
    let spec_image = info
        .config
        .as_ref()
        .map(|config| config.image.user_specified_image.clone())
        .filter(|image| !image.is_empty())
        .unwrap_or_else(|| shown_image.clone());

    let requested = match &info.config {
        Some(config) => requested_by_config(config),
        None => requested_by_spec(&info.runtime_spec, answered.images.get(&status.image_ref)),
    };
    let linux_resources = status
        .resources
        .as_ref()
        .and_then(|resources| resources.linux.clone())
        .or_else(|| {
            info.config
                .as_ref()
                .and_then(|config| config.linux.resources.clone())
        });
    let security = info
        .config
        .as_ref()
        .map(|config| &config.linux.security_context);

    Some(Instance {
        id: container_id(runtime, &status.id),
        name: metadata.name.clone(),
        attempt: Some(metadata.attempt),
        created: time(status.created_at),
        sandbox_id: Some(info.sandbox_id.as_str())
            .filter(|id| !id.is_empty())
            .or_else(|| answered.sandbox_ids.get(&status.id).map(String::as_str))
            .filter(|id| !id.is_empty())
            .map(|id| container_id(runtime, id)),
        oom_killed: status.reason == "OOMKilled",
        state,
        image: ImageRef {
            spec: spec_image,
            status: shown_image,
            id: status.image_ref.clone(),
        },
        labels: sorted(&status.labels),
        annotations: sorted(&status.annotations),
        mounts: status
            .mounts
            .iter()
            .map(|mount| Mount {
                container_path: mount.container_path.clone(),
                host_path: mount.host_path.clone(),
                read_only: mount.readonly,
            })
            .collect(),
        resources: linux_resources
            .map(|linux| Resources {
                cpu_shares: Some(linux.cpu_shares),
                cpu_quota: Some(linux.cpu_quota),
                cpu_period: Some(linux.cpu_period),
                memory_limit: Some(linux.memory_limit_in_bytes),
                oom_score_adj: Some(linux.oom_score_adj),
            })
            .unwrap_or_default(),
        cgroup_parent: Some(info.runtime_spec.linux.cgroups_path.clone())
            .filter(|path| !path.is_empty()),
        // The sandbox tells: CRI containers have no network mode of their own.
        host_network: false,
        command: requested.command,
        args: requested.args,
        env: requested.env,
        working_dir: requested.working_dir,
        tty: requested.tty,
        stdin: requested.stdin,
        stdin_once: requested.stdin_once,
        security: Security {
            privileged: security.is_some_and(|s| s.privileged) || info.privileged,
            read_only_root_filesystem: security.is_some_and(|s| s.readonly_rootfs),
            capabilities_add: security
                .map(|s| s.capabilities.add_capabilities.clone())
                .unwrap_or_default(),
            capabilities_drop: security
                .map(|s| s.capabilities.drop_capabilities.clone())
                .unwrap_or_default(),
        },
    })
}

/// What the pod spec asked the container to run.
#[derive(Debug, Default)]
struct Requested {
    command: Option<Vec<String>>,
    args: Option<Vec<String>>,
    env: Vec<EnvVar>,
    working_dir: Option<String>,
    tty: bool,
    stdin: bool,
    stdin_once: bool,
}

/// containerd: the ContainerConfig the kubelet sent holds exactly what the spec asked for.
fn requested_by_config(config: &ConfigInfo) -> Requested {
    let listed = |items: &Vec<String>| Some(items.clone()).filter(|items| !items.is_empty());
    Requested {
        command: listed(&config.command),
        args: listed(&config.args),
        env: config
            .envs
            .iter()
            .map(|var| EnvVar {
                name: var.key.clone(),
                value: var.value.clone(),
            })
            .collect(),
        working_dir: Some(config.working_dir.clone()).filter(|dir| !dir.is_empty()),
        tty: config.tty,
        stdin: config.stdin,
        stdin_once: config.stdin_once,
    }
}

/// Environment entries a runtime adds on its own (CRI-O), not the pod spec's.
const RUNTIME_DEFAULT_ENV: [&str; 2] = ["HOSTNAME", "TERM"];

/// CRI-O (and any runtime without `info.config`): the runtime spec holds the process as it
/// runs, merged with the image's Entrypoint, Cmd and Env. The image's part is taken away as
/// on Docker; without the image's config nothing can be told apart and all is left out.
fn requested_by_spec(spec: &RuntimeSpec, image: Option<&ImageStatusResponse>) -> Requested {
    let (Some(process), Some(image)) = (spec.process.as_ref(), image_config(image)) else {
        return Requested::default();
    };
    let args = &process.args;
    let (command, args) = if *args == [image.entrypoint.clone(), image.cmd.clone()].concat() {
        (None, None)
    } else if !image.entrypoint.is_empty() && args.starts_with(&image.entrypoint) {
        (None, Some(args[image.entrypoint.len()..].to_vec()))
    } else {
        // A command of the spec's own; where its args start cannot be told.
        (Some(args.clone()), None)
    };
    let env = process
        .env
        .iter()
        .filter(|entry| !image.env.contains(entry))
        .filter_map(|entry| {
            let (name, value) = entry.split_once('=').unwrap_or((entry, ""));
            (!RUNTIME_DEFAULT_ENV.contains(&name)).then(|| EnvVar {
                name: name.to_string(),
                value: value.to_string(),
            })
        })
        .collect();
    Requested {
        command: command.filter(|c| !c.is_empty()),
        args: args.filter(|a| !a.is_empty()),
        env,
        ..Requested::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cri_api::{ContainerMetadata, ContainerStatus, ImageSpec};

    fn container(info: serde_json::Value) -> ContainerStatusResponse {
        ContainerStatusResponse {
            status: Some(ContainerStatus {
                id: "c1".into(),
                metadata: Some(ContainerMetadata {
                    name: "app".into(),
                    attempt: 2,
                }),
                state: ContainerState::ContainerExited as i32,
                created_at: 1_800_000_000_000_000_000,
                started_at: 0,
                finished_at: 0,
                exit_code: 128,
                reason: "StartError".into(),
                message: "exec: \"nope\": not found".into(),
                image: Some(ImageSpec {
                    image: "docker.io/library/app:1".into(),
                    ..ImageSpec::default()
                }),
                image_ref: "docker.io/library/app@sha256:1".into(),
                ..ContainerStatus::default()
            }),
            info: HashMap::from([("info".to_string(), info.to_string())]),
        }
    }

    #[test]
    fn containerd_config_is_what_the_kubelet_asked_for() {
        let answered = Answered {
            runtime_name: "containerd".into(),
            containers: vec![container(serde_json::json!({
                "sandboxID": "s9",
                "config": {
                    "image": {"image": "sha256:1", "user_specified_image": "app:1"},
                    "command": ["sh"], "args": ["-c", "exit 3"],
                    "envs": [{"key": "DB_PASSWORD", "value": "hunter2"}],
                    "linux": {"security_context": {"privileged": true}}
                },
                "runtimeSpec": {"linux": {"cgroupsPath": "/kubepods/burstable/podu1/c1"}}
            }))],
            ..Answered::default()
        };
        let record = pod_record(&answered);
        let [instance] = record.containers.as_slice() else {
            panic!("one instance: {record:?}");
        };
        assert_eq!(instance.id.to_string(), "containerd://c1");
        assert_eq!(
            instance
                .sandbox_id
                .as_ref()
                .map(ToString::to_string)
                .as_deref(),
            Some("containerd://s9")
        );
        assert_eq!(instance.command.as_deref(), Some(&["sh".to_string()][..]));
        assert_eq!(instance.env[0].value, "hunter2");
        assert!(instance.security.privileged);
        assert_eq!(instance.image.spec, "app:1");
        assert_eq!(instance.image.status, "docker.io/library/app:1");
        assert_eq!(instance.image.id, "docker.io/library/app@sha256:1");
        assert_eq!(
            instance.cgroup_parent.as_deref(),
            Some("/kubepods/burstable/podu1/c1")
        );
        assert_eq!(
            instance.state,
            State::Exited {
                exit_code: 128,
                reason: Some("StartError".into()),
                message: Some("exec: \"nope\": not found".into()),
                started: None,
                finished: None,
            }
        );
    }

    #[test]
    fn without_config_the_image_defaults_are_taken_from_the_runtime_spec() {
        let image = ImageStatusResponse {
            info: HashMap::from([(
                "info".to_string(),
                serde_json::json!({"imageSpec": {"config": {
                    "Entrypoint": ["/entry"], "Cmd": ["serve"], "Env": ["PATH=/bin"]
                }}})
                .to_string(),
            )]),
            ..ImageStatusResponse::default()
        };
        let answered = |args: serde_json::Value, with_image: bool| Answered {
            runtime_name: "cri-o".into(),
            containers: vec![container(serde_json::json!({
                "runtimeSpec": {"process": {"args": args,
                    "env": ["PATH=/bin", "HOSTNAME=web", "TERM=xterm", "MODE=fast"]}}
            }))],
            images: if with_image {
                HashMap::from([("docker.io/library/app@sha256:1".to_string(), image.clone())])
            } else {
                HashMap::new()
            },
            sandboxes: Vec::new(),
            sandbox_ids: HashMap::from([("c1".to_string(), "s1".to_string())]),
        };
        let first = |answered: Answered| {
            pod_record(&answered)
                .containers
                .into_iter()
                .next()
                .unwrap_or_default()
        };
        let defaults = first(answered(serde_json::json!(["/entry", "serve"]), true));
        // No sandboxID in the info: the list's entry names the sandbox.
        assert_eq!(
            defaults
                .sandbox_id
                .as_ref()
                .map(ToString::to_string)
                .as_deref(),
            Some("cri-o://s1")
        );
        assert_eq!((defaults.command, defaults.args), (None, None));
        assert_eq!(
            defaults.env,
            [EnvVar {
                name: "MODE".into(),
                value: "fast".into()
            }]
        );
        let own_args = first(answered(serde_json::json!(["/entry", "-v"]), true));
        assert_eq!(own_args.args, Some(vec!["-v".to_string()]));
        let own_command = first(answered(serde_json::json!(["sh", "-c", "x"]), true));
        assert_eq!(own_command.command.map(|c| c.len()), Some(3));
        // Without the image's config nothing can be told apart.
        let unknown = first(answered(serde_json::json!(["/entry", "serve"]), false));
        assert_eq!((unknown.command, unknown.args), (None, None));
        assert!(unknown.env.is_empty());
    }
}
