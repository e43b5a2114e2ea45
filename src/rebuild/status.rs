//! `status`: container states from the newest and second-newest instances, and the pod-level
//! phase, IPs and QoS class that follow from them.

use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, HostIP, PodCondition, PodIP, PodSpec, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use std::net::IpAddr;

use super::kinds::Kinds;
use super::{Context, resources, spec};
use crate::kubelet::ContainerKind;
use crate::record::{HostFacts, Instance, PodView, SandboxState, State};

pub(super) fn pod_status(
    view: &PodView,
    kinds: &Kinds,
    spec: &PodSpec,
    host: &HostFacts,
    context: &Context,
) -> PodStatus {
    let status_of = |history: &Vec<&Instance>| {
        let newest = history.first()?;
        let kind = kinds.of(&newest.name);
        Some((
            kind,
            container_status(newest, history.get(1).copied(), kind, host),
        ))
    };
    let (mut init_statuses, mut statuses, mut ephemeral_statuses) =
        (Vec::new(), Vec::new(), Vec::new());
    for (kind, status) in view.containers.values().filter_map(status_of) {
        match kind {
            ContainerKind::Init => init_statuses.push(status),
            ContainerKind::App => statuses.push(status),
            ContainerKind::Ephemeral => ephemeral_statuses.push(status),
        }
    }

    // Init containers run one after another to success before any app container starts.
    let pending_init: Vec<&str> = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| c.name.as_str())
        .filter(|name| {
            !init_statuses
                .iter()
                .any(|s| s.name == *name && succeeded(s))
        })
        .collect();
    let initialized = pending_init.is_empty();
    for status in &mut statuses {
        let waiting = status.state.as_mut().and_then(|s| s.waiting.as_mut());
        if let Some(waiting) = waiting.filter(|_| !initialized) {
            waiting.reason = Some("PodInitializing".to_string());
        }
    }
    // Containers the spec names (from a static pod's manifest) that the runtime has not made yet.
    let not_created = |statuses: &Vec<ContainerStatus>, containers: &[Container], reason: &str| {
        containers
            .iter()
            .filter(|c| !statuses.iter().any(|s| s.name == c.name))
            .map(|c| waiting_status(c, reason))
            .collect::<Vec<_>>()
    };
    let init_reason = if initialized {
        "ContainerCreating"
    } else {
        "PodInitializing"
    };
    let missing_init = not_created(
        &init_statuses,
        spec.init_containers.as_deref().unwrap_or_default(),
        "PodInitializing",
    );
    init_statuses.extend(missing_init);
    let missing = not_created(&statuses, &spec.containers, init_reason);
    statuses.extend(missing);
    // The kubelet lists init containers in the spec's order, the others by name.
    let spec_position = |name: &str| {
        spec.init_containers
            .iter()
            .flatten()
            .position(|c| c.name == name)
            .unwrap_or(usize::MAX)
    };
    init_statuses.sort_by_key(|s| (spec_position(&s.name), s.name.clone()));
    statuses.sort_by(|a, b| a.name.cmp(&b.name));

    let phase = phase(view, kinds, initialized);
    let pod_ips = pod_ips(view, host, context);
    let ready_to_start = ready_to_start_containers(view, !pod_ips.is_empty());
    PodStatus {
        phase: Some(phase.to_string()),
        conditions: Some(conditions(phase, ready_to_start, &pending_init, &statuses)),
        host_ip: context.host_ip.map(|ip| ip.to_string()),
        host_ips: context
            .host_ip
            .map(|ip| vec![HostIP { ip: ip.to_string() }]),
        pod_ip: pod_ips.first().map(|ip| ip.ip.clone()),
        pod_ips: Some(pod_ips).filter(|ips| !ips.is_empty()),
        start_time: view.sandbox.and_then(|s| s.started).map(Time),
        qos_class: qos_class(view, kinds, host).map(str::to_string),
        init_container_statuses: Some(init_statuses).filter(|s| !s.is_empty()),
        container_statuses: Some(statuses).filter(|s| !s.is_empty()),
        ephemeral_container_statuses: Some(ephemeral_statuses).filter(|s| !s.is_empty()),
        ..PodStatus::default()
    }
}

fn succeeded(status: &ContainerStatus) -> bool {
    let terminated = status.state.as_ref().and_then(|s| s.terminated.as_ref());
    terminated.is_some_and(|t| t.exit_code == 0)
}

fn waiting_status(container: &Container, reason: &str) -> ContainerStatus {
    ContainerStatus {
        name: container.name.clone(),
        state: Some(ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(reason.to_string()),
                message: None,
            }),
            ..ContainerState::default()
        }),
        image: container.image.clone().unwrap_or_default(),
        ready: false,
        started: Some(false),
        ..ContainerStatus::default()
    }
}

/// `PodReadyToStartContainers` (a kubelet condition since 1.29): the newest sandbox is ready
/// and, unless the pod uses the node's network, has an address — no new sandbox is needed.
fn ready_to_start_containers(view: &PodView, has_ip: bool) -> bool {
    view.sandbox.is_some_and(|sandbox| {
        sandbox.state == SandboxState::Ready && (spec::host_network(view) == Some(true) || has_ip)
    })
}

/// The kubelet's conditions (`pkg/kubelet/status/generate.go`), with its reasons and
/// messages, in its order. Transition times are not in the runtime.
fn conditions(
    phase: &str,
    ready_to_start: bool,
    pending_init: &[&str],
    statuses: &[ContainerStatus],
) -> Vec<PodCondition> {
    let condition =
        |type_: &str, ok: bool, reason: Option<&str>, message: Option<String>| PodCondition {
            type_: type_.to_string(),
            status: if ok { "True" } else { "False" }.to_string(),
            reason: reason.map(str::to_string),
            message,
            ..PodCondition::default()
        };
    let unready: Vec<&str> = statuses
        .iter()
        .filter(|s| !s.ready)
        .map(|s| s.name.as_str())
        .collect();
    let initialized = match (phase, pending_init.is_empty()) {
        ("Succeeded", _) => condition("Initialized", true, Some("PodCompleted"), None),
        (_, true) => condition("Initialized", true, None, None),
        (_, false) => condition(
            "Initialized",
            false,
            Some("ContainersNotInitialized"),
            Some(format!(
                "containers with incomplete status: [{}]",
                pending_init.join(" ")
            )),
        ),
    };
    // A finished pod is not ready, whatever its containers last said.
    let ready = |type_: &str| match phase {
        "Succeeded" => condition(type_, false, Some("PodCompleted"), None),
        "Failed" => condition(type_, false, Some("PodFailed"), None),
        _ if unready.is_empty() && !statuses.is_empty() => condition(type_, true, None, None),
        _ => condition(
            type_,
            false,
            Some("ContainersNotReady"),
            Some(format!(
                "containers with unready status: [{}]",
                unready.join(" ")
            )),
        ),
    };
    vec![
        condition("PodReadyToStartContainers", ready_to_start, None, None),
        initialized,
        ready("Ready"),
        ready("ContainersReady"),
        condition("PodScheduled", true, None, None),
    ]
}

fn container_status(
    newest: &Instance,
    previous: Option<&Instance>,
    kind: ContainerKind,
    host: &HostFacts,
) -> ContainerStatus {
    let running = newest.is_running();
    // App containers: probe results are not in the runtime, so running is the most that can
    // be said. Init containers have no probes: the kubelet calls them ready once they
    // succeeded.
    let ready = match kind {
        ContainerKind::Init => newest.succeeded(),
        ContainerKind::App | ContainerKind::Ephemeral => running,
    };
    ContainerStatus {
        name: newest.name.clone(),
        state: Some(state(newest, host)),
        last_state: previous
            .filter(|p| p.has_exited())
            .and_then(|p| terminated(p, host))
            .map(|terminated| ContainerState {
                terminated: Some(terminated),
                ..ContainerState::default()
            }),
        restart_count: newest.restart_count().unwrap_or_default(),
        container_id: Some(newest.id.to_string()),
        image: newest.image.status.clone(),
        image_id: newest.image.id.clone(),
        ready,
        started: Some(running),
        ..ContainerStatus::default()
    }
}

fn state(instance: &Instance, host: &HostFacts) -> ContainerState {
    match &instance.state {
        State::Running { started } => ContainerState {
            running: Some(ContainerStateRunning {
                started_at: started.map(Time),
            }),
            ..ContainerState::default()
        },
        State::Created => ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some("ContainerCreating".to_string()),
                message: None,
            }),
            ..ContainerState::default()
        },
        State::Exited { .. } => ContainerState {
            terminated: terminated(instance, host),
            ..ContainerState::default()
        },
    }
}

/// `None` unless the instance exited.
fn terminated(instance: &Instance, host: &HostFacts) -> Option<ContainerStateTerminated> {
    let State::Exited {
        exit_code,
        reason,
        message,
        started,
        finished,
    } = &instance.state
    else {
        return None;
    };
    // The runtime's error, then what the container wrote to its termination-message file or,
    // when that is empty and the policy says so, its log's tail; joined as the kubelet joins
    // them.
    let written = host
        .termination_messages
        .get(&instance.id)
        .filter(|text| !text.is_empty())
        .or_else(|| {
            instance
                .falls_back_to_logs()
                .then(|| host.log_tails.get(&instance.id))
                .flatten()
        });
    let message = [message.as_deref(), written.map(String::as_str)]
        .into_iter()
        .flatten()
        .filter(|text| !text.is_empty())
        .collect::<Vec<_>>()
        .join(": ");
    let message = Some(message).filter(|m| !m.is_empty());
    let reason = reason.clone().unwrap_or_else(|| {
        match (instance.oom_killed, exit_code) {
            (true, _) => "OOMKilled",
            (false, 0) => "Completed",
            (false, _) => "Error",
        }
        .to_string()
    });
    // It never ran (bad command, missing mount): no times of its own but its creation.
    let (started, finished) = match finished {
        None if *exit_code != 0 => (instance.created, instance.created),
        _ => (*started, *finished),
    };
    Some(ContainerStateTerminated {
        exit_code: *exit_code,
        reason: Some(reason),
        message,
        started_at: started.map(Time),
        finished_at: finished.map(Time),
        container_id: Some(instance.id.to_string()),
        signal: None,
    })
}

/// The kubelet decides the phase with the restart policy, which the runtime does not hold.
/// The sandbox stands in for it: the kubelet stops the sandbox once a pod is finished. As in
/// its `getPhase`, a container that terminated (even one that could not start) counts as
/// stopped: only a pod whose containers are all still waiting or created is `Pending`.
fn phase(view: &PodView, kinds: &Kinds, initialized: bool) -> &'static str {
    let sandbox_running = view.sandbox.is_some_and(|s| s.state == SandboxState::Ready);
    let regular: Vec<&Instance> = view
        .newest()
        .filter(|instance| kinds.of(&instance.name) == ContainerKind::App)
        .collect();
    if !initialized {
        // Init containers still to succeed: pending, unless the kubelet gave the pod up.
        let init_failed = view.newest().any(|instance| {
            kinds.of(&instance.name) == ContainerKind::Init
                && instance.has_exited()
                && !instance.succeeded()
        });
        return if init_failed && !sandbox_running && !view.newest().any(Instance::is_running) {
            "Failed"
        } else {
            "Pending"
        };
    }
    let all_waiting = regular.iter().all(|instance| {
        instance.state == State::Created
            && !view
                .containers
                .get(instance.name.as_str())
                .is_some_and(|history| history.iter().skip(1).any(|i| i.has_exited()))
    });
    if all_waiting {
        return "Pending";
    }
    if sandbox_running || view.newest().any(Instance::is_running) {
        return "Running";
    }
    if regular.iter().all(|instance| instance.succeeded()) {
        "Succeeded"
    } else {
        "Failed"
    }
}

fn pod_ips(view: &PodView, host: &HostFacts, context: &Context) -> Vec<PodIP> {
    if spec::host_network(view) == Some(true) {
        return context
            .host_ip
            .map(|ip| PodIP { ip: ip.to_string() })
            .into_iter()
            .collect();
    }
    // Where the runtime cannot tell (CNI on Docker), the sandbox's network namespace does.
    let ips = if host.pod_ips.is_empty() {
        view.sandbox
            .and_then(|s| s.ips.as_deref())
            .unwrap_or_default()
    } else {
        &host.pod_ips
    };
    sort_pod_ips(ips, context.host_ip)
        .into_iter()
        .map(|ip| PodIP { ip: ip.to_string() })
        .collect()
}

/// The kubelet's `sortPodIPs`: the first address of the node's primary family (IPv4 when the
/// node's address is unknown), then the first of the other family; at most one per family.
fn sort_pod_ips(ips: &[IpAddr], node_ip: Option<IpAddr>) -> Vec<IpAddr> {
    let primary_v6 = node_ip.is_some_and(|ip| ip.is_ipv6());
    let first = |v6: bool| ips.iter().find(|ip| ip.is_ipv6() == v6).copied();
    [first(primary_v6), first(!primary_v6)]
        .into_iter()
        .flatten()
        .collect()
}

/// The QoS class: computed the way the API does from the requests and limits the kubelet
/// allocated, where its checkpoint holds the pod (checked against the cgroup, which should
/// agree); else from the cgroup the kubelet placed the pod in, else from the OOM score it gave
/// the containers. The sandbox's settings are fixed by the kubelet and say nothing.
fn qos_class(view: &PodView, kinds: &Kinds, host: &HostFacts) -> Option<&'static str> {
    let from_runtime = qos_from_runtime(view);
    let Some(allocated) = host.allocated.as_ref() else {
        return from_runtime;
    };
    let from_allocation = resources::qos_class(allocated, kinds);
    if let Some(runtime) = from_runtime.filter(|runtime| *runtime != from_allocation) {
        log::warn!(
            "pod {}: the kubelet's allocation makes it {from_allocation}, its cgroup {runtime}; \
             showing {from_allocation}",
            view.uid
        );
    }
    Some(from_allocation)
}

fn qos_from_runtime(view: &PodView) -> Option<&'static str> {
    let parents = view
        .newest()
        .map(|instance| instance.cgroup_parent.as_deref())
        .chain(view.sandbox.map(|sandbox| sandbox.cgroup_parent.as_deref()));
    let from_cgroup = parents.flatten().find_map(|parent| {
        let parent = parent.to_ascii_lowercase();
        if parent.contains("besteffort") {
            Some("BestEffort")
        } else if parent.contains("burstable") {
            Some("Burstable")
        } else if parent.contains("kubepods") {
            Some("Guaranteed")
        } else {
            None
        }
    });
    from_cgroup.or_else(|| {
        view.newest()
            .find_map(|instance| match instance.resources.oom_score_adj? {
                -998 | -997 => Some("Guaranteed"),
                1000 => Some("BestEffort"),
                2..=999 => Some("Burstable"),
                _ => None,
            })
    })
}
