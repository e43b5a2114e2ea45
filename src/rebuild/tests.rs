//! The rebuild's rules on small hand-built records: one pod per case, built with the helpers
//! below, and the field of the Pod each rule decides.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, PodStatus};
use k8s_openapi::jiff::Timestamp;

use super::{Context, rebuild};
use crate::kubelet;
use crate::record::{
    ContainerId, HostFacts, Instance, NamespaceMode, PodRecord, PodView, Resources, Sandbox,
    SandboxState, State,
};

const UID: &str = "u1";

fn at(second: i64) -> Option<Timestamp> {
    Timestamp::from_second(1_800_000_000 + second).ok()
}

fn pod_labels() -> BTreeMap<String, String> {
    BTreeMap::from([
        (kubelet::POD_NAME_LABEL.into(), "web".into()),
        (kubelet::POD_NAMESPACE_LABEL.into(), "default".into()),
        (kubelet::POD_UID_LABEL.into(), UID.into()),
    ])
}

fn sandbox(state: SandboxState) -> Sandbox {
    Sandbox {
        id: ContainerId {
            runtime: "test".into(),
            id: "s1".into(),
        },
        created: at(0),
        started: at(1),
        state,
        labels: pod_labels(),
        ips: Some(vec!["198.51.100.7".parse().expect("literal")]),
        ..Sandbox::default()
    }
}

/// Instance `attempt` of container `name`, created at second `created`.
fn instance(name: &str, attempt: u32, created: i64, state: State) -> Instance {
    let mut labels = pod_labels();
    labels.insert(kubelet::CONTAINER_NAME_LABEL.into(), name.into());
    Instance {
        id: ContainerId {
            runtime: "test".into(),
            id: format!("{name}-{attempt}"),
        },
        name: name.into(),
        attempt: Some(attempt),
        created: at(created),
        state,
        labels,
        annotations: BTreeMap::from([(kubelet::RESTART_COUNT.into(), attempt.to_string())]),
        ..Instance::default()
    }
}

fn running(since: i64) -> State {
    State::Running { started: at(since) }
}

fn exited(code: i32, started: i64, finished: i64) -> State {
    State::Exited {
        exit_code: code,
        reason: None,
        message: None,
        started: at(started),
        finished: at(finished),
    }
}

fn pod_of(sandboxes: Vec<Sandbox>, containers: Vec<Instance>) -> Pod {
    let record = PodRecord {
        sandboxes,
        containers,
    };
    let view = PodView::new(&record).expect("the record holds a pod");
    rebuild(&view, &HostFacts::default(), &Context::default())
}

fn status_of(sandboxes: Vec<Sandbox>, containers: Vec<Instance>) -> PodStatus {
    pod_of(sandboxes, containers).status.unwrap_or_default()
}

fn conditions(status: &PodStatus) -> Vec<(String, String)> {
    status
        .conditions
        .iter()
        .flatten()
        .map(|c| (c.type_.clone(), c.status.clone()))
        .collect()
}

#[test]
fn phase_follows_the_sandbox_and_the_containers() {
    let ready = || vec![sandbox(SandboxState::Ready)];
    let stopped = || vec![sandbox(SandboxState::NotReady)];
    let cases: Vec<(&str, Vec<Sandbox>, Vec<Instance>, &str)> = vec![
        (
            "nothing started yet",
            ready(),
            vec![instance("app", 0, 2, State::Created)],
            "Pending",
        ),
        (
            "running",
            ready(),
            vec![instance("app", 0, 2, running(3))],
            "Running",
        ),
        (
            "exited, sandbox still up (restarting)",
            ready(),
            vec![instance("app", 0, 2, exited(1, 3, 4))],
            "Running",
        ),
        (
            "all exited 0, sandbox stopped",
            stopped(),
            vec![instance("app", 0, 2, exited(0, 3, 4))],
            "Succeeded",
        ),
        (
            "one failed, sandbox stopped",
            stopped(),
            vec![
                instance("a", 0, 2, exited(0, 3, 4)),
                instance("b", 0, 2, exited(2, 3, 4)),
            ],
            "Failed",
        ),
        (
            "no sandbox, a container still runs",
            vec![],
            vec![instance("app", 0, 2, running(3))],
            "Running",
        ),
    ];
    for (what, sandboxes, containers, phase) in cases {
        let status = status_of(sandboxes, containers);
        assert_eq!(status.phase.as_deref(), Some(phase), "{what}");
    }
}

#[test]
fn conditions_say_ready_only_when_every_container_runs() {
    let all_up = status_of(
        vec![sandbox(SandboxState::Ready)],
        vec![
            instance("a", 0, 2, running(3)),
            instance("b", 0, 2, running(3)),
        ],
    );
    let truth = |status: &str| status.to_string();
    assert_eq!(
        conditions(&all_up),
        [
            ("Initialized".to_string(), truth("True")),
            ("Ready".to_string(), truth("True")),
            ("ContainersReady".to_string(), truth("True")),
            ("PodScheduled".to_string(), truth("True")),
        ]
    );
    let one_down = status_of(
        vec![sandbox(SandboxState::Ready)],
        vec![
            instance("a", 0, 2, running(3)),
            instance("b", 0, 2, exited(1, 3, 4)),
        ],
    );
    let ready = one_down
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Ready")
        .cloned()
        .unwrap_or_default();
    assert_eq!(ready.status, "False");
    assert_eq!(ready.reason.as_deref(), Some("ContainersNotReady"));
    assert_eq!(
        ready.message.as_deref(),
        Some("containers with unready status: [b]")
    );
}

#[test]
fn qos_comes_from_the_cgroup_parent_else_the_oom_score() {
    let with = |cgroup: Option<&str>, oom_score_adj: Option<i64>| {
        let mut app = instance("app", 0, 2, running(3));
        app.cgroup_parent = cgroup.map(str::to_string);
        app.resources = Resources {
            oom_score_adj,
            ..Resources::default()
        };
        status_of(vec![sandbox(SandboxState::Ready)], vec![app]).qos_class
    };
    let cases = [
        (Some("/kubepods/besteffort/podu1"), None, Some("BestEffort")),
        (
            Some("/kubepods/burstable/podu1"),
            Some(-998),
            Some("Burstable"),
        ),
        (Some("kubepods-podu1.slice"), None, Some("Guaranteed")),
        (None, Some(-998), Some("Guaranteed")),
        (None, Some(1000), Some("BestEffort")),
        (None, Some(500), Some("Burstable")),
        (Some("/docker"), Some(0), None),
        (None, None, None),
    ];
    for (cgroup, oom, qos) in cases {
        assert_eq!(with(cgroup, oom).as_deref(), qos, "{cgroup:?} {oom:?}");
    }
}

#[test]
fn restart_count_and_last_state_come_from_the_two_newest_instances() {
    let status = status_of(
        vec![sandbox(SandboxState::Ready)],
        vec![
            instance("app", 0, 2, exited(1, 3, 4)),
            instance("app", 2, 10, running(11)),
            instance("app", 1, 5, exited(137, 6, 7)),
        ],
    );
    let app = status
        .container_statuses
        .unwrap_or_default()
        .pop()
        .unwrap_or_default();
    assert_eq!(app.restart_count, 2);
    assert_eq!(app.container_id.as_deref(), Some("test://app-2"));
    let last = app
        .last_state
        .and_then(|s| s.terminated)
        .unwrap_or_default();
    assert_eq!(last.exit_code, 137);
    assert_eq!(last.reason.as_deref(), Some("Error"));
    assert_eq!(last.container_id.as_deref(), Some("test://app-1"));

    // Without the annotation, the attempt is the restart count.
    let mut bare = instance("app", 4, 2, running(3));
    bare.annotations.clear();
    let status = status_of(vec![sandbox(SandboxState::Ready)], vec![bare]);
    let restarts = status.container_statuses.unwrap_or_default()[0].restart_count;
    assert_eq!(restarts, 4);
}

#[test]
fn terminated_reasons_times_and_messages() {
    let terminated = |state: State, oom_killed: bool| {
        let mut app = instance("app", 0, 2, state);
        app.oom_killed = oom_killed;
        let status = status_of(vec![sandbox(SandboxState::NotReady)], vec![app]);
        status.container_statuses.unwrap_or_default()[0]
            .state
            .clone()
            .and_then(|s| s.terminated)
            .unwrap_or_default()
    };
    assert_eq!(
        terminated(exited(0, 3, 4), true).reason.as_deref(),
        Some("OOMKilled")
    );
    assert_eq!(
        terminated(exited(0, 3, 4), false).reason.as_deref(),
        Some("Completed")
    );
    // The runtime's own reason wins, and a container that never ran takes its creation time.
    let never_ran = terminated(
        State::Exited {
            exit_code: 128,
            reason: Some("StartError".into()),
            message: Some("exec: not found".into()),
            started: None,
            finished: None,
        },
        false,
    );
    assert_eq!(never_ran.reason.as_deref(), Some("StartError"));
    assert_eq!(never_ran.message.as_deref(), Some("exec: not found"));
    assert_eq!(never_ran.started_at.map(|t| t.0), at(2));
    assert_eq!(never_ran.finished_at.map(|t| t.0), at(2));
}

#[test]
fn the_newest_sandbox_names_the_pod_and_host_namespaces_show() {
    let mut old = sandbox(SandboxState::NotReady);
    old.id.id = "s0".into();
    old.created = at(-100);
    old.labels.insert("version".into(), "old".into());
    let mut new = sandbox(SandboxState::Ready);
    new.labels.insert("version".into(), "new".into());
    new.annotations
        .insert(kubelet::CONFIG_SOURCE.into(), "api".into());
    new.network = NamespaceMode::Node;
    new.pid_namespace = NamespaceMode::Node;
    let pod = pod_of(vec![old, new], vec![instance("app", 0, 2, running(3))]);
    let labels = pod.metadata.labels.unwrap_or_default();
    // The kubelet's identity labels are bookkeeping, not the pod's labels.
    assert_eq!(
        labels,
        BTreeMap::from([("version".to_string(), "new".to_string())])
    );
    assert_eq!(pod.metadata.uid.as_deref(), Some(UID));
    let spec = pod.spec.unwrap_or_default();
    assert_eq!(spec.host_network, Some(true));
    assert_eq!(spec.host_pid, Some(true));
    assert_eq!(spec.host_ipc, None);
    // Host-network pods have the node's address, which this context does not know.
    assert_eq!(pod.status.unwrap_or_default().pod_ip, None);
}

#[test]
fn pod_ips_come_from_the_runtime_else_from_the_namespace() {
    let status = status_of(
        vec![sandbox(SandboxState::Ready)],
        vec![instance("app", 0, 2, running(3))],
    );
    assert_eq!(status.pod_ip.as_deref(), Some("198.51.100.7"));

    let mut cni = sandbox(SandboxState::Ready);
    cni.ips = None;
    let record = PodRecord {
        sandboxes: vec![cni],
        containers: vec![instance("app", 0, 2, running(3))],
    };
    let view = PodView::new(&record).expect("pod");
    let host = HostFacts {
        pod_ips: vec!["198.51.100.9".parse().expect("literal")],
        ..HostFacts::default()
    };
    let status = rebuild(&view, &host, &Context::default())
        .status
        .unwrap_or_default();
    assert_eq!(status.pod_ip.as_deref(), Some("198.51.100.9"));
}

#[test]
fn a_pod_being_deleted_keeps_its_deletion_grace_period() {
    let app = instance("app", 0, 2, running(3));
    let pod = pod_of(vec![sandbox(SandboxState::Ready)], vec![app.clone()]);
    assert_eq!(pod.metadata.deletion_grace_period_seconds, None);

    let mut deleting = app;
    deleting
        .annotations
        .insert(kubelet::DELETION_GRACE_PERIOD.into(), "30".into());
    let pod = pod_of(vec![sandbox(SandboxState::Ready)], vec![deleting]);
    assert_eq!(pod.metadata.deletion_grace_period_seconds, Some(30));
}
