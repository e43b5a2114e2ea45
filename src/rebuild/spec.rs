//! `spec`: the containers as they run, with what the image itself supplied taken away.

use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::DeepMerge;
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, ContainerPort, DownwardAPIVolumeSource,
    EmptyDirVolumeSource, EnvVar, EphemeralContainer, HostPathVolumeSource, Lifecycle,
    LifecycleHandler, PodSpec, ProjectedVolumeSource, ResourceRequirements, SecretVolumeSource,
    SecurityContext, Volume, VolumeMount,
};

use super::kinds::Kinds;
use super::{Context, REDACTED, quantity, resources};
use crate::kubelet::{self, ContainerKind, MountSource, mount_source};
use crate::record::{Allocation, Instance, Mount, NamespaceMode, PodView, Resources, Security};

pub(super) fn pod_spec(
    view: &PodView,
    kinds: &Kinds,
    allocation: Option<&Allocation>,
    context: &Context,
) -> PodSpec {
    let host_mode =
        |mode: Option<NamespaceMode>| Some(true).filter(|_| mode == Some(NamespaceMode::Node));

    let (mut init_containers, mut containers, mut ephemeral) = (Vec::new(), Vec::new(), Vec::new());
    for instance in view.newest() {
        let mut container = container(view, instance, context);
        // The kubelet's allocation holds what the spec asked for, memory requests included;
        // the cgroup settings only what followed from it.
        if let Some(allocated) = allocation.and_then(|a| resources::allocated(a, &instance.name)) {
            container.resources = allocated;
        }
        match kinds.of(&instance.name) {
            ContainerKind::Init => init_containers.push(container),
            ContainerKind::App => containers.push(container),
            ContainerKind::Ephemeral => ephemeral.extend(ephemeral_container(container)),
        }
    }
    init_containers.sort_by_key(|c| kinds.init_position(&c.name));

    PodSpec {
        node_name: Some(context.node_name.clone()).filter(|name| !name.is_empty()),
        host_network: host_network(view),
        host_pid: host_mode(view.sandbox.map(|s| s.pid_namespace)),
        host_ipc: host_mode(view.sandbox.map(|s| s.ipc_namespace)),
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

/// An ephemeral container has the fields of a container (and a few more no runtime can tell).
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

/// `Some(true)` for host-network pods. The sandbox tells; without one, its containers do.
pub(super) fn host_network(view: &PodView) -> Option<bool> {
    let host = match view.sandbox {
        Some(sandbox) => sandbox.network == NamespaceMode::Node,
        None => view.newest().any(|instance| instance.host_network),
    };
    Some(true).filter(|_| host)
}

fn container(view: &PodView, instance: &Instance, context: &Context) -> Container {
    let env: Vec<EnvVar> = instance
        .env
        .iter()
        .map(|var| EnvVar {
            name: var.name.clone(),
            value: Some(var.value.clone()).filter(|value| !value.is_empty()),
            value_from: None,
        })
        .collect();
    Container {
        name: instance.name.clone(),
        image: Some(instance.image.spec.clone()).filter(|image| !image.is_empty()),
        command: instance.command.clone(),
        args: instance.args.clone(),
        working_dir: instance.working_dir.clone(),
        env: Some(env).filter(|env| !env.is_empty()),
        ports: instance
            .annotation(kubelet::PORTS)
            .and_then(|raw| json_annotation::<Vec<ContainerPort>>(instance, kubelet::PORTS, raw))
            .filter(|ports| !ports.is_empty()),
        resources: resources(&instance.resources),
        volume_mounts: volume_mounts(instance, view.uid, &context.kubelet_root),
        lifecycle: instance
            .annotation(kubelet::PRE_STOP_HANDLER)
            .and_then(|raw| {
                json_annotation::<LifecycleHandler>(instance, kubelet::PRE_STOP_HANDLER, raw)
            })
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
        tty: Some(true).filter(|_| instance.tty),
        stdin: Some(true).filter(|_| instance.stdin),
        stdin_once: Some(true).filter(|_| instance.stdin_once),
        security_context: security_context(&instance.security),
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

/// Requests and limits from the cgroup settings the kubelet derived from them. Memory requests
/// never reach the runtime, and a cpu request below 2 shares cannot be told from none.
fn resources(resources: &Resources) -> Option<ResourceRequirements> {
    let mut requests = BTreeMap::new();
    let mut limits = BTreeMap::new();
    if let Some(shares) = resources.cpu_shares.filter(|shares| *shares > 2) {
        requests.insert(
            "cpu".to_string(),
            quantity::cpu_millis((shares * 1000 + 1023) / 1024),
        );
    }
    if let Some(quota) = resources.cpu_quota.filter(|quota| *quota > 0) {
        let period = resources
            .cpu_period
            .filter(|period| *period > 0)
            .unwrap_or(100_000);
        limits.insert(
            "cpu".to_string(),
            quantity::cpu_millis(quota * 1000 / period),
        );
    }
    if let Some(memory) = resources.memory_limit.filter(|memory| *memory > 0) {
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

fn security_context(security: &Security) -> Option<SecurityContext> {
    let listed = |caps: &Vec<String>| Some(caps.clone()).filter(|caps| !caps.is_empty());
    let capabilities = Capabilities {
        add: listed(&security.capabilities_add),
        drop: listed(&security.capabilities_drop),
    };
    let context = SecurityContext {
        privileged: Some(true).filter(|_| security.privileged),
        read_only_root_filesystem: Some(true).filter(|_| security.read_only_root_filesystem),
        capabilities: Some(capabilities).filter(|c| c.add.is_some() || c.drop.is_some()),
        ..SecurityContext::default()
    };
    Some(context).filter(|c| *c != SecurityContext::default())
}

/// The bind mounts that are pod volumes, with the name the volume is known by.
fn pod_mounts<'a>(
    instance: &'a Instance,
    uid: &'a str,
    kubelet_root: &'a Path,
) -> impl Iterator<Item = (&'a Mount, MountSource<'a>)> + 'a {
    instance.mounts.iter().filter_map(move |mount| {
        let source = mount_source(&mount.host_path, uid, kubelet_root);
        (source != MountSource::Plumbing).then_some((mount, source))
    })
}

/// A host-path volume's name is not in the runtime; it is made from the path, so that the same path
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

fn volume_name(mount: &Mount, source: &MountSource) -> String {
    match source {
        MountSource::Volume { name, .. } | MountSource::SubPath { name } => name.to_string(),
        MountSource::Host | MountSource::Plumbing => host_path_volume_name(&mount.host_path),
    }
}

fn volume_mounts(instance: &Instance, uid: &str, kubelet_root: &Path) -> Option<Vec<VolumeMount>> {
    let volume_mounts: Vec<VolumeMount> = pod_mounts(instance, uid, kubelet_root)
        .map(|(mount, source)| VolumeMount {
            name: volume_name(mount, &source),
            mount_path: mount.container_path.clone(),
            read_only: Some(true).filter(|_| mount.read_only),
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
                        path: mount.host_path.clone(),
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
    fn env_values_are_redacted_wherever_they_came_from() {
        let mut spec = PodSpec {
            containers: vec![Container {
                env: Some(vec![EnvVar {
                    name: "DB_PASSWORD".into(),
                    value: Some("hunter2".into()),
                    value_from: None,
                }]),
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
