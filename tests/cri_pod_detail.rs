//! The collector on a real containerd, through its HTTP server: pods laid out over CRI exactly
//! as the kubelet does (`tests/support/cri.rs`), asked for the way the KubeDiag agent asks, and
//! checked field by field. A parity test lays one pod out on Docker and on containerd and
//! compares the two Pods, except for the differences the README lists.
//!
//! Needs `CONTAINER_RUNTIME_ENDPOINT` and `DOCKER_HOST` (scripts/test starts a private
//! containerd and dockerd); fails, not skips, without them under `CI=true`.

mod support;

use pod_detail_collector::runtime::RuntimeChoice;
use serde_json::{Value, json};
use support::cri::{CriNode, CriPod};
use support::pod::{condition, status};
use support::service::{Collector, HOST_IP, NODE_NAME, cri_settings_for, settings_for};
use support::{Container, Instance, Node, Pod, Volume};

const MI: i64 = 1024 * 1024;
const SECRET: &str = "s3cr3t-Pa55w0rd";

/// A collector reading the test's containerd, with the test's kubelet root.
async fn collector_for(node: &CriNode) -> Collector {
    Collector::start_with(cri_settings_for(node)).await
}

fn containerd_id(id: &str) -> String {
    format!("containerd://{id}")
}

fn control_plane_pod(ns: String) -> Pod {
    Pod::new(ns, "kube-scheduler-test-node")
        .host_network()
        .static_pod()
        .label("component", "kube-scheduler")
        .label("tier", "control-plane")
        .container(
            Container::new("kube-scheduler")
                .command([
                    "kube-scheduler",
                    "--kubeconfig=/etc/kubernetes/scheduler.conf",
                    "--leader-elect=true",
                ])
                .cpu_request(100)
                .first_attempt(30)
                .instance(Instance::Exit(2))
                .instance(Instance::Running),
        )
}

fn web_pod(ns: String) -> Pod {
    Pod::new(ns, "checkout-7d9f8b6c5-x2x9z")
        .label("app", "checkout")
        .annotation("prometheus.io/scrape", "true")
        .volume(Volume::secret("db-credentials"))
        .volume(Volume::empty_dir("cache"))
        .container(
            Container::new("api")
                .cpu(250, 500)
                .memory_request(64 * MI)
                .memory_limit(128 * MI)
                .port("http", 8080)
                .port("metrics", 9090)
                .env("DB_HOST", "postgres.shop.svc")
                .env("DB_PASSWORD", SECRET)
                .mount("db-credentials", "/etc/db", true)
                .mount("cache", "/cache", false),
        )
        .container(
            Container::new("log-shipper")
                .command(["sh", "-c"])
                .args(["while true; do sleep 5; done"])
                .cpu_request(50)
                .memory_limit(32 * MI)
                .mount("cache", "/cache", true),
        )
}

#[tokio::test]
async fn control_plane_static_pod_with_31_restarts() {
    let Some(node) = CriNode::new().await else {
        return;
    };
    let pod = node.run(control_plane_pod(node.ns("kube-system"))).await;
    let collector = collector_for(&node).await;
    let got = collector.pod(&pod.namespace, &pod.name).await;

    assert_eq!(got["metadata"]["uid"], pod.uid.as_str());
    assert_eq!(
        got["metadata"]["labels"],
        json!({"component": "kube-scheduler", "tier": "control-plane"})
    );
    assert_eq!(
        got["metadata"]["annotations"]["kubernetes.io/config.source"],
        "file"
    );
    let spec = &got["spec"];
    assert_eq!(spec["hostNetwork"], true);
    assert_eq!(spec["nodeName"], NODE_NAME);
    let container = &spec["containers"][0];
    assert_eq!(container["name"], "kube-scheduler");
    assert_eq!(
        container["command"],
        json!([
            "kube-scheduler",
            "--kubeconfig=/etc/kubernetes/scheduler.conf",
            "--leader-elect=true"
        ])
    );
    assert_eq!(container["resources"], json!({"requests": {"cpu": "100m"}}));
    assert_eq!(container["terminationMessagePath"], "/dev/termination-log");

    let st = status(&got, "kube-scheduler");
    assert_eq!(st["restartCount"], 31);
    assert_eq!(st["ready"], true);
    assert_eq!(
        st["containerID"],
        containerd_id(pod.current("kube-scheduler"))
    );
    assert!(st["state"]["running"]["startedAt"].is_string(), "{st}");
    let last = &st["lastState"]["terminated"];
    assert_eq!(last["exitCode"], 2);
    assert_eq!(last["reason"], "Error");
    assert_eq!(
        last["containerID"],
        containerd_id(pod.instance("kube-scheduler", 30))
    );
    assert!(last["finishedAt"].is_string(), "{last}");
    // containerd names the image with its registry, and its ID by repo digest.
    let image = st["image"].as_str().unwrap_or_default();
    assert!(image.starts_with("docker.io/"), "{image}");
    let image_id = st["imageID"].as_str().unwrap_or_default();
    assert!(image_id.contains("@sha256:"), "{image_id}");

    let pod_status = &got["status"];
    assert_eq!(pod_status["phase"], "Running");
    assert_eq!(pod_status["podIP"], HOST_IP);
    assert_eq!(pod_status["qosClass"], "Burstable");
    assert_eq!(
        condition(&got, "Ready").map(|c| &c["status"]),
        Some(&json!("True"))
    );
    collector.shutdown().await;
}

#[tokio::test]
async fn two_containers_with_ports_resources_and_a_redacted_secret() {
    let Some(node) = CriNode::new().await else {
        return;
    };
    let pod = node.run(web_pod(node.ns("shop"))).await;
    let collector = collector_for(&node).await;
    let reply = collector.ask(&pod.namespace, &pod.name).await;
    // containerd's verbose info holds the secret in clear: none of it may reach the answer.
    assert!(
        !reply.body.contains(SECRET),
        "the secret leaked: {}",
        reply.body
    );
    let got = reply.expect_pod();

    let api = &got["spec"]["containers"][0];
    assert_eq!(api["name"], "api");
    assert_eq!(
        api["resources"],
        json!({"requests": {"cpu": "250m"}, "limits": {"cpu": "500m", "memory": "128Mi"}})
    );
    assert_eq!(
        api["ports"],
        json!([
            {"name": "http", "containerPort": 8080, "protocol": "TCP"},
            {"name": "metrics", "containerPort": 9090, "protocol": "TCP"}
        ])
    );
    assert_eq!(
        api["env"],
        json!([{"name": "DB_HOST", "value": "<redacted>"}, {"name": "DB_PASSWORD", "value": "<redacted>"}])
    );
    assert_eq!(
        api["volumeMounts"],
        json!([
            {"name": "db-credentials", "mountPath": "/etc/db", "readOnly": true},
            {"name": "cache", "mountPath": "/cache"}
        ])
    );
    let shipper = &got["spec"]["containers"][1];
    assert_eq!(shipper["command"], json!(["sh", "-c"]));
    assert_eq!(shipper["args"], json!(["while true; do sleep 5; done"]));
    assert_eq!(
        got["spec"]["volumes"],
        json!([{"name": "cache", "emptyDir": {}}, {"name": "db-credentials", "secret": {}}])
    );
    let ip = got["status"]["podIP"].as_str().unwrap_or_default();
    assert!(ip.starts_with("198.51.100."), "CNI address: {ip}");
    assert_eq!(got["status"]["podIPs"], json!([{"ip": ip}]));
    assert_eq!(got["status"]["qosClass"], "Burstable");
    assert_eq!(
        got["metadata"]["annotations"]["prometheus.io/scrape"],
        "true"
    );
    collector.shutdown().await;
}

#[tokio::test]
async fn oom_kill_then_restart() {
    let Some(node) = CriNode::new().await else {
        return;
    };
    let pod = node
        .run(
            Pod::new(node.ns("batch"), "memhog").container(
                Container::new("hog")
                    .memory_limit(16 * MI)
                    .instance(Instance::OomKilled)
                    .instance(Instance::Running),
            ),
        )
        .await;
    let collector = collector_for(&node).await;
    let got = collector.pod(&pod.namespace, &pod.name).await;
    let st = status(&got, "hog");
    assert_eq!(st["restartCount"], 1);
    assert_eq!(st["lastState"]["terminated"]["reason"], "OOMKilled");
    assert_eq!(st["lastState"]["terminated"]["exitCode"], 137);
    assert!(st["state"]["running"].is_object(), "{st}");
    collector.shutdown().await;
}

#[tokio::test]
async fn completed_and_failed_jobs() {
    let Some(node) = CriNode::new().await else {
        return;
    };
    let message = "cannot reach db:5432: connection refused";
    let done = node
        .run(
            Pod::new(node.ns("jobs"), "report-x1")
                .container(Container::new("report").instance(Instance::Exit(0)))
                .finished(),
        )
        .await;
    let failed = node
        .run(
            Pod::new(node.ns("jobs"), "migrate-x2")
                .container(
                    Container::new("migrate")
                        .cpu(100, 100)
                        .memory_limit(64 * MI)
                        .instance(Instance::ExitWithMessage(1, message.into())),
                )
                .finished(),
        )
        .await;
    let collector = collector_for(&node).await;

    let got = collector.pod(&done.namespace, &done.name).await;
    assert_eq!(got["status"]["phase"], "Succeeded");
    let terminated = &status(&got, "report")["state"]["terminated"];
    assert_eq!(terminated["reason"], "Completed");
    assert_eq!(terminated["exitCode"], 0);

    let got = collector.pod(&failed.namespace, &failed.name).await;
    assert_eq!(got["status"]["phase"], "Failed");
    assert_eq!(got["status"]["qosClass"], "Guaranteed");
    // A stopped sandbox has no IP.
    assert!(got["status"].get("podIP").is_none(), "{}", got["status"]);
    let terminated = &status(&got, "migrate")["state"]["terminated"];
    assert_eq!(terminated["reason"], "Error");
    assert_eq!(terminated["exitCode"], 1);
    // The kubelet reads the termination-message file behind the mount; so does the collector.
    assert_eq!(terminated["message"], message);
    collector.shutdown().await;
}

#[tokio::test]
async fn never_started_and_failed_to_start() {
    let Some(node) = CriNode::new().await else {
        return;
    };
    let created = node
        .run(
            Pod::new(node.ns("default"), "stuck")
                .container(Container::new("app").instance(Instance::Created)),
        )
        .await;
    let broken = node
        .run(
            Pod::new(node.ns("default"), "broken-cmd")
                .container(Container::new("app").instance(Instance::CannotRun)),
        )
        .await;
    let collector = collector_for(&node).await;

    let got = collector.pod(&created.namespace, &created.name).await;
    assert_eq!(
        status(&got, "app")["state"],
        json!({"waiting": {"reason": "ContainerCreating"}})
    );
    assert_eq!(got["status"]["phase"], "Pending");

    let got = collector.pod(&broken.namespace, &broken.name).await;
    let terminated = &status(&got, "app")["state"]["terminated"];
    // containerd's own reason, its counterpart of cri-dockerd's ContainerCannotRun.
    assert_eq!(terminated["reason"], "StartError");
    assert_eq!(terminated["exitCode"], 128);
    let text = terminated["message"].as_str().unwrap_or_default();
    assert!(text.contains(support::kubelet::MISSING_COMMAND), "{text}");
    collector.shutdown().await;
}

#[tokio::test]
async fn the_same_name_in_two_namespaces_is_two_pods() {
    let Some(node) = CriNode::new().await else {
        return;
    };
    let spec = |ns: String| {
        Pod::new(ns, "twin").container(Container::new("app").instance(Instance::Running))
    };
    let a = node.run(spec(node.ns("team-a"))).await;
    let b = node.run(spec(node.ns("team-b"))).await;
    let collector = collector_for(&node).await;
    let got_a = collector.pod(&a.namespace, &a.name).await;
    let got_b = collector.pod(&b.namespace, &b.name).await;
    assert_eq!(got_a["metadata"]["uid"], a.uid.as_str());
    assert_eq!(got_b["metadata"]["uid"], b.uid.as_str());
    assert_ne!(got_a["metadata"]["uid"], got_b["metadata"]["uid"]);
    assert_eq!(
        status(&got_a, "app")["containerID"],
        containerd_id(a.current("app"))
    );
    collector
        .ask(&node.ns("team-c"), "twin")
        .await
        .expect_error(404);
    collector.shutdown().await;
}

#[tokio::test]
async fn node_wide_processors_on_containerd() {
    let Some(node) = CriNode::new().await else {
        return;
    };
    let pod = node.run(web_pod(node.ns("list"))).await;
    let collector = collector_for(&node).await;

    let list = collector
        .post_json_to(
            "/processor/podListCollector",
            &json!({"pod.namespace": pod.namespace}),
        )
        .await
        .expect_answer("collector.kubernetes.pod.list");
    let names: Vec<&str> = list
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["metadata"]["name"].as_str())
        .collect();
    assert_eq!(names, [pod.name.as_str()]);
    let detail = collector.pod(&pod.namespace, &pod.name).await;
    assert_eq!(list[0], detail, "the list entry is the detail answer");

    let info = collector
        .post_json_to("/processor/runtimeInfoCollector", &json!({}))
        .await
        .expect_answer("collector.kubernetes.runtime.info");
    assert_eq!(info["version"]["runtime_name"], "containerd");
    assert_eq!(
        info["status"]["conditions"].as_array().map(Vec::is_empty),
        Some(false)
    );

    let containers = collector
        .post_json_to("/processor/containerCollector", &json!({}))
        .await
        .expect_answer("collector.kubernetes.container.list");
    assert!(
        containers
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["id"] == pod.current("api")),
        "{containers}"
    );

    let text = collector
        .post_json_to("/processor/dockerInfoCollector", &json!({}))
        .await
        .expect_error(404);
    assert!(text.contains("containerd"), "{text}");

    let ready = collector.request("GET", "/readyz", None).await;
    assert_eq!(ready.status, 200, "{}", ready.body);
    assert_eq!(ready.json()["runtime"], "containerd");
    let metrics = collector.request("GET", "/metrics", None).await;
    let line = metrics
        .body
        .lines()
        .find(|line| line.starts_with("pod_detail_collector_runtime_info{"))
        .unwrap_or_default();
    assert!(
        line.contains(r#"runtime="containerd""#) && line.ends_with(" 1"),
        "{}",
        metrics.body
    );
    collector.shutdown().await;
}

/// Discovery on a node that runs containerd for Kubernetes and a Docker daemon beside it
/// (for builds, say): the pods are in containerd.
#[tokio::test]
async fn discovery_prefers_the_kubelets_containerd_over_a_docker_beside_it() {
    let Some(node) = CriNode::new().await else {
        return;
    };
    let docker = Node::new().await;
    let pod = node
        .run(
            Pod::new(node.ns("found"), "where")
                .container(Container::new("app").instance(Instance::Running)),
        )
        .await;
    let docker_socket = support::util::docker_host()
        .trim_start_matches("unix://")
        .to_string();
    let mut settings = settings_for(&docker);
    settings.kubelet_root = node.kubelet_root.clone();
    settings.runtime = RuntimeChoice::Discover(vec![
        (
            pod_detail_collector::runtime::Kind::CriDockerd,
            "/nonexistent/cri-dockerd.sock".into(),
        ),
        (
            pod_detail_collector::runtime::Kind::Cri,
            support::cri::socket_path(&node.endpoint),
        ),
        (
            pod_detail_collector::runtime::Kind::Docker,
            docker_socket.into(),
        ),
    ]);
    let collector = Collector::start_with(settings).await;
    let got = collector.pod(&pod.namespace, &pod.name).await;
    assert_eq!(
        status(&got, "app")["containerID"],
        containerd_id(pod.current("app"))
    );
    collector.shutdown().await;
}

/// The same pod on Docker and on containerd: the two Pods are equal field by field, except
/// for what the README lists as the runtimes' differences.
#[tokio::test]
async fn docker_and_containerd_give_the_same_pod() {
    let Some(cri_node) = CriNode::new().await else {
        return;
    };
    let docker_node = Node::new().await;
    let ns = cri_node.ns("parity");
    let on_cri: CriPod = cri_node.run(web_pod(ns.clone())).await;
    // A CNI plugin gives the pod its address on Docker too (containerd's own does over CRI).
    let on_docker = docker_node
        .run(web_pod(docker_node.ns("parity")).pod_ip("198.51.100.72/24"))
        .await;

    let cri_collector = collector_for(&cri_node).await;
    let docker_collector = Collector::start_with(settings_for(&docker_node)).await;
    let mut from_cri = cri_collector.pod(&on_cri.namespace, &on_cri.name).await;
    let mut from_docker = docker_collector
        .pod(&on_docker.namespace, &on_docker.name)
        .await;

    for pod in [&mut from_cri, &mut from_docker] {
        normalize(pod);
        // Something to compare: both containers with their env, mounts and states.
        assert_eq!(
            pod["spec"]["containers"].as_array().map(Vec::len),
            Some(2),
            "{pod}"
        );
        assert_eq!(
            pod["spec"]["containers"][0]["env"].as_array().map(Vec::len),
            Some(2)
        );
        assert_eq!(
            pod["status"]["containerStatuses"].as_array().map(Vec::len),
            Some(2)
        );
        assert!(pod["spec"]["volumes"].is_array(), "{pod}");
    }
    assert_eq!(
        from_docker, from_cri,
        "Docker and containerd disagree beyond the documented differences"
    );
    cri_collector.shutdown().await;
    docker_collector.shutdown().await;
}

/// The host-network static control-plane pod with 31 restarts, on both runtimes.
#[tokio::test]
async fn docker_and_containerd_give_the_same_control_plane_pod() {
    let Some(cri_node) = CriNode::new().await else {
        return;
    };
    let docker_node = Node::new().await;
    let on_cri = cri_node
        .run(control_plane_pod(cri_node.ns("kube-system")))
        .await;
    let on_docker = docker_node
        .run(control_plane_pod(docker_node.ns("kube-system")))
        .await;
    let cri_collector = collector_for(&cri_node).await;
    let docker_collector = Collector::start_with(settings_for(&docker_node)).await;
    let mut from_cri = cri_collector.pod(&on_cri.namespace, &on_cri.name).await;
    let mut from_docker = docker_collector
        .pod(&on_docker.namespace, &on_docker.name)
        .await;
    for pod in [&mut from_cri, &mut from_docker] {
        normalize(pod);
        assert_eq!(status(pod, "kube-scheduler")["restartCount"], 31, "{pod}");
        assert_eq!(
            status(pod, "kube-scheduler")["lastState"]["terminated"]["exitCode"],
            2
        );
    }
    assert_eq!(
        from_docker, from_cri,
        "Docker and containerd disagree beyond the documented differences"
    );
    cri_collector.shutdown().await;
    docker_collector.shutdown().await;
}

/// Takes away what differs between the runtimes by nature (README, "Docker versus CRI"):
/// identities (namespace suffix, UID, container and image IDs, times, the pod IP the test's
/// network hands out) and the image's spelling (containerd adds the registry).
fn normalize(pod: &mut Value) {
    let remove = |value: &mut Value, pointer: &str, key: &str| {
        if let Some(object) = value.pointer_mut(pointer).and_then(Value::as_object_mut) {
            object.remove(key);
        }
    };
    for key in ["namespace", "uid"] {
        remove(pod, "/metadata", key);
    }
    // When the kubelet first saw the pod, and a static pod's hash (its UID): each layout's own.
    remove(pod, "/metadata/annotations", "kubernetes.io/config.seen");
    remove(pod, "/metadata/annotations", "kubernetes.io/config.hash");
    for key in ["podIP", "podIPs", "startTime"] {
        remove(pod, "/status", key);
    }
    let containers = pod
        .pointer_mut("/spec/containers")
        .and_then(Value::as_array_mut);
    for container in containers.into_iter().flatten() {
        if let Some(image) = container.get_mut("image") {
            *image = json!(image_name(image));
        }
    }
    let statuses = pod
        .pointer_mut("/status/containerStatuses")
        .and_then(Value::as_array_mut);
    for st in statuses.into_iter().flatten() {
        for key in ["containerID", "imageID"] {
            if let Some(object) = st.as_object_mut() {
                object.remove(key);
            }
        }
        if let Some(image) = st.get_mut("image") {
            *image = json!(image_name(image));
        }
        if let Some(running) = st
            .pointer_mut("/state/running")
            .and_then(Value::as_object_mut)
        {
            running.remove("startedAt");
        }
        let last = st
            .pointer_mut("/lastState/terminated")
            .and_then(Value::as_object_mut);
        if let Some(last) = last {
            for key in ["containerID", "startedAt", "finishedAt"] {
                last.remove(key);
            }
        }
    }
}

/// `docker.io/pdc-test/app:1` and `pdc-test/app:1` are one image.
fn image_name(image: &Value) -> String {
    let name = image.as_str().unwrap_or_default();
    name.trim_start_matches("docker.io/").to_string()
}
