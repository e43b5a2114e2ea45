//! `spec`: the containers as they run, with what the image itself supplied taken away.

use std::collections::BTreeMap;
use std::path::Path;

use bollard::models::{HostConfig, ImageInspect, MountPoint};
use k8s_openapi::DeepMerge;
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, ContainerPort, DownwardAPIVolumeSource,
    EmptyDirVolumeSource, EnvVar, EphemeralContainer, HostPathVolumeSource, Lifecycle,
    LifecycleHandler, PodSpec, ProjectedVolumeSource, ResourceRequirements, SecretVolumeSource,
    SecurityContext, Volume, VolumeMount,
};

use super::kubelet::{self, ContainerKind, Instance};
use super::{Context, PodView, REDACTED, quantity};

const PRE_STOP_HANDLER: &str = "io.kubernetes.container.preStopHandler";

pub(super) fn pod_spec(view: &PodView, context: &Context) -> PodSpec {
    let sandbox_host = view
        .sandbox
        .as_ref()
        .and_then(|sandbox| sandbox.inspect.host_config.as_ref());
    let host_mode =
        |mode: Option<&String>| Some(true).filter(|_| mode.is_some_and(|m| m == "host"));

    let (mut init_containers, mut containers, mut ephemeral) = (Vec::new(), Vec::new(), Vec::new());
    for instance in view.newest() {
        let container = container(view, instance, context);
        match instance.kind() {
            ContainerKind::Init => init_containers.push(container),
            ContainerKind::App => containers.push(container),
            ContainerKind::Ephemeral => ephemeral.extend(ephemeral_container(container)),
        }
    }

    PodSpec {
        node_name: Some(context.node_name.clone()).filter(|name| !name.is_empty()),
        host_network: host_network(view),
        host_pid: host_mode(sandbox_host.and_then(|h| h.pid_mode.as_ref())),
        host_ipc: host_mode(sandbox_host.and_then(|h| h.ipc_mode.as_ref())),
        termination_grace_period_seconds: view
            .newest()
            .find_map(|i| i.parsed_annotation(kubelet::TERMINATION_GRACE_PERIOD)),
        init_containers: Some(init_containers).filter(|c| !c.is_empty()),
        containers,
        ephemeral_containers: Some(ephemeral).filter(|c| !c.is_empty()),
        volumes: volumes(view, &context.kubelet_root),
        ..PodSpec::default()
    }
}

/// An ephemeral container has the fields of a container (and a few more Docker cannot tell).
fn ephemeral_container(container: Container) -> Option<EphemeralContainer> {
    serde_json::to_value(container)
        .and_then(serde_json::from_value)
        .map_err(|err| log::debug!("ephemeral container left out: {err}"))
        .ok()
}

/// The static pod's manifest, with what the runtime shows on top: the manifest says what was
/// asked for (probes, restart policy, volume names…), the runtime what actually runs.
pub(super) fn with_manifest(mut manifest: PodSpec, mut runtime: PodSpec) -> PodSpec {
    name_host_volumes_as(&manifest, &mut runtime);
    manifest.merge_from(runtime);
    manifest
}

/// The runtime can only make up names for host-path volumes; the manifest has the real ones.
fn name_host_volumes_as(manifest: &PodSpec, runtime: &mut PodSpec) {
    let manifest_name_of = |path: &str| {
        manifest.volumes.iter().flatten().find_map(|volume| {
            let host_path = volume.host_path.as_ref()?;
            (host_path.path.trim_end_matches('/') == path.trim_end_matches('/'))
                .then(|| volume.name.clone())
        })
    };
    let mut renamed = Vec::new();
    for volume in runtime.volumes.iter_mut().flatten() {
        let Some(host_path) = &volume.host_path else {
            continue;
        };
        if let Some(name) = manifest_name_of(&host_path.path) {
            renamed.push((std::mem::replace(&mut volume.name, name.clone()), name));
        }
    }
    let mounts = runtime
        .containers
        .iter_mut()
        .chain(runtime.init_containers.iter_mut().flatten())
        .flat_map(|container| container.volume_mounts.iter_mut().flatten());
    for mount in mounts {
        if let Some((_, name)) = renamed.iter().find(|(old, _)| *old == mount.name) {
            mount.name = name.clone();
        }
    }
}

/// Replaces every environment value with `REDACTED`, wherever it came from.
pub(super) fn redact_env(spec: &mut PodSpec) {
    let app_env = spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut().flatten())
        .flat_map(|container| container.env.iter_mut().flatten());
    let ephemeral_env = spec
        .ephemeral_containers
        .iter_mut()
        .flatten()
        .flat_map(|container| container.env.iter_mut().flatten());
    for var in app_env.chain(ephemeral_env) {
        if var.value.as_ref().is_some_and(|value| !value.is_empty()) {
            var.value = Some(REDACTED.to_string());
        }
    }
}

/// `Some(true)` for host-network pods. The sandbox tells; without one, the kubelet's app
/// containers join the sandbox's network and, for host-network pods only, the host's UTS
/// namespace (older kubelets gave them the host network directly).
pub(super) fn host_network(view: &PodView) -> Option<bool> {
    let mode = |instance: &Instance, field: fn(&HostConfig) -> Option<&String>| {
        instance
            .inspect
            .host_config
            .as_ref()
            .and_then(field)
            .map(String::as_str)
            == Some("host")
    };
    let host = match &view.sandbox {
        Some(sandbox) => mode(sandbox, |h| h.network_mode.as_ref()),
        None => view.newest().any(|instance| {
            mode(instance, |h| h.network_mode.as_ref()) || mode(instance, |h| h.uts_mode.as_ref())
        }),
    };
    Some(true).filter(|_| host)
}

fn container(view: &PodView, instance: &Instance, context: &Context) -> Container {
    let config = instance.inspect.config.as_ref();
    let image = view.image(instance);
    let image_config = image.and_then(|image| image.config.as_ref());
    let host_config = instance.inspect.host_config.as_ref();

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

    Container {
        name: instance.container_name.to_string(),
        image: super::image_name(image).or_else(|| config.and_then(|c| c.image.clone())),
        command,
        args,
        working_dir,
        env: env(
            config.and_then(|c| c.env.as_deref()).unwrap_or_default(),
            image,
        ),
        ports: instance
            .annotation(kubelet::PORTS)
            .and_then(|raw| json_annotation::<Vec<ContainerPort>>(instance, kubelet::PORTS, raw))
            .filter(|ports| !ports.is_empty()),
        resources: resources(instance),
        volume_mounts: volume_mounts(instance, view.uid, &context.kubelet_root),
        lifecycle: instance
            .annotation(PRE_STOP_HANDLER)
            .and_then(|raw| json_annotation::<LifecycleHandler>(instance, PRE_STOP_HANDLER, raw))
            .map(|handler| Lifecycle {
                pre_stop: Some(handler),
                ..Lifecycle::default()
            }),
        termination_message_path: instance
            .annotation(kubelet::TERMINATION_MESSAGE_PATH)
            .map(str::to_string),
        termination_message_policy: instance
            .annotation(kubelet::TERMINATION_MESSAGE_POLICY)
            .map(str::to_string),
        tty: config.and_then(|c| c.tty).filter(|tty| *tty),
        stdin: config.and_then(|c| c.open_stdin).filter(|stdin| *stdin),
        stdin_once: config.and_then(|c| c.stdin_once).filter(|once| *once),
        security_context: host_config.and_then(security_context),
        ..Container::default()
    }
}

fn json_annotation<T: serde::de::DeserializeOwned>(
    instance: &Instance,
    key: &str,
    raw: &str,
) -> Option<T> {
    serde_json::from_str(raw)
        .map_err(|err| log::debug!("container {}: ignoring malformed {key}: {err}", instance.id))
        .ok()
}

/// The container's environment minus the image's own entries.
fn env(entries: &[String], image: Option<&ImageInspect>) -> Option<Vec<EnvVar>> {
    let image_env = image
        .and_then(|image| image.config.as_ref())
        .and_then(|config| config.env.as_deref())
        .unwrap_or_default();
    let vars: Vec<EnvVar> = entries
        .iter()
        .filter(|entry| !image_env.contains(entry))
        .map(|entry| {
            let (name, value) = entry.split_once('=').unwrap_or((entry, ""));
            EnvVar {
                name: name.to_string(),
                value: Some(value.to_string()).filter(|value| !value.is_empty()),
                value_from: None,
            }
        })
        .collect();
    Some(vars).filter(|vars| !vars.is_empty())
}

/// Requests and limits from the cgroup settings the kubelet derived from them. Memory requests
/// never reach Docker, and a cpu request below 2 shares cannot be told from none.
fn resources(instance: &Instance) -> Option<ResourceRequirements> {
    let host = instance.inspect.host_config.as_ref()?;
    let mut requests = BTreeMap::new();
    let mut limits = BTreeMap::new();
    if let Some(shares) = host.cpu_shares.filter(|shares| *shares > 2) {
        requests.insert(
            "cpu".to_string(),
            quantity::cpu_millis((shares * 1000 + 1023) / 1024),
        );
    }
    if let Some(quota) = host.cpu_quota.filter(|quota| *quota > 0) {
        let period = host
            .cpu_period
            .filter(|period| *period > 0)
            .unwrap_or(100_000);
        limits.insert(
            "cpu".to_string(),
            quantity::cpu_millis(quota * 1000 / period),
        );
    }
    if let Some(memory) = host.memory.filter(|memory| *memory > 0) {
        limits.insert("memory".to_string(), quantity::bytes(memory));
    }
    if requests.is_empty() && limits.is_empty() {
        return None;
    }
    Some(ResourceRequirements {
        requests: Some(requests).filter(|r| !r.is_empty()),
        limits: Some(limits).filter(|l| !l.is_empty()),
        ..ResourceRequirements::default()
    })
}

fn security_context(host: &HostConfig) -> Option<SecurityContext> {
    let capabilities = Capabilities {
        add: host.cap_add.clone().filter(|caps| !caps.is_empty()),
        drop: host.cap_drop.clone().filter(|caps| !caps.is_empty()),
    };
    let context = SecurityContext {
        privileged: host.privileged.filter(|p| *p),
        read_only_root_filesystem: host.readonly_rootfs.filter(|r| *r),
        capabilities: Some(capabilities).filter(|c| c.add.is_some() || c.drop.is_some()),
        ..SecurityContext::default()
    };
    Some(context).filter(|c| *c != SecurityContext::default())
}

/// Where a bind mount's source comes from, told by the kubelet's directory layout.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum MountSource<'a> {
    /// `<root>/pods/<uid>/volumes/<plugin>/<name>`; the plugin dir uses `~` for `/`.
    Volume { plugin: String, name: &'a str },
    /// `<root>/pods/<uid>/volume-subpaths/<name>/<container>/<index>`.
    SubPath { name: &'a str },
    /// The termination-log file and `/etc/hosts`: the kubelet's plumbing, not volumes.
    Plumbing,
    /// Anything else: a host path.
    Host,
}

pub(super) fn mount_source<'a>(source: &'a str, uid: &str, kubelet_root: &Path) -> MountSource<'a> {
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

/// The bind mounts that are pod volumes, with the name the volume is known by.
fn pod_mounts<'a>(
    instance: &Instance<'a>,
    uid: &'a str,
    kubelet_root: &'a Path,
) -> impl Iterator<Item = (&'a MountPoint, MountSource<'a>)> + 'a {
    instance
        .inspect
        .mounts
        .as_deref()
        .unwrap_or_default()
        .iter()
        // Docker's own volumes are not the kubelet's; the kubelet only binds.
        .filter(|mount| mount.typ.as_deref().is_none_or(|typ| typ == "bind"))
        .filter(|mount| mount.destination.is_some())
        .filter_map(move |mount| {
            let source = mount_source(mount.source.as_deref()?, uid, kubelet_root);
            (source != MountSource::Plumbing).then_some((mount, source))
        })
}

/// A host-path volume's name is not in Docker; it is made from the path, so that the same path
/// always has the same name (`/etc/kubernetes/pki` → `hostpath-etc-kubernetes-pki`).
pub(super) fn host_path_volume_name(path: &str) -> String {
    let mut name = String::from("hostpath");
    for part in path
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|p| !p.is_empty())
    {
        name.push('-');
        name.push_str(&part.to_ascii_lowercase());
    }
    name.truncate(63);
    name.trim_end_matches('-').to_string()
}

fn volume_name(mount: &MountPoint, source: &MountSource) -> String {
    match source {
        MountSource::Volume { name, .. } | MountSource::SubPath { name } => name.to_string(),
        MountSource::Host | MountSource::Plumbing => {
            host_path_volume_name(mount.source.as_deref().unwrap_or_default())
        }
    }
}

fn volume_mounts(instance: &Instance, uid: &str, kubelet_root: &Path) -> Option<Vec<VolumeMount>> {
    let volume_mounts: Vec<VolumeMount> = pod_mounts(instance, uid, kubelet_root)
        .map(|(mount, source)| VolumeMount {
            name: volume_name(mount, &source),
            mount_path: mount.destination.clone().unwrap_or_default(),
            read_only: Some(true).filter(|_| mount.rw == Some(false)),
            ..VolumeMount::default()
        })
        .collect();
    Some(volume_mounts).filter(|mounts| !mounts.is_empty())
}

/// The pod's volumes, as far as the mount sources tell their kind. Volumes of plugins whose
/// kind cannot be told (CSI, PVCs, …) are named by their mounts but not listed here.
fn volumes(view: &PodView, kubelet_root: &Path) -> Option<Vec<Volume>> {
    let mut volumes: Vec<Volume> = Vec::new();
    for instance in view.newest() {
        for (mount, source) in pod_mounts(instance, view.uid, kubelet_root) {
            let name = volume_name(mount, &source);
            if volumes.iter().any(|volume| volume.name == name) {
                continue;
            }
            let mut volume = Volume {
                name,
                ..Volume::default()
            };
            match source {
                MountSource::Host => {
                    volume.host_path = Some(HostPathVolumeSource {
                        path: mount.source.clone().unwrap_or_default(),
                        type_: None,
                    })
                }
                MountSource::Volume { plugin, .. } => match plugin.as_str() {
                    "kubernetes.io/empty-dir" => {
                        volume.empty_dir = Some(EmptyDirVolumeSource::default())
                    }
                    "kubernetes.io/secret" => volume.secret = Some(SecretVolumeSource::default()),
                    "kubernetes.io/configmap" => {
                        volume.config_map = Some(ConfigMapVolumeSource::default())
                    }
                    "kubernetes.io/projected" => {
                        volume.projected = Some(ProjectedVolumeSource::default())
                    }
                    "kubernetes.io/downward-api" => {
                        volume.downward_api = Some(DownwardAPIVolumeSource::default())
                    }
                    _ => continue,
                },
                MountSource::SubPath { .. } | MountSource::Plumbing => continue,
            }
            volumes.push(volume);
        }
    }
    volumes.sort_by(|a, b| a.name.cmp(&b.name));
    Some(volumes).filter(|volumes| !volumes.is_empty())
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
    fn image_env_is_subtracted_and_values_redacted_later() {
        let entries = vec!["PATH=/bin".to_string(), "DB_PASSWORD=hunter2".to_string()];
        let image: ImageInspect = serde_json::from_value(serde_json::json!({
            "Config": {"Env": ["PATH=/bin"]}
        }))
        .unwrap_or_default();
        let vars = env(&entries, Some(&image)).unwrap_or_default();
        assert_eq!(vars.len(), 1);
        assert_eq!(vars[0].name, "DB_PASSWORD");
        assert_eq!(vars[0].value.as_deref(), Some("hunter2"));
        let mut spec = PodSpec {
            containers: vec![Container {
                env: Some(vars),
                ..Container::default()
            }],
            ..PodSpec::default()
        };
        redact_env(&mut spec);
        assert_eq!(
            spec.containers[0]
                .env
                .as_ref()
                .map(|e| e[0].value.as_deref()),
            Some(Some(REDACTED))
        );
    }

    #[test]
    fn host_path_volumes_are_named_after_their_path() {
        assert_eq!(
            host_path_volume_name("/etc/kubernetes/scheduler.conf"),
            "hostpath-etc-kubernetes-scheduler-conf"
        );
        assert!(host_path_volume_name(&"/very-long".repeat(20)).len() <= 63);
    }
}
