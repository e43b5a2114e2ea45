//! `status`: container states from the newest and second-newest instances, and the pod-level
//! phase, IPs and QoS class that follow from them.

use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, HostIP, PodCondition, PodIP, PodSpec, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::kubelet::{ContainerKind, Instance, RunState};
use super::{Context, HostFacts, PodView, spec};

pub(super) fn pod_status(
    view: &PodView,
    spec: &PodSpec,
    host: &HostFacts,
    context: &Context,
) -> PodStatus {
    let status_of = |history: &Vec<Instance>| {
        let newest = history.first()?;
        Some((
            newest.kind(),
            container_status(view, newest, history.get(1), host),
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
    // Containers the spec names (from a static pod's manifest) that Docker has not made yet.
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
    for list in [&mut init_statuses, &mut statuses] {
        list.sort_by(|a, b| a.name.cmp(&b.name));
    }

    let phase = phase(view);
    let pod_ips = pod_ips(view, host, context);
    PodStatus {
        phase: Some(phase.to_string()),
        conditions: Some(conditions(phase, &pending_init, &statuses)),
        host_ip: context.host_ip.map(|ip| ip.to_string()),
        host_ips: context
            .host_ip
            .map(|ip| vec![HostIP { ip: ip.to_string() }]),
        pod_ip: pod_ips.first().map(|ip| ip.ip.clone()),
        pod_ips: Some(pod_ips).filter(|ips| !ips.is_empty()),
        start_time: view.sandbox.as_ref().and_then(|s| s.started_at()).map(Time),
        qos_class: qos_class(view).map(str::to_string),
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

/// The kubelet's conditions (`pkg/kubelet/status/generate.go`), with its reasons and
/// messages. Transition times are not in Docker.
fn conditions(
    phase: &str,
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
        initialized,
        ready("Ready"),
        ready("ContainersReady"),
        condition("PodScheduled", true, None, None),
    ]
}

fn container_status(
    view: &PodView,
    newest: &Instance,
    previous: Option<&Instance>,
    host: &HostFacts,
) -> ContainerStatus {
    let running = newest.run_state() == RunState::Running;
    let succeeded = newest.run_state() == RunState::Exited
        && newest.inspect.state.as_ref().and_then(|s| s.exit_code) == Some(0);
    // App containers: probe results are not in Docker, so running is the most that can be
    // said. Init containers have no probes: the kubelet calls them ready once they succeeded.
    let ready = match newest.kind() {
        ContainerKind::Init => succeeded,
        ContainerKind::App | ContainerKind::Ephemeral => running,
    };
    let image = view.image(newest);
    let image_id = newest.image_id().unwrap_or_default();
    let repo_digest = image
        .and_then(|image| image.repo_digests.as_ref())
        .and_then(|digests| digests.first());
    ContainerStatus {
        name: newest.container_name.to_string(),
        state: Some(state(newest, host)),
        last_state: previous
            .filter(|p| p.run_state() == RunState::Exited)
            .map(|p| ContainerState {
                terminated: Some(terminated(p, host)),
                ..ContainerState::default()
            }),
        restart_count: newest.restart_count().unwrap_or_default(),
        container_id: Some(container_id(newest)),
        image: super::image_name(image).unwrap_or_else(|| image_id.to_string()),
        image_id: match repo_digest {
            Some(digest) => format!("docker-pullable://{digest}"),
            None => format!("docker://{image_id}"),
        },
        ready,
        started: Some(running),
        ..ContainerStatus::default()
    }
}

fn container_id(instance: &Instance) -> String {
    format!("docker://{}", instance.id)
}

fn state(instance: &Instance, host: &HostFacts) -> ContainerState {
    match instance.run_state() {
        RunState::Running => ContainerState {
            running: Some(ContainerStateRunning {
                started_at: instance.started_at().map(Time),
            }),
            ..ContainerState::default()
        },
        RunState::Created => ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some("ContainerCreating".to_string()),
                message: None,
            }),
            ..ContainerState::default()
        },
        RunState::Exited => ContainerState {
            terminated: Some(terminated(instance, host)),
            ..ContainerState::default()
        },
    }
}

fn terminated(instance: &Instance, host: &HostFacts) -> ContainerStateTerminated {
    let state = instance.inspect.state.as_ref();
    let exit_code = state
        .and_then(|s| s.exit_code)
        .and_then(|code| i32::try_from(code).ok())
        .unwrap_or_default();
    let oom_killed = state.and_then(|s| s.oom_killed) == Some(true);
    // The runtime's error, then what the container wrote to its termination-message file.
    let message = [
        state.and_then(|s| s.error.as_deref()),
        host.termination_messages
            .get(instance.id)
            .map(String::as_str),
    ]
    .into_iter()
    .flatten()
    .filter(|text| !text.is_empty())
    .collect::<Vec<_>>()
    .join("\n");
    let message = Some(message).filter(|m| !m.is_empty());
    let finished_at = instance.finished_at();

    // Docker never started it (bad command, missing mount): no times of its own.
    if finished_at.is_none() && exit_code != 0 {
        let created = instance.created.map(Time);
        return ContainerStateTerminated {
            exit_code,
            reason: Some("ContainerCannotRun".to_string()),
            message,
            started_at: created.clone(),
            finished_at: created,
            container_id: Some(container_id(instance)),
            signal: None,
        };
    }
    let reason = match (oom_killed, exit_code) {
        (true, _) => "OOMKilled",
        (false, 0) => "Completed",
        (false, _) => "Error",
    };
    ContainerStateTerminated {
        exit_code,
        reason: Some(reason.to_string()),
        message,
        started_at: instance.started_at().map(Time),
        finished_at: finished_at.map(Time),
        container_id: Some(container_id(instance)),
        signal: None,
    }
}

/// The kubelet decides the phase with the restart policy, which Docker does not hold. The
/// sandbox stands in for it: the kubelet stops the sandbox once a pod is finished.
fn phase(view: &PodView) -> &'static str {
    // Init containers running alone keep the pod pending.
    let ever_started = view
        .containers
        .values()
        .flatten()
        .filter(|instance| instance.kind() == ContainerKind::App)
        .any(|instance| instance.ever_started());
    if !ever_started {
        return "Pending";
    }
    let sandbox_running = view
        .sandbox
        .as_ref()
        .is_some_and(|s| s.run_state() == RunState::Running);
    if sandbox_running || view.newest().any(|i| i.run_state() == RunState::Running) {
        return "Running";
    }
    let all_succeeded = view.newest().all(|instance| {
        instance.run_state() == RunState::Exited
            && instance.inspect.state.as_ref().and_then(|s| s.exit_code) == Some(0)
    });
    if all_succeeded { "Succeeded" } else { "Failed" }
}

fn pod_ips(view: &PodView, host: &HostFacts, context: &Context) -> Vec<PodIP> {
    if spec::host_network(view) == Some(true) {
        return context
            .host_ip
            .map(|ip| PodIP { ip: ip.to_string() })
            .into_iter()
            .collect();
    }
    // Under CNI only the sandbox's network namespace knows the addresses.
    if !host.pod_ips.is_empty() {
        return host
            .pod_ips
            .iter()
            .map(|ip| PodIP { ip: ip.to_string() })
            .collect();
    }
    // On the Docker bridge the sandbox's network settings hold the address.
    let Some(networks) = view
        .sandbox
        .as_ref()
        .and_then(|s| s.inspect.network_settings.as_ref())
        .and_then(|n| n.networks.as_ref())
    else {
        return Vec::new();
    };
    let mut ips = Vec::new();
    for endpoint in networks.values() {
        for ip in [&endpoint.ip_address, &endpoint.global_ipv6_address]
            .into_iter()
            .flatten()
        {
            if !ip.is_empty() && !ips.iter().any(|known: &PodIP| &known.ip == ip) {
                ips.push(PodIP { ip: ip.clone() });
            }
        }
    }
    ips
}

/// The QoS class, from the cgroup the kubelet placed the pod in, else from the OOM score it
/// gave the containers. The sandbox's settings are fixed by the kubelet and say nothing.
fn qos_class(view: &PodView) -> Option<&'static str> {
    let instances = || view.newest().chain(view.sandbox.as_ref());
    let from_cgroup = instances().find_map(|instance| {
        let parent = instance
            .inspect
            .host_config
            .as_ref()?
            .cgroup_parent
            .as_deref()?;
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
        view.newest().find_map(|instance| {
            match instance.inspect.host_config.as_ref()?.oom_score_adj? {
                -998 | -997 => Some("Guaranteed"),
                1000 => Some("BestEffort"),
                2..=999 => Some("Burstable"),
                _ => None,
            }
        })
    })
}
