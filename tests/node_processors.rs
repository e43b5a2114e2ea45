//! Integration tests of the node-wide processors on the real daemon, over HTTP like the KubeDiag
//! agent calls them:
//!
//! - `POST /processor/podListCollector` → `collector.kubernetes.pod.list`: every pod with a
//!   container on the node (or in `pod.namespace`), each exactly what the detail processor
//!   answers for it, and nothing built from containers the kubelet did not make;
//! - `POST /processor/containerCollector` → `collector.kubernetes.container.list`: the daemon's
//!   container list (running ones, or all with `container.all`);
//! - `POST /processor/dockerInfoCollector` → `collector.kubernetes.docker.info`: its `/info`;
//! - the processor contract (405 + `Allow`, JSON errors, body limit, any Content-Type, 404 for
//!   unknown processors) on every processor path.
//!
//! The daemon is shared with tests running in parallel: "exactly these pods" is checked in this
//! test's own namespaces, and the whole node's answers are checked to hold this test's objects.
//! Needs a daemon (`DOCKER_HOST`) and the test images: run `scripts/test`.

mod faults;
mod support;

use std::collections::{BTreeSet, HashMap};

use bollard::query_parameters::ListContainersOptions;
use pod_detail_collector::runtime::RuntimeChoice;
use serde_json::{Value, json};
use support::pod::{docker_id, status};
use support::service::{
    CONTAINER_LIST_KEY, CONTAINER_LIST_PATH, DOCKER_INFO_KEY, DOCKER_INFO_PATH, POD_LIST_KEY,
    POD_LIST_PATH, PROCESSORS, chunked, settings_for,
};
use support::{Collector, Container, Instance, NODE_NAME, Node, PROCESSOR_PATH, Pod, Volume, util};

const MI: i64 = 1024 * 1024;

/// `(namespace, name, uid)` of a rebuilt pod.
fn identity(pod: &Value) -> (String, String, String) {
    let text = |key: &str| {
        pod["metadata"][key]
            .as_str()
            .unwrap_or_else(|| panic!("pod without metadata.{key}: {pod}"))
            .to_string()
    };
    (text("namespace"), text("name"), text("uid"))
}

/// Asks the pod list processor; returns the pods.
async fn pod_list(collector: &Collector, body: &Value) -> Vec<Value> {
    let list = collector
        .post_json_to(POD_LIST_PATH, body)
        .await
        .expect_answer(POD_LIST_KEY);
    let pods = list
        .as_array()
        .unwrap_or_else(|| panic!("{POD_LIST_KEY} must hold an array: {list}"))
        .clone();
    for pod in &pods {
        assert_eq!(pod["apiVersion"], "v1", "apiVersion: {pod}");
        assert_eq!(pod["kind"], "Pod", "kind: {pod}");
        identity(pod);
    }
    pods
}

/// Asks the container list processor; returns the containers by ID.
async fn container_list(collector: &Collector, body: &Value) -> HashMap<String, Value> {
    let list = collector
        .post_json_to(CONTAINER_LIST_PATH, body)
        .await
        .expect_answer(CONTAINER_LIST_KEY);
    let entries = list
        .as_array()
        .unwrap_or_else(|| panic!("{CONTAINER_LIST_KEY} must hold an array: {list}"));
    let mut by_id = HashMap::new();
    for c in entries {
        let id = c["Id"]
            .as_str()
            .unwrap_or_else(|| panic!("container without Id: {c}"))
            .to_string();
        assert!(
            by_id.insert(id.clone(), c.clone()).is_none(),
            "container {id} listed twice"
        );
    }
    by_id
}

/// The daemon's own list, straight from its API (`docker ps [-a]`), by ID.
async fn daemon_list(node: &Node, all: bool, id: Option<&str>) -> HashMap<String, Value> {
    let filters = id.map(|id| HashMap::from([("id".to_string(), vec![id.to_string()])]));
    let list = node
        .docker
        .list_containers(Some(ListContainersOptions {
            all,
            filters,
            ..Default::default()
        }))
        .await
        .expect("list containers");
    list.into_iter()
        .map(|c| {
            let id = c.id.clone().expect("id");
            (id, serde_json::to_value(c).expect("summary as JSON"))
        })
        .collect()
}

fn ids(map: &HashMap<String, Value>) -> BTreeSet<String> {
    map.keys().cloned().collect()
}

/// A container summary without `Status` ("Up 3 seconds" changes by itself from one call to
/// the next), its `Mounts` in one order (the daemon lists them in map order, which changes
/// from one call to the next).
fn stable(summary: &Value) -> Value {
    let mut v = summary.clone();
    if let Some(o) = v.as_object_mut() {
        o.remove("Status");
        if let Some(Value::Array(mounts)) = o.get_mut("Mounts") {
            mounts.sort_by_key(|m| m["Destination"].as_str().unwrap_or_default().to_string());
        }
    }
    v
}

// ---------------------------------------------------------------------------------------------
// podListCollector
// ---------------------------------------------------------------------------------------------

/// Pods in two namespaces (restarted, finished, host-network with an init container, created
/// only, the same name in both namespaces) and containers the kubelet did not make (plain ones,
/// and one with only the two pod labels). The list holds exactly the pods, each as the detail
/// processor rebuilds it, narrowed or not.
#[tokio::test]
async fn pod_list_returns_every_pod_as_the_detail_processor_rebuilds_it() {
    let node = Node::new().await;
    let collector = Collector::start(&node).await;
    let (ns_a, ns_b) = (node.ns("team-a"), node.ns("team-b"));

    let web = node
        .run(
            Pod::new(ns_a.clone(), "web-6d5f8b7c9-k2l3m")
                .label("app", "web")
                .annotation("prometheus.io/scrape", "true")
                .volume(Volume::empty_dir("cache"))
                .container(
                    Container::new("web")
                        .cpu(100, 200)
                        .memory_limit(64 * MI)
                        .port("http", 8080)
                        .env("MODE", "production")
                        .mount("cache", "/cache", false)
                        .instance(Instance::Exit(1))
                        .instance(Instance::Running),
                )
                .container(
                    Container::new("log-shipper")
                        .command(["sh", "-c"])
                        .args(["while true; do sleep 5; done"]),
                ),
        )
        .await;
    let job = node
        .run(
            Pod::new(ns_a.clone(), "nightly-29123470-a1b2c")
                .label("job-name", "nightly-29123470")
                .container(Container::new("nightly").instance(Instance::Exit(0)))
                .finished(),
        )
        .await;
    let agent = node
        .run(
            Pod::new(ns_b.clone(), "node-agent-x9y8z")
                .host_network()
                .label("app", "node-agent")
                .container(
                    Container::new("setup")
                        .container_type("init")
                        .instance(Instance::Exit(0)),
                )
                .container(Container::new("agent").container_type("container")),
        )
        .await;
    // The same name as a pod of the other namespace: another pod.
    let waiting = node
        .run(
            Pod::new(ns_b.clone(), "web-6d5f8b7c9-k2l3m")
                .container(Container::new("web").instance(Instance::Created)),
        )
        .await;

    // Containers the kubelet did not make.
    let plain_running = node
        .run_plain("pdc-plain-running", &[("purpose", "pdc-test")], None)
        .await;
    let plain_exited = node
        .run_plain("pdc-plain-exited", &[("purpose", "pdc-test")], Some(3))
        .await;
    let impostor = node
        .run_plain(
            "pdc-impostor",
            &[
                ("io.kubernetes.pod.namespace", ns_a.as_str()),
                ("io.kubernetes.pod.name", "impostor"),
            ],
            None,
        )
        .await;
    let foreign = [&plain_running, &plain_exited, &impostor];

    let expected_a: BTreeSet<(String, String, String)> = [&web, &job]
        .iter()
        .map(|p| (p.namespace.clone(), p.name.clone(), p.uid.clone()))
        .collect();
    let expected_b: BTreeSet<(String, String, String)> = [&agent, &waiting]
        .iter()
        .map(|p| (p.namespace.clone(), p.name.clone(), p.uid.clone()))
        .collect();

    // Narrowed to one namespace: exactly that namespace's pods, each as the detail answers it.
    let mut details: HashMap<String, Value> = HashMap::new();
    for (ns, expected) in [(&ns_a, &expected_a), (&ns_b, &expected_b)] {
        let pods = pod_list(&collector, &json!({"pod.namespace": ns})).await;
        let got: BTreeSet<_> = pods.iter().map(identity).collect();
        assert_eq!(&got, expected, "pods of namespace {ns}");
        assert_eq!(pods.len(), expected.len(), "one entry per pod in {ns}");
        for pod in &pods {
            let (ns, name, uid) = identity(pod);
            let detail = collector.pod(&ns, &name).await;
            assert_eq!(
                pod, &detail,
                "the list's {ns}/{name} differs from the detail processor's"
            );
            details.insert(uid, detail);
        }
    }

    // The list rebuilt the pods in full, not as stubs.
    let web_pod = &details[&web.uid];
    let st = status(web_pod, "web");
    assert_eq!(st["restartCount"], 1, "web restartCount");
    assert_eq!(st["containerID"], docker_id(web.current("web")));
    assert_eq!(
        st["lastState"]["terminated"]["containerID"],
        docker_id(web.previous("web"))
    );
    assert_eq!(web_pod["metadata"]["labels"], json!({"app": "web"}));
    assert_eq!(web_pod["status"]["qosClass"], "Burstable");
    assert_eq!(details[&job.uid]["status"]["phase"], "Succeeded");
    assert_eq!(details[&agent.uid]["spec"]["hostNetwork"], true);
    assert_eq!(
        details[&agent.uid]["spec"]["initContainers"][0]["name"],
        "setup"
    );
    assert_eq!(details[&waiting.uid]["status"]["phase"], "Pending");

    // A container with only the two pod labels is not a pod.
    collector.ask(&ns_a, "impostor").await.expect_error(404);

    // The whole node, asked the way the agent does (its context keys, no namespace): this
    // test's pods are there as the detail answers them, and nothing built from the others.
    let all = pod_list(
        &collector,
        &json!({
            "node": NODE_NAME,
            "diagnosis.namespace": "default",
            "diagnosis.name": "node-pods",
            "diagnosis.uid": "00000000-0000-4000-8000-000000000002",
        }),
    )
    .await;
    let mut seen = BTreeSet::new();
    for pod in &all {
        let (ns, name, uid) = identity(pod);
        assert!(
            seen.insert((ns.clone(), name.clone())),
            "{ns}/{name} listed twice"
        );
        let text = pod.to_string();
        for id in foreign {
            assert!(
                !text.contains(id.as_str()),
                "{ns}/{name} was built from container {id}, which the kubelet did not make"
            );
        }
        if ns == ns_a || ns == ns_b {
            assert_eq!(
                Some(pod),
                details.get(&uid),
                "the whole node's {ns}/{name} differs from the detail processor's"
            );
        }
    }
    let mine: BTreeSet<_> = all
        .iter()
        .map(identity)
        .filter(|(ns, _, _)| *ns == ns_a || *ns == ns_b)
        .collect();
    let expected: BTreeSet<_> = expected_a.union(&expected_b).cloned().collect();
    assert_eq!(mine, expected, "this test's pods in the whole node's list");

    // A namespace without pods is an empty list, not an error.
    let empty = pod_list(&collector, &json!({"pod.namespace": node.ns("nobody")})).await;
    assert!(empty.is_empty(), "{empty:?}");
    collector.shutdown().await;
}

/// "One list call for the whole node": behind a recording proxy, the whole node's pod list
/// (and a namespace's) lists containers once, whatever the number of pods, then inspects.
#[tokio::test]
async fn pod_list_lists_containers_once_for_the_whole_node() {
    let node = Node::new().await;
    let proxy = faults::Proxy::start();
    let mut settings = settings_for(&node);
    settings.runtime = RuntimeChoice::Docker(proxy.docker_host());
    // The list path (the event index lists the node once, then none at all).
    settings.event_index = false;
    let collector = Collector::start_with(settings).await;
    let ns = node.ns("one-call");
    let mut created = Vec::new();
    for name in ["alpha", "beta", "gamma"] {
        created.push(
            node.run(
                Pod::new(ns.clone(), name)
                    .container(Container::new("app"))
                    .container(Container::new("helper")),
            )
            .await,
        );
    }

    for body in [json!({}), json!({"pod.namespace": ns})] {
        proxy.clear_log();
        let pods = pod_list(&collector, &body).await;
        let log = proxy.log();
        let lists: Vec<&faults::Logged> = log
            .iter()
            .filter(|l| l.method == "GET" && faults::api_path(&l.path) == "/containers/json")
            .collect();
        assert_eq!(
            lists.len(),
            1,
            "{body}: one container list call for {} pods, got {lists:?}",
            pods.len()
        );
        let inspected: BTreeSet<&str> = log
            .iter()
            .filter_map(|l| {
                faults::api_path(&l.path)
                    .strip_prefix("/containers/")?
                    .strip_suffix("/json")
            })
            .collect();
        for pod in &created {
            assert!(
                pods.iter().any(|p| identity(p).2 == pod.uid),
                "{body}: {} missing",
                pod.name
            );
            for id in [
                pod.sandbox_id.as_str(),
                pod.current("app"),
                pod.current("helper"),
            ] {
                assert!(inspected.contains(id), "{body}: {id} not inspected");
            }
        }
    }
    collector.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// containerCollector
// ---------------------------------------------------------------------------------------------

/// The running containers by default, every container with `container.all`, each entry as the
/// daemon's list API gives it.
#[tokio::test]
async fn container_list_is_the_daemons_list() {
    let node = Node::new().await;
    let collector = Collector::start(&node).await;
    let pod = node
        .run(
            Pod::new(node.ns("default"), "listed-pod")
                .label("app", "listed")
                .container(Container::new("app").port("http", 8080)),
        )
        .await;
    let running = node
        .run_plain("pdc-listed-running", &[("purpose", "pdc-test")], None)
        .await;
    let exited = node
        .run_plain("pdc-listed-exited", &[("purpose", "pdc-test")], Some(3))
        .await;
    let app = pod.current("app").to_string();
    let mine_running = [running.clone(), pod.sandbox_id.clone(), app.clone()];

    // Running ones by default. Other tests come and go meanwhile: what the daemon listed both
    // before and after the call must be in the answer.
    let before = daemon_list(&node, false, None).await;
    let listed = container_list(&collector, &json!({})).await;
    let after = daemon_list(&node, false, None).await;
    let stayed: BTreeSet<String> = ids(&before).intersection(&ids(&after)).cloned().collect();
    let missing: Vec<String> = stayed.difference(&ids(&listed)).cloned().collect();
    assert!(
        missing.is_empty(),
        "running containers the daemon listed before and after, missing: {missing:?}"
    );
    for (id, c) in &listed {
        let state = c["State"].as_str().unwrap_or_default();
        assert!(
            state == "running" || state == "paused",
            "{id} is {state}: only running containers by default"
        );
    }
    for id in &mine_running {
        assert!(listed.contains_key(id), "running container {id} not listed");
    }
    assert!(
        !listed.contains_key(&exited),
        "the exited container is listed without container.all"
    );
    // The same holds with "false" spelled out.
    let listed_false = container_list(&collector, &json!({"container.all": "false"})).await;
    assert!(!listed_false.contains_key(&exited));
    assert!(listed_false.contains_key(&running));

    // Each entry is the daemon's own.
    for id in mine_running.iter().chain([&exited]) {
        let daemon = daemon_list(&node, true, Some(id)).await;
        let want = daemon
            .get(id)
            .unwrap_or_else(|| panic!("the daemon does not list {id}"));
        let all = container_list(&collector, &json!({"container.all": "true"})).await;
        let got = all
            .get(id)
            .unwrap_or_else(|| panic!("{id} not listed with container.all"));
        assert_eq!(
            stable(got),
            stable(want),
            "{id}: the processor's entry differs from the daemon's list"
        );
        assert!(
            got["Status"].as_str().is_some_and(|s| !s.is_empty()),
            "{id}: Status {}",
            got["Status"]
        );
    }

    // And says what these containers are: names, image, command, state, labels, network mode.
    let all = container_list(&collector, &json!({"container.all": "true"})).await;
    let image = util::app_image();
    let image_id = util::image_id(&node.docker, &image).await;
    let c = &all[&running];
    assert_eq!(
        c["Names"],
        json!([format!("/pdc-listed-running-{}", node.suffix)])
    );
    assert_eq!(c["Image"], image.as_str());
    assert_eq!(c["ImageID"], image_id.as_str());
    assert_eq!(c["Command"], "sleep 86400", "the image's CMD");
    assert_eq!(c["State"], "running");
    assert_eq!(
        c["Labels"],
        json!({"purpose": "pdc-test", "org.opencontainers.image.vendor": "pdc-test"}),
        "its own label and the one Docker merged in from the image"
    );
    assert_eq!(c["HostConfig"]["NetworkMode"], "none");
    let c = &all[&exited];
    assert_eq!(c["State"], "exited");
    assert!(
        c["Status"]
            .as_str()
            .unwrap_or_default()
            .starts_with("Exited (3)"),
        "Status: {}",
        c["Status"]
    );
    assert_eq!(c["Command"], "sh -c 'exit 3'");
    let c = &all[&app];
    assert_eq!(
        c["HostConfig"]["NetworkMode"],
        format!("container:{}", pod.sandbox_id),
        "the kubelet's containers join the sandbox's network"
    );
    assert_eq!(c["Labels"]["io.kubernetes.pod.name"], "listed-pod");
    assert_eq!(c["Labels"]["io.kubernetes.container.name"], "app");
    assert_eq!(
        c["Labels"]["annotation.io.kubernetes.container.ports"],
        r#"[{"name":"http","containerPort":8080,"protocol":"TCP"}]"#
    );
    let mounts: Vec<&str> = c["Mounts"]
        .as_array()
        .expect("Mounts")
        .iter()
        .filter_map(|m| m["Destination"].as_str())
        .collect();
    assert!(
        mounts.contains(&"/dev/termination-log") && mounts.contains(&"/etc/hosts"),
        "Mounts: {mounts:?}"
    );
    let c = &all[&pod.sandbox_id];
    assert_eq!(c["Labels"]["app"], "listed");
    assert_eq!(c["Labels"]["io.kubernetes.docker.type"], "podsandbox");
    assert_eq!(c["HostConfig"]["NetworkMode"], "none");

    // container.all as a JSON boolean too; what the daemon had throughout is there.
    let before = daemon_list(&node, true, None).await;
    let listed_all = container_list(&collector, &json!({"container.all": true})).await;
    let after = daemon_list(&node, true, None).await;
    let stayed: BTreeSet<String> = ids(&before).intersection(&ids(&after)).cloned().collect();
    let missing: Vec<String> = stayed.difference(&ids(&listed_all)).cloned().collect();
    assert!(
        missing.is_empty(),
        "containers missing with container.all: {missing:?}"
    );
    assert!(listed_all.contains_key(&exited));
    collector.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// dockerInfoCollector
// ---------------------------------------------------------------------------------------------

/// Docker's `/info`, as `docker info` shows it.
#[tokio::test]
async fn docker_info_is_the_daemons() {
    let node = Node::new().await;
    let collector = Collector::start(&node).await;
    let info = collector
        .post_json_to(DOCKER_INFO_PATH, &json!({}))
        .await
        .expect_answer(DOCKER_INFO_KEY);
    assert!(
        info.is_object(),
        "{DOCKER_INFO_KEY} must hold an object: {info}"
    );

    let out = std::process::Command::new("docker")
        .args(["info", "--format", "{{json .}}"])
        .env("DOCKER_HOST", util::docker_host())
        .output()
        .expect("run the docker CLI");
    assert!(out.status.success(), "docker info: {out:?}");
    let cli: Value = serde_json::from_slice(&out.stdout).expect("docker info JSON");
    for key in [
        "ID",
        "Name",
        "ServerVersion",
        "Driver",
        "DockerRootDir",
        "OperatingSystem",
        "KernelVersion",
        "Architecture",
        "NCPU",
        "MemTotal",
        "CgroupDriver",
    ] {
        assert!(!cli[key].is_null(), "docker info has no {key}: {cli}");
        assert_eq!(info[key], cli[key], "{key}: processor vs docker info");
    }
    // Counts move with the other tests; they are there and plausible.
    for key in ["Containers", "Images"] {
        assert!(info[key].as_u64().is_some(), "{key}: {}", info[key]);
    }
    collector.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// The contract, on every processor.
// ---------------------------------------------------------------------------------------------

/// What a valid request to each processor is, for the pod `ns`/`name`.
fn valid_body(path: &str, ns: &str, name: &str) -> Value {
    match path {
        PROCESSOR_PATH => json!({"pod.namespace": ns, "pod.name": name}),
        POD_LIST_PATH => json!({"pod.namespace": ns}),
        CONTAINER_LIST_PATH => json!({"container.all": "true"}),
        _ => json!({}),
    }
}

#[tokio::test]
async fn every_processor_shares_the_contract() {
    let node = Node::new().await;
    let mut settings = settings_for(&node);
    settings.body_limit = 512;
    let collector = Collector::start_with(settings).await;
    let created = node
        .run(Pod::new(node.ns("default"), "contract").container(Container::new("app")))
        .await;
    let (ns, name) = (created.namespace.as_str(), created.name.as_str());

    for (path, key) in PROCESSORS {
        // Other methods: 405 with Allow: POST, as JSON.
        for method in ["GET", "PUT", "DELETE", "PATCH"] {
            let reply = collector.request(method, path, None).await;
            reply.expect_error(405);
            assert_eq!(
                reply.header("allow"),
                Some("POST"),
                "{method} {path}: Allow"
            );
        }

        // Bodies that are not a JSON object: 400, as JSON.
        for (what, body) in [
            ("empty body", b"".to_vec()),
            ("not JSON", b"pod.namespace=default".to_vec()),
            ("truncated JSON", br#"{"pod.namespace":"default","#.to_vec()),
            ("an array", br#"[{"pod.namespace":"default"}]"#.to_vec()),
            ("a string", br#""default""#.to_vec()),
            ("null", b"null".to_vec()),
            ("a number", b"42".to_vec()),
        ] {
            let reply = collector.request("POST", path, Some(body)).await;
            assert_eq!(reply.status, 400, "{path}, {what}: {}", reply.body);
            reply.expect_error(400);
        }

        // Over the limit: 413, with or without Content-Length.
        let mut big = valid_body(path, ns, name);
        big["padding"] = json!("p".repeat(4096));
        collector.post_json_to(path, &big).await.expect_error(413);
        let reply = collector
            .raw_http(
                &format!("POST {path} HTTP/1.1\r\nTransfer-Encoding: chunked"),
                &chunked(&serde_json::to_vec(&big).unwrap(), 256),
            )
            .await;
        assert_eq!(reply.status, 413, "{path}, chunked: {}", reply.body);
        reply.expect_error(413);

        // No Content-Type (the agent's way), or any: 200 with the one key.
        let body = valid_body(path, ns, name);
        let bytes = serde_json::to_vec(&body).unwrap();
        collector.post_json_to(path, &body).await.expect_answer(key);
        for ct in [
            "application/json",
            "text/plain",
            "application/x-www-form-urlencoded",
        ] {
            let reply = collector
                .request_with("POST", path, Some(bytes.clone()), &[("content-type", ct)])
                .await;
            assert_eq!(
                reply.status, 200,
                "{path}, Content-Type {ct}: {}",
                reply.body
            );
            reply.expect_answer(key);
        }
        // Chunked, no Content-Length.
        let reply = collector
            .raw_http(
                &format!("POST {path} HTTP/1.1\r\nTransfer-Encoding: chunked"),
                &chunked(&bytes, 7),
            )
            .await;
        reply.expect_answer(key);
        // The agent's context keys, some not strings, are ignored.
        let mut with_context = body.clone();
        for (k, v) in [
            ("node", json!(NODE_NAME)),
            ("diagnosis.name", json!("d1")),
            ("task.retries", json!(3)),
            ("task.labels", json!({"a": "b"})),
            ("extra", json!([1, 2])),
            ("nothing", Value::Null),
        ] {
            with_context[k] = v;
        }
        collector
            .post_json_to(path, &with_context)
            .await
            .expect_answer(key);
    }

    // Unknown processors and paths: 404 as JSON, whatever the method.
    for path in [
        "/processor/nope",
        "/processor/PodListCollector",
        "/processor/podListCollector/extra",
        "/processor/",
        "/processor",
        "/podListCollector",
    ] {
        for method in ["POST", "GET"] {
            let reply = collector.request(method, path, Some(b"{}".to_vec())).await;
            assert_eq!(reply.status, 404, "{method} {path}: {}", reply.body);
            reply.expect_error(404);
        }
    }
    collector.shutdown().await;
}

/// The node-wide processors' own keys are checked: `container.all` must be a yes/no, and
/// `pod.namespace` a namespace name.
#[tokio::test]
async fn node_processors_reject_bad_keys() {
    let node = Node::new().await;
    let collector = Collector::start(&node).await;
    for bad in [
        json!("maybe"),
        json!("yes please"),
        json!(5),
        json!([true]),
        json!({"all": true}),
    ] {
        let reply = collector
            .post_json_to(CONTAINER_LIST_PATH, &json!({"container.all": bad}))
            .await;
        assert_eq!(reply.status, 400, "container.all = {bad}: {}", reply.body);
        let text = reply.expect_error(400);
        assert!(
            text.contains("container.all"),
            "the error should name the key: {text}"
        );
    }
    for bad in [
        json!("Team-A"),
        json!("team_a"),
        json!("a.b"),
        json!("-a"),
        json!("x".repeat(64)),
        json!("a,io.kubernetes.pod.name=x"),
        json!(7),
        json!(["team-a"]),
    ] {
        let reply = collector
            .post_json_to(POD_LIST_PATH, &json!({"pod.namespace": bad}))
            .await;
        assert_eq!(reply.status, 400, "pod.namespace = {bad}: {}", reply.body);
        let text = reply.expect_error(400);
        assert!(
            text.contains("pod.namespace"),
            "the error should name the key: {text}"
        );
    }
    collector.shutdown().await;
}
