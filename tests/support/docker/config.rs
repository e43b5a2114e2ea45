//! What dockershim asks Docker to create for a pod (SPEC §3): the sandbox's and each container
//! instance's name and `ContainerCreateBody`: labels (identity, annotations as
//! `annotation.<key>`), namespaces, cgroup parent, resources, binds.

use std::collections::HashMap;

use bollard::models::{
    ContainerCreateBody, HealthConfig, HostConfig, RestartPolicy, RestartPolicyNameEnum,
};

use super::{ContainerImage, PodLayout};
use crate::support::kubelet::{self, CPU_PERIOD, HostMount, PodSetup, Qos};
use crate::support::scenario::{Container, Instance, Pod};
use crate::support::util;

/// The seventh `_<8 hex>` part of a Docker name the kubelet adds after a name clash, when the
/// pod asks for it ([`Pod::name_clash_suffix`]); else nothing.
fn clash_suffix(pod: &Pod) -> String {
    if pod.name_clash_suffix {
        format!("_{}", util::random_hex(8))
    } else {
        String::new()
    }
}

/// `k8s_POD_<pod>_<namespace>_<uid>_<attempt>`.
pub(super) fn sandbox_name(pod: &Pod, uid: &str) -> String {
    format!(
        "k8s_POD_{}_{}_{uid}_{}{}",
        pod.name,
        pod.namespace,
        pod.sandbox_attempt,
        clash_suffix(pod)
    )
}

/// `k8s_<container>_<pod>_<namespace>_<uid>_<attempt>`.
pub(super) fn container_name(pod: &Pod, c: &Container, uid: &str, attempt: u32) -> String {
    format!(
        "k8s_{}_{}_{}_{uid}_{attempt}{}",
        c.name,
        pod.name,
        pod.namespace,
        clash_suffix(pod)
    )
}

/// The sandbox: the pause image, on the host network or none (CNI adds to it), a shareable IPC
/// namespace, the pod's cgroup parent.
pub(super) fn sandbox_body(
    pod: &Pod,
    setup: &PodSetup,
    cgroup_parent: &str,
) -> ContainerCreateBody {
    ContainerCreateBody {
        image: Some(pod.sandbox_image.clone().unwrap_or_else(util::pause_image)),
        hostname: if pod.host_network {
            None
        } else {
            Some(pod.name.clone())
        },
        labels: Some(sandbox_labels(pod, &setup.uid, &setup.annotations)),
        host_config: Some(HostConfig {
            network_mode: Some(if pod.host_network { "host" } else { "none" }.into()),
            // Docker 20.10 makes IPC private by default; the sandbox must be shareable so
            // the app containers can join it.
            ipc_mode: Some(if pod.host_ipc { "host" } else { "shareable" }.into()),
            pid_mode: pod.host_pid.then(|| "host".to_string()),
            cgroup_parent: Some(cgroup_parent.to_string()),
            cpu_shares: Some(2),
            // OomScoreAdj -998 left out: these machines refuse negative values.
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::NO),
                maximum_retry_count: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Sandbox labels: the pod's labels verbatim, its annotations as `annotation.<key>`, and the
/// kubelet's identity labels.
fn sandbox_labels(
    pod: &Pod,
    uid: &str,
    annotations: &[(String, String)],
) -> HashMap<String, String> {
    let mut labels: HashMap<String, String> = pod.labels.iter().cloned().collect();
    for (k, v) in annotations {
        labels.insert(format!("annotation.{k}"), v.clone());
    }
    kubelet::insert_pod_identity(&mut labels, pod, uid);
    labels.insert("io.kubernetes.container.name".into(), "POD".into());
    labels.insert("io.kubernetes.docker.type".into(), "podsandbox".into());
    labels
}

/// A container instance: the image by ID, the instance's process, env, working dir, labels,
/// no health check, and its [`container_host_config`].
pub(super) fn container_body(
    layout: &PodLayout<'_>,
    c: &Container,
    inst: &Instance,
    attempt: u32,
    image: &ContainerImage,
    mounts: Vec<HostMount>,
) -> ContainerCreateBody {
    let (entrypoint, cmd) = inst.process(c);
    ContainerCreateBody {
        image: Some(image.id.clone()),
        entrypoint,
        cmd,
        env: Some(c.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        working_dir: c.working_dir.clone(),
        labels: Some(container_labels(layout, c, attempt, &image.hash)),
        healthcheck: Some(HealthConfig {
            test: Some(vec!["NONE".into()]),
            ..Default::default()
        }),
        host_config: Some(container_host_config(layout, c, binds(mounts))),
        ..Default::default()
    }
}

/// Labels of a container instance: identity, the kubelet's container annotations as
/// `annotation.<key>`, type, log path and sandbox ID.
fn container_labels(
    layout: &PodLayout<'_>,
    c: &Container,
    attempt: u32,
    hash: &str,
) -> HashMap<String, String> {
    let (pod, uid) = (layout.pod, layout.setup.uid.as_str());
    let (ns, pod_name) = (&pod.namespace, &pod.name);
    let mut labels: HashMap<String, String> = HashMap::new();
    labels.insert("io.kubernetes.container.name".into(), c.name.clone());
    kubelet::insert_pod_identity(&mut labels, pod, uid);
    for (k, v) in kubelet::container_annotations(pod, c, attempt, hash) {
        labels.insert(format!("annotation.{k}"), v);
    }
    labels.insert("io.kubernetes.docker.type".into(), "container".into());
    labels.insert(
        "io.kubernetes.container.logpath".into(),
        format!(
            "/var/log/pods/{ns}_{pod_name}_{uid}/{}/{attempt}.log",
            c.name
        ),
    );
    labels.insert("io.kubernetes.sandbox.id".into(), layout.sandbox.id.clone());
    labels
}

/// The mounts as dockershim's `GenerateMountBindings` writes them: `<host>:<container>[:ro]`.
fn binds(mounts: Vec<HostMount>) -> Vec<String> {
    mounts
        .into_iter()
        .map(|m| {
            let mut b = format!("{}:{}", m.host_path.display(), m.container_path);
            if m.read_only {
                b.push_str(":ro");
            }
            b
        })
        .collect()
}

/// HostConfig of a container instance: the sandbox's namespaces, the pod's cgroup, the
/// kubelet's resource conversion.
fn container_host_config(layout: &PodLayout<'_>, c: &Container, binds: Vec<String>) -> HostConfig {
    let pod = layout.pod;
    let sandbox_ns = format!("container:{}", layout.sandbox.id);
    HostConfig {
        binds: Some(binds),
        restart_policy: Some(RestartPolicy {
            name: Some(RestartPolicyNameEnum::NO),
            maximum_retry_count: None,
        }),
        // dockershim joins the sandbox's namespaces even for hostNetwork pods (the sandbox
        // itself is on the host network), and shares the host's UTS namespace then.
        network_mode: Some(sandbox_ns.clone()),
        ipc_mode: Some(sandbox_ns),
        uts_mode: pod.host_network.then(|| "host".to_string()),
        pid_mode: pod.host_pid.then(|| "host".to_string()),
        cgroup_parent: Some(layout.sandbox.cgroup_parent.clone()),
        cpu_shares: Some(c.cpu_shares()),
        cpu_quota: (c.cpu_quota() > 0).then(|| c.cpu_quota()),
        cpu_period: Some(CPU_PERIOD),
        memory: c.memory_limit,
        memory_swap: c.memory_limit,
        oom_score_adj: oom_score_adj(pod, c),
        privileged: c.privileged.then_some(true),
        ..Default::default()
    }
}

/// The kubelet's container `oom_score_adj`, when it is one Docker here accepts (these
/// machines refuse negative values, so Guaranteed containers keep the default).
fn oom_score_adj(pod: &Pod, c: &Container) -> Option<i64> {
    match pod.qos() {
        Qos::Guaranteed => None,
        Qos::BestEffort | Qos::Burstable => Some(pod.oom_score_adj(c)),
    }
}
