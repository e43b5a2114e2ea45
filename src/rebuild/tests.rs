//! The rebuild's rules on small hand-built records: one pod per case, built with the helpers
//! below, and the field of the Pod each rule decides.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, PodStatus, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::jiff::Timestamp;

use super::{Context, INIT_CONTAINERS_ANNOTATION, rebuild};
use crate::kubelet;
use crate::record::{
    Allocation, ContainerId, HostFacts, Instance, NamespaceMode, PodRecord, PodView, Resources,
    Sandbox, SandboxState, State,
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
            ("PodReadyToStartContainers".to_string(), truth("True")),
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

fn pod_with(sandboxes: Vec<Sandbox>, containers: Vec<Instance>, host: &HostFacts) -> Pod {
    let record = PodRecord {
        sandboxes,
        containers,
    };
    let view = PodView::new(&record).expect("the record holds a pod");
    rebuild(&view, host, &Context::default())
}

fn names<T>(list: Option<&Vec<T>>, name: impl Fn(&T) -> &str) -> Vec<String> {
    list.into_iter()
        .flatten()
        .map(|c| name(c).to_string())
        .collect()
}

fn init_names(pod: &Pod) -> Vec<String> {
    names(
        pod.spec.as_ref().and_then(|s| s.init_containers.as_ref()),
        |c| &c.name,
    )
}

fn app_names(pod: &Pod) -> Vec<String> {
    names(pod.spec.as_ref().map(|s| &s.containers), |c| &c.name)
}

fn inferred_mark(pod: &Pod) -> Option<&str> {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(INIT_CONTAINERS_ANNOTATION))
        .map(String::as_str)
}

fn condition<'a>(status: &'a PodStatus, type_: &str) -> (&'a str, Option<&'a str>) {
    status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.as_str(), c.reason.as_deref()))
        .unwrap_or(("missing", None))
}

#[test]
fn init_containers_are_told_by_the_kubelets_order() {
    // Laid out as an upstream kubelet does (no type): zz-perms ran first, then a-wait-for-db,
    // each to success before the next was created; then the regular containers together.
    let containers = vec![
        instance("zz-perms", 0, 2, exited(0, 3, 4)),
        instance("a-wait-for-db", 0, 5, exited(0, 6, 8)),
        instance("web", 0, 10, running(11)),
        instance("sidecar", 0, 10, running(11)),
    ];
    let pod = pod_of(vec![sandbox(SandboxState::Ready)], containers);
    assert_eq!(init_names(&pod), ["zz-perms", "a-wait-for-db"]);
    assert_eq!(app_names(&pod), ["sidecar", "web"]);
    assert_eq!(inferred_mark(&pod), Some("inferred"));
    let status = pod.status.unwrap_or_default();
    assert_eq!(
        names(status.init_container_statuses.as_ref(), |s| &s.name),
        ["zz-perms", "a-wait-for-db"]
    );
    assert!(
        status
            .init_container_statuses
            .iter()
            .flatten()
            .all(|s| s.ready)
    );
    assert_eq!(condition(&status, "Initialized"), ("True", None));
    assert_eq!(condition(&status, "Ready"), ("True", None));
    assert_eq!(condition(&status, "ContainersReady"), ("True", None));
    assert_eq!(status.phase.as_deref(), Some("Running"));
}

#[test]
fn regular_containers_created_together_are_not_init_containers() {
    // restartPolicy Never: both created at once; "a" finished quickly, but after "b" was
    // created.
    let containers = vec![
        instance("a", 0, 2, exited(0, 3, 4)),
        instance("b", 0, 3, exited(0, 4, 9)),
    ];
    let pod = pod_of(vec![sandbox(SandboxState::NotReady)], containers);
    assert!(init_names(&pod).is_empty());
    assert_eq!(app_names(&pod), ["a", "b"]);
    assert_eq!(inferred_mark(&pod), None);
    assert_eq!(
        pod.status.and_then(|s| s.phase).as_deref(),
        Some("Succeeded")
    );

    // A lone running first container cannot be told, nor can the last one.
    let pod = pod_of(
        vec![sandbox(SandboxState::Ready)],
        vec![
            instance("first", 0, 2, running(3)),
            instance("second", 0, 5, exited(0, 6, 7)),
        ],
    );
    assert!(init_names(&pod).is_empty());
    // A failed leading container is not an init container either.
    let pod = pod_of(
        vec![sandbox(SandboxState::Ready)],
        vec![
            instance("migrate", 0, 2, exited(1, 3, 4)),
            instance("app", 0, 5, running(6)),
        ],
    );
    assert!(init_names(&pod).is_empty());
}

#[test]
fn the_type_annotation_wins_where_a_kubelet_wrote_it() {
    let typed = |name: &str, created: i64, state: State, kind: &str| {
        let mut i = instance(name, 0, created, state);
        i.annotations
            .insert(kubelet::CONTAINER_TYPE.into(), kind.into());
        i
    };
    // By order alone "app" would be an init container; the kubelet says otherwise.
    let pod = pod_of(
        vec![sandbox(SandboxState::Ready)],
        vec![
            typed("app", 2, exited(0, 3, 4), "container"),
            typed("init", 5, exited(0, 6, 7), "init"),
            typed("web", 8, running(9), "container"),
        ],
    );
    assert_eq!(init_names(&pod), ["init"]);
    assert_eq!(inferred_mark(&pod), None);
}

#[test]
fn init_containers_are_judged_in_their_own_sandbox() {
    let mut old = sandbox(SandboxState::NotReady);
    old.id.id = "s0".into();
    old.created = at(-100);
    let mut new = sandbox(SandboxState::Ready);
    new.created = at(50);
    let in_sandbox = |mut i: Instance, id: &str| {
        i.sandbox_id = Some(ContainerId {
            runtime: "test".into(),
            id: id.into(),
        });
        i
    };
    // The old sandbox ran init then app; the new one has run the init container again and
    // created app since: the old instances do not decide the new order.
    let pod = pod_of(
        vec![old, new],
        vec![
            in_sandbox(instance("init", 0, -90, exited(0, -89, -88)), "s0"),
            in_sandbox(instance("app", 0, -80, exited(137, -79, -10)), "s0"),
            in_sandbox(instance("init", 1, 51, exited(0, 52, 53)), "s1"),
            in_sandbox(instance("app", 1, 54, running(55)), "s1"),
        ],
    );
    assert_eq!(init_names(&pod), ["init"]);
    assert_eq!(app_names(&pod), ["app"]);
    // Without the runtime naming the sandbox, creation times place the instances.
    let pod = pod_of(
        vec![{
            let mut s = sandbox(SandboxState::Ready);
            s.created = at(50);
            s
        }],
        vec![
            instance("app", 0, -80, running(-79)),
            instance("init", 1, 51, exited(0, 52, 53)),
            instance("app", 1, 54, running(55)),
        ],
    );
    assert_eq!(init_names(&pod), ["init"]);
}

#[test]
fn pending_until_a_regular_container_ran_or_terminated() {
    let ready = || vec![sandbox(SandboxState::Ready)];
    let cannot_run = || {
        instance(
            "app",
            0,
            2,
            State::Exited {
                exit_code: 127,
                reason: Some("ContainerCannotRun".into()),
                message: Some("exec: not found".into()),
                started: None,
                finished: None,
            },
        )
    };
    // The kubelet counts a container that could not start as stopped: with the sandbox up
    // the pod is running (and restarting it), once the sandbox is stopped it failed.
    assert_eq!(
        status_of(ready(), vec![cannot_run()]).phase.as_deref(),
        Some("Running")
    );
    assert_eq!(
        status_of(vec![sandbox(SandboxState::NotReady)], vec![cannot_run()])
            .phase
            .as_deref(),
        Some("Failed")
    );
    // Init containers done, the regular one only created: pending, initialized.
    let status = status_of(
        ready(),
        vec![
            instance("init", 0, 2, exited(0, 3, 4)),
            instance("app", 0, 5, State::Created),
        ],
    );
    assert_eq!(status.phase.as_deref(), Some("Pending"));
    assert_eq!(condition(&status, "Initialized"), ("True", None));
    // A waiting container whose previous instance terminated has run: not pending.
    let status = status_of(
        ready(),
        vec![
            instance("app", 0, 2, exited(1, 3, 4)),
            instance("app", 1, 5, State::Created),
        ],
    );
    assert_eq!(status.phase.as_deref(), Some("Running"));
}

#[test]
fn ready_to_start_containers_follows_the_newest_sandbox() {
    let app = || vec![instance("app", 0, 2, running(3))];
    let cases: Vec<(&str, Sandbox, &str)> = vec![
        (
            "ready, with an address",
            sandbox(SandboxState::Ready),
            "True",
        ),
        ("stopped", sandbox(SandboxState::NotReady), "False"),
        (
            "ready, pod network without an address",
            Sandbox {
                ips: Some(Vec::new()),
                ..sandbox(SandboxState::Ready)
            },
            "False",
        ),
        (
            "ready, node network (no address of its own)",
            Sandbox {
                ips: Some(Vec::new()),
                network: NamespaceMode::Node,
                ..sandbox(SandboxState::Ready)
            },
            "True",
        ),
    ];
    for (what, sandbox, want) in cases {
        let status = status_of(vec![sandbox], app());
        assert_eq!(
            condition(&status, "PodReadyToStartContainers"),
            (want, None),
            "{what}"
        );
        // The kubelet's order: this one first.
        let first = status
            .conditions
            .iter()
            .flatten()
            .next()
            .map(|c| c.type_.clone());
        assert_eq!(
            first.as_deref(),
            Some("PodReadyToStartContainers"),
            "{what}"
        );
    }
}

#[test]
fn pod_ips_one_per_family_the_nodes_first() {
    let mut dual = sandbox(SandboxState::Ready);
    dual.ips = Some(
        ["2001:db8::7", "198.51.100.7", "198.51.100.8", "2001:db8::8"]
            .iter()
            .filter_map(|ip| ip.parse().ok())
            .collect(),
    );
    let ips = |node: &str| {
        let record = PodRecord {
            sandboxes: vec![dual.clone()],
            containers: vec![instance("app", 0, 2, running(3))],
        };
        let view = PodView::new(&record).expect("pod");
        let context = Context {
            host_ip: node.parse().ok(),
            ..Context::default()
        };
        let status = rebuild(&view, &HostFacts::default(), &context)
            .status
            .unwrap_or_default();
        names(status.pod_ips.as_ref(), |ip| &ip.ip)
    };
    assert_eq!(ips("192.0.2.10"), ["198.51.100.7", "2001:db8::7"]);
    assert_eq!(ips("2001:db8::1"), ["2001:db8::7", "198.51.100.7"]);
    assert_eq!(ips("unknown"), ["198.51.100.7", "2001:db8::7"]);
}

fn requirements(requests: &[(&str, &str)], limits: &[(&str, &str)]) -> ResourceRequirements {
    let list = |pairs: &[(&str, &str)]| {
        Some(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
                .collect::<BTreeMap<_, _>>(),
        )
        .filter(|l| !l.is_empty())
    };
    ResourceRequirements {
        requests: list(requests),
        limits: list(limits),
        ..ResourceRequirements::default()
    }
}

#[test]
fn the_kubelets_allocation_gives_memory_requests_and_the_qos_class() {
    let burstable_cgroup = || {
        let mut app = instance("app", 0, 5, running(6));
        app.cgroup_parent = Some("/kubepods/burstable/podu1".into());
        app.resources = Resources {
            cpu_shares: Some(102),
            memory_limit: Some(128 * 1024 * 1024),
            ..Resources::default()
        };
        app
    };
    let host = |containers: Vec<(&str, ResourceRequirements)>| HostFacts {
        allocated: Some(Allocation {
            containers: containers
                .into_iter()
                .map(|(name, r)| (name.to_string(), r))
                .collect(),
            pod: None,
        }),
        ..HostFacts::default()
    };
    let memory_request = |pod: &Pod| {
        pod.spec
            .as_ref()
            .and_then(|s| s.containers.first())
            .and_then(|c| c.resources.as_ref())
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get("memory"))
            .map(|q| q.0.clone())
    };
    let qos = |pod: &Pod| pod.status.as_ref().and_then(|s| s.qos_class.clone());

    // Without the checkpoint: no memory request, QoS from the cgroup.
    let pod = pod_with(
        vec![sandbox(SandboxState::Ready)],
        vec![burstable_cgroup()],
        &HostFacts::default(),
    );
    assert_eq!(memory_request(&pod), None);
    assert_eq!(qos(&pod).as_deref(), Some("Burstable"));

    let burstable = requirements(
        &[("cpu", "100m"), ("memory", "64Mi")],
        &[("memory", "128Mi")],
    );
    let pod = pod_with(
        vec![sandbox(SandboxState::Ready)],
        vec![burstable_cgroup()],
        &host(vec![("app", burstable)]),
    );
    assert_eq!(memory_request(&pod).as_deref(), Some("64Mi"));
    assert_eq!(qos(&pod).as_deref(), Some("Burstable"));

    // Requests equal to limits for cpu and memory of every container, init ones too, the way
    // the API computes it; "1" and "1000m" are the same amount. The checkpoint wins over a
    // cgroup that says otherwise.
    let guaranteed = requirements(
        &[("cpu", "1"), ("memory", "128Mi")],
        &[("cpu", "1000m"), ("memory", "128Mi")],
    );
    let cases = vec![
        (vec![("app", guaranteed.clone())], "Guaranteed"),
        (
            vec![
                ("app", guaranteed.clone()),
                ("init", requirements(&[("cpu", "10m")], &[])),
            ],
            "Burstable",
        ),
        (vec![("app", ResourceRequirements::default())], "BestEffort"),
        (
            vec![("app", requirements(&[("ephemeral-storage", "1Gi")], &[]))],
            "BestEffort",
        ),
    ];
    for (containers, want) in cases {
        let pod = pod_with(
            vec![sandbox(SandboxState::Ready)],
            vec![burstable_cgroup()],
            &host(containers.clone()),
        );
        assert_eq!(qos(&pod).as_deref(), Some(want), "{containers:?}");
    }
    // A container the checkpoint does not name keeps what its cgroup tells.
    let pod = pod_with(
        vec![sandbox(SandboxState::Ready)],
        vec![burstable_cgroup()],
        &host(vec![("other", guaranteed)]),
    );
    let cpu_request = pod
        .spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .and_then(|c| {
            c.resources
                .as_ref()
                .and_then(|r| r.requests.as_ref())
                .and_then(|r| r.get("cpu"))
                .map(|q| q.0.clone())
        });
    assert_eq!(cpu_request.as_deref(), Some("100m"));
}

#[test]
fn fallback_to_logs_on_error_uses_the_log_tail() {
    let failed = |code: i32, reason: Option<&str>, policy: &str| {
        let mut app = instance(
            "app",
            0,
            2,
            State::Exited {
                exit_code: code,
                reason: reason.map(str::to_string),
                message: None,
                started: at(3),
                finished: at(4),
            },
        );
        app.annotations
            .insert(kubelet::TERMINATION_MESSAGE_POLICY.into(), policy.into());
        app
    };
    let message = |app: Instance, file: Option<&str>| {
        let id = app.id.clone();
        let host = HostFacts {
            termination_messages: file
                .map(|text| (id.clone(), text.to_string()))
                .into_iter()
                .collect(),
            log_tails: [(id, "panic: no database\n".to_string())].into(),
            ..HostFacts::default()
        };
        let pod = pod_with(vec![sandbox(SandboxState::NotReady)], vec![app], &host);
        pod.status
            .and_then(|s| s.container_statuses)
            .and_then(|s| s.into_iter().next())
            .and_then(|s| s.state)
            .and_then(|s| s.terminated)
            .and_then(|t| t.message)
    };
    let fallback = "FallbackToLogsOnError";
    assert_eq!(
        message(failed(2, Some("Error"), fallback), None).as_deref(),
        Some("panic: no database\n")
    );
    // The file's own message wins when it has one.
    assert_eq!(
        message(failed(2, Some("Error"), fallback), Some("bye")).as_deref(),
        Some("bye")
    );
    // Only for a failure, under that policy, of a container that ran.
    assert_eq!(message(failed(0, Some("Completed"), fallback), None), None);
    assert_eq!(message(failed(2, Some("Error"), "File"), None), None);
    assert_eq!(
        message(failed(127, Some("ContainerCannotRun"), fallback), None),
        None
    );
}

#[test]
fn the_runtime_message_and_the_termination_message_are_joined_as_the_kubelet_does() {
    let mut app = instance(
        "app",
        0,
        2,
        State::Exited {
            exit_code: 128,
            reason: Some("StartError".into()),
            message: Some("exec failed".into()),
            started: None,
            finished: at(3),
        },
    );
    app.name = "app".into();
    let host = HostFacts {
        termination_messages: [(app.id.clone(), "see /tmp/x".to_string())].into(),
        ..HostFacts::default()
    };
    let pod = pod_with(vec![sandbox(SandboxState::NotReady)], vec![app], &host);
    let message = pod
        .status
        .and_then(|s| s.container_statuses)
        .and_then(|s| s.into_iter().next())
        .and_then(|s| s.state)
        .and_then(|s| s.terminated)
        .and_then(|t| t.message);
    assert_eq!(message.as_deref(), Some("exec failed: see /tmp/x"));
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
