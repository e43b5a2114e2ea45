//! What upstream kubelets really leave on a node, on both real runtimes (Docker as cri-dockerd
//! lays pods out, containerd over CRI): init containers without a type annotation, the
//! kubelet's `allocated_pods_state` checkpoint, `FallbackToLogsOnError` log tails, the phase
//! of a pod whose container could not start, and `PodReadyToStartContainers`. Each scenario
//! is laid out on Docker and on containerd and asked for over HTTP.
//!
//! Needs `DOCKER_HOST` and `CONTAINER_RUNTIME_ENDPOINT` (scripts/test starts private ones);
//! the CRI half is skipped without a containerd outside CI, and fails under `CI=true`.

mod support;

use pod_detail_collector::rebuild::INIT_CONTAINERS_ANNOTATION;
use serde_json::{Value, json};
use support::cri::CriNode;
use support::kubelet::write_allocated_pods_state;
use support::pod::{by_name, condition, container, names, status};
use support::service::{Collector, cri_settings_for};
use support::{Container, CreatedPod, Instance, Node, Pod};

const MI: i64 = 1024 * 1024;

async fn cri_collector(node: &CriNode) -> Collector {
    Collector::start_with(cri_settings_for(node)).await
}

fn condition_status(pod: &Value, kind: &str) -> Value {
    condition(pod, kind)
        .map(|c| c["status"].clone())
        .unwrap_or_else(|| panic!("no {kind} condition: {}", pod["status"]))
}

// ---------------------------------------------------------------------------------------------
// Init containers, as an upstream kubelet lays them out: no type annotation.
// ---------------------------------------------------------------------------------------------

/// Two init containers that ran one after the other to success (named so that their order is
/// not the alphabetical one), then the regular containers.
fn pod_with_init_containers(ns: String) -> Pod {
    Pod::new(ns, "web-with-init")
        .container(Container::new("wait-for-db").instance(Instance::Exit(0)))
        .container(Container::new("copy-config").instance(Instance::Exit(0)))
        .container(Container::new("web"))
        .container(Container::new("sidecar"))
}

fn check_init_containers(pod: &Value, created: &CreatedPod) {
    assert_eq!(
        names(&pod["spec"]["initContainers"]),
        ["wait-for-db", "copy-config"],
        "spec.initContainers, in the order they ran"
    );
    assert_eq!(names(&pod["spec"]["containers"]), ["sidecar", "web"]);
    assert_eq!(
        names(&pod["status"]["initContainerStatuses"]),
        ["wait-for-db", "copy-config"],
        "initContainerStatuses, in the spec's order"
    );
    for init in ["wait-for-db", "copy-config"] {
        let st = by_name(&pod["status"]["initContainerStatuses"], init)
            .unwrap_or_else(|| panic!("{init}: {}", pod["status"]));
        assert_eq!(st["ready"], true, "{st}");
        assert_eq!(st["state"]["terminated"]["exitCode"], 0, "{st}");
        assert_eq!(st["state"]["terminated"]["reason"], "Completed", "{st}");
        assert!(
            st["containerID"]
                .as_str()
                .is_some_and(|id| id.ends_with(created.current(init))),
            "{st}"
        );
    }
    assert_eq!(
        names(&pod["status"]["containerStatuses"]),
        ["sidecar", "web"]
    );
    for kind in ["Initialized", "Ready", "ContainersReady"] {
        assert_eq!(condition_status(pod, kind), "True", "{kind}");
    }
    assert_eq!(pod["status"]["phase"], "Running");
    assert_eq!(
        pod["metadata"]["annotations"][INIT_CONTAINERS_ANNOTATION],
        "inferred"
    );
}

/// A `restartPolicy: Never` pod whose two regular containers were created together: the one
/// that finished first is not an init container.
fn job_created_together(ns: String) -> Pod {
    Pod::new(ns, "two-step-job")
        .containers_created_together()
        .finished()
        .container(Container::new("fetch").instance(Instance::Exit(0)))
        .container(Container::new("report").instance(Instance::Exit(0)))
}

fn check_created_together(pod: &Value) {
    assert!(
        pod["spec"]["initContainers"].is_null(),
        "no init containers: {}",
        pod["spec"]
    );
    assert_eq!(names(&pod["spec"]["containers"]), ["fetch", "report"]);
    assert!(pod["status"]["initContainerStatuses"].is_null());
    assert!(pod["metadata"]["annotations"][INIT_CONTAINERS_ANNOTATION].is_null());
    assert_eq!(pod["status"]["phase"], "Succeeded");
}

#[tokio::test]
async fn init_containers_without_a_type_on_docker() {
    let node = Node::new().await;
    let collector = Collector::start(&node).await;
    let created = node.run(pod_with_init_containers(node.ns("default"))).await;
    let pod = collector.pod(&created.namespace, &created.name).await;
    check_init_containers(&pod, &created);

    let job = node.run(job_created_together(node.ns("batch"))).await;
    let pod = collector.pod(&job.namespace, &job.name).await;
    check_created_together(&pod);
    collector.shutdown().await;
}

#[tokio::test]
async fn init_containers_without_a_type_on_containerd() {
    let Some(node) = CriNode::new().await else {
        return;
    };
    let collector = cri_collector(&node).await;
    let created = node.run(pod_with_init_containers(node.ns("default"))).await;
    let pod = collector.pod(&created.namespace, &created.name).await;
    check_init_containers(&pod, &created);

    let job = node.run(job_created_together(node.ns("batch"))).await;
    let pod = collector.pod(&job.namespace, &job.name).await;
    check_created_together(&pod);
    collector.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// The kubelet's allocated_pods_state: memory requests and the QoS class.
// ---------------------------------------------------------------------------------------------

fn api_pod(ns: String) -> Pod {
    Pod::new(ns, "api").container(
        Container::new("api")
            .cpu_request(250)
            .memory_request(64 * MI)
            .memory_limit(128 * MI),
    )
}

/// Asks for the pod without the checkpoint, with it, and with a corrupt one.
async fn check_allocation(
    collector: &Collector,
    kubelet_root: &std::path::Path,
    created: &CreatedPod,
) {
    let state = kubelet_root.join("allocated_pods_state");
    let _ = std::fs::remove_file(&state);
    let without = collector.pod(&created.namespace, &created.name).await;
    let resources = &container(&without, "api")["resources"];
    assert!(
        resources["requests"]["memory"].is_null(),
        "no runtime holds memory requests: {resources}"
    );

    write_allocated_pods_state(kubelet_root, &[(&created.uid, &created.pod)]);
    let with = collector.pod(&created.namespace, &created.name).await;
    assert_eq!(
        container(&with, "api")["resources"],
        json!({
            "requests": {"cpu": "250m", "memory": "64Mi"},
            "limits": {"memory": "128Mi"},
        })
    );
    assert_eq!(with["status"]["qosClass"], "Burstable");

    // A corrupt checkpoint (its checksum no longer matches) changes nothing.
    let text = std::fs::read_to_string(&state).expect("checkpoint");
    std::fs::write(&state, text.replace("64Mi", "65Mi")).expect("corrupt it");
    let corrupt = collector.pod(&created.namespace, &created.name).await;
    assert_eq!(corrupt, without, "a corrupt checkpoint answers as before");
    std::fs::write(&state, "not a checkpoint").expect("garbage");
    let garbage = collector.pod(&created.namespace, &created.name).await;
    assert_eq!(garbage, without);
}

#[tokio::test]
async fn allocated_requests_on_docker() {
    let node = Node::new().await;
    let collector = Collector::start(&node).await;
    let created = node.run(api_pod(node.ns("default"))).await;
    check_allocation(&collector, &node.kubelet_root, &created).await;
    collector.shutdown().await;
}

#[tokio::test]
async fn allocated_requests_on_containerd() {
    let Some(node) = CriNode::new().await else {
        return;
    };
    let collector = cri_collector(&node).await;
    let created = node.run(api_pod(node.ns("default"))).await;
    check_allocation(&collector, &node.kubelet_root, &created).await;
    collector.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// FallbackToLogsOnError: the log's tail when the termination-message file is empty.
// ---------------------------------------------------------------------------------------------

fn crashing_pod(ns: String) -> Pod {
    let lines = ["connecting to postgres:5432", "fatal: database unreachable"];
    Pod::new(ns, "migrate").finished().container(
        Container::new("migrate")
            .fallback_to_logs_on_error()
            .instance(Instance::ExitWithLog(
                3,
                lines.iter().map(|l| l.to_string()).collect(),
            )),
    )
}

fn check_log_tail(pod: &Value) {
    let terminated = &status(pod, "migrate")["state"]["terminated"];
    assert_eq!(terminated["exitCode"], 3, "{terminated}");
    assert_eq!(
        terminated["message"], "connecting to postgres:5432\nfatal: database unreachable\n",
        "the log's tail: {terminated}"
    );
    assert_eq!(
        container(pod, "migrate")["terminationMessagePolicy"],
        "FallbackToLogsOnError"
    );
    assert_eq!(pod["status"]["phase"], "Failed");
}

#[tokio::test]
async fn fallback_to_logs_on_docker() {
    let node = Node::new().await;
    let collector = Collector::start(&node).await;
    let created = node.run(crashing_pod(node.ns("default"))).await;
    let pod = collector.pod(&created.namespace, &created.name).await;
    check_log_tail(&pod);
    collector.shutdown().await;
}

#[tokio::test]
async fn fallback_to_logs_on_containerd() {
    let Some(node) = CriNode::new().await else {
        return;
    };
    let collector = cri_collector(&node).await;
    let created = node.run(crashing_pod(node.ns("default"))).await;
    let pod = collector.pod(&created.namespace, &created.name).await;
    check_log_tail(&pod);
    collector.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// PodReadyToStartContainers, and the phase of a pod whose container could not start.
// ---------------------------------------------------------------------------------------------

fn first_condition(pod: &Value) -> Value {
    pod["status"]["conditions"][0].clone()
}

fn check_ready_to_start(pod: &Value, want: &str) {
    assert_eq!(
        first_condition(pod),
        json!({"type": "PodReadyToStartContainers", "status": want}),
        "{}",
        pod["status"]
    );
}

#[tokio::test]
async fn ready_to_start_containers_and_cannot_run_on_docker() {
    let node = Node::new().await;
    let collector = Collector::start(&node).await;
    let ready = node
        .run(Pod::new(node.ns("kube-system"), "agent").host_network())
        .await;
    let stopped = node
        .run(
            Pod::new(node.ns("batch"), "done")
                .finished()
                .container(Container::new("job").instance(Instance::Exit(0))),
        )
        .await;
    let networked = node
        .run(Pod::new(node.ns("default"), "cni-web").pod_ip("198.51.100.71/24"))
        .await;
    let broken = node
        .run(
            Pod::new(node.ns("default"), "typo")
                .host_network()
                .container(Container::new("app").instance(Instance::CannotRun)),
        )
        .await;

    let pod = collector.pod(&ready.namespace, &ready.name).await;
    check_ready_to_start(&pod, "True");
    let pod = collector.pod(&stopped.namespace, &stopped.name).await;
    check_ready_to_start(&pod, "False");
    let pod = collector.pod(&networked.namespace, &networked.name).await;
    assert_eq!(pod["status"]["podIP"], "198.51.100.71");
    check_ready_to_start(&pod, "True");

    // cri-dockerd's ContainerCannotRun: stopped, not waiting; the sandbox runs.
    let pod = collector.pod(&broken.namespace, &broken.name).await;
    assert_eq!(
        status(&pod, "app")["state"]["terminated"]["reason"],
        "ContainerCannotRun"
    );
    assert_eq!(pod["status"]["phase"], "Running");
    collector.shutdown().await;
}

#[tokio::test]
async fn ready_to_start_containers_and_cannot_run_on_containerd() {
    let Some(node) = CriNode::new().await else {
        return;
    };
    let collector = cri_collector(&node).await;
    let ready = node
        .run(Pod::new(node.ns("kube-system"), "agent").host_network())
        .await;
    let stopped = node
        .run(
            Pod::new(node.ns("batch"), "done")
                .finished()
                .container(Container::new("job").instance(Instance::Exit(0))),
        )
        .await;
    // containerd's CNI plugin gives the pod its address.
    let networked = node.run(Pod::new(node.ns("default"), "cni-web")).await;
    let broken = node
        .run(
            Pod::new(node.ns("default"), "typo")
                .container(Container::new("app").instance(Instance::CannotRun)),
        )
        .await;

    let pod = collector.pod(&ready.namespace, &ready.name).await;
    check_ready_to_start(&pod, "True");
    let pod = collector.pod(&stopped.namespace, &stopped.name).await;
    check_ready_to_start(&pod, "False");
    let pod = collector.pod(&networked.namespace, &networked.name).await;
    assert_eq!(
        pod["status"]["podIP"].as_str(),
        networked.cni_ips.first().map(String::as_str),
        "{}",
        pod["status"]
    );
    check_ready_to_start(&pod, "True");

    // containerd's StartError: stopped, not waiting; the sandbox runs.
    let pod = collector.pod(&broken.namespace, &broken.name).await;
    assert_eq!(
        status(&pod, "app")["state"]["terminated"]["reason"],
        "StartError"
    );
    assert_eq!(pod["status"]["phase"], "Running");
    collector.shutdown().await;
}
