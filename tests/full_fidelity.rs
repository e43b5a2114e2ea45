//! Integration tests: the parts of a full-fidelity Pod that `pod_detail.rs` does not cover —
//! CNI addresses placed the way a CNI plugin places them, the node address found without
//! configuration, init containers still running, the kubelet's conditions, command/args/env
//! without the image's defaults, every volume kind (subPath too), and image labels kept out of
//! the pod's labels. Each pod is laid out on the real daemon like the kubelet does and asked for
//! over HTTP like the KubeDiag agent does.
//!
//! Needs a daemon (`DOCKER_HOST`) and the test images: run `scripts/test`. Without a daemon
//! these tests fail; they never skip. The CNI test needs root (`ip`, `nsenter`).

mod support;

use serde_json::{Value, json};
use support::checks::{all_conditions, assert_pod_identity, assert_running, assert_terminated};
use support::pod::{
    by_name, condition, container, docker_id, is_empty, map_of, names, status, string_map,
};
use support::service::settings_for;
use support::{Collector, Container, HOST_IP, Instance, Node, Pod, Volume, util};

/// `(type, status, reason, message)` of a condition; reason and message `None` when absent.
fn condition_of(pod: &Value, kind: &str) -> (String, String, Option<String>, Option<String>) {
    let c = condition(pod, kind).unwrap_or_else(|| {
        panic!(
            "status.conditions lacks {kind}: {}",
            pod["status"]["conditions"]
        )
    });
    let text = |v: &Value| v.as_str().map(str::to_string);
    (
        kind.to_string(),
        text(&c["status"]).unwrap_or_default(),
        text(&c["reason"]),
        text(&c["message"]),
    )
}

fn cond(
    kind: &str,
    status: &str,
    reason: Option<&str>,
    message: Option<&str>,
) -> (String, String, Option<String>, Option<String>) {
    (
        kind.to_string(),
        status.to_string(),
        reason.map(str::to_string),
        message.map(str::to_string),
    )
}

/// `(name, mountPath, readOnly)` of a container's volume mounts, sorted.
fn mounts_of(c: &Value) -> Vec<(String, String, bool)> {
    let mut mounts: Vec<(String, String, bool)> = c["volumeMounts"]
        .as_array()
        .unwrap_or_else(|| panic!("{}: no volumeMounts: {c}", c["name"]))
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap_or_default().to_string(),
                m["mountPath"].as_str().unwrap_or_default().to_string(),
                m["readOnly"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    mounts.sort();
    mounts
}

fn mount(name: &str, path: &str, read_only: bool) -> (String, String, bool) {
    (name.to_string(), path.to_string(), read_only)
}

/// The node's address as an operator would find it: the global IPv4 addresses of the
/// interface of the default route (`ip -4 route show default`, `ip -4 -o addr show dev <if>`).
/// Empty when there is no default route.
fn default_route_addresses() -> Vec<String> {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("ip")
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("run ip (iproute2): {e}"));
        assert!(out.status.success(), "ip {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let routes = run(&["-4", "route", "show", "default"]);
    let Some(first) = routes.lines().next() else {
        return Vec::new();
    };
    let words: Vec<&str> = first.split_whitespace().collect();
    let Some(dev) = words
        .iter()
        .position(|w| *w == "dev")
        .and_then(|i| words.get(i + 1))
    else {
        return Vec::new();
    };
    let addrs = run(&["-4", "-o", "addr", "show", "dev", dev, "scope", "global"]);
    addrs
        .lines()
        .filter_map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            let i = words.iter().position(|w| *w == "inet")?;
            Some(words.get(i + 1)?.split('/').next()?.to_string())
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// CNI addresses, placed the way a CNI plugin places them.
// ---------------------------------------------------------------------------------------------

/// A veth pair made in the host namespace, its peer moved into the sandbox's network namespace
/// (through the sandbox's pid), renamed `eth0` and given an IPv4 and (when the namespace allows
/// IPv6) an IPv6 address; the host end stays down in the host namespace.
#[tokio::test]
async fn cni_pod_ips_from_a_veth_moved_into_the_sandbox() {
    let node = Node::new().await;
    let collector = Collector::start(&node).await;
    let created = node
        .run(
            Pod::new(node.ns("default"), "api-6f7d8c9b5-q2w3e")
                .label("app", "api")
                .cni_veth("198.51.100.41/24", Some("2001:db8:0:41::7/64"))
                .container(Container::new("api").port("http", 8080)),
        )
        .await;

    // The fixture did what a CNI plugin does: the host end is in the host namespace, down.
    let host_end = created.host_veth.clone().expect("host end of the veth");
    let out = std::process::Command::new("ip")
        .args(["-o", "link", "show", &host_end])
        .output()
        .expect("ip link show");
    let link = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success() && link.contains("state DOWN"),
        "the host end {host_end} should be in the host namespace and down: {link}"
    );
    assert_eq!(created.cni_ips[0], "198.51.100.41");

    let pod = collector.pod(&created.namespace, &created.name).await;
    assert_pod_identity(&pod, &created);
    assert_eq!(pod["status"]["podIP"], "198.51.100.41", "podIP: IPv4 first");
    let expected: Vec<Value> = created.cni_ips.iter().map(|ip| json!({"ip": ip})).collect();
    assert_eq!(
        pod["status"]["podIPs"],
        Value::Array(expected),
        "podIPs: IPv4 then IPv6 (IPv6 only when the namespace took it: {:?})",
        created.cni_ips
    );
    if created.cni_ips.len() == 2 {
        assert_eq!(created.cni_ips[1], "2001:db8:0:41::7");
    }
    assert_eq!(pod["status"]["hostIP"], HOST_IP, "hostIP is the node's");
    assert_eq!(pod["status"]["phase"], "Running");
    collector.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// The node address without configuration.
// ---------------------------------------------------------------------------------------------

/// Without `HOST_IP`, `hostIP` is the address of the default route's interface, and a
/// host-network pod's `podIP` is that address too.
#[tokio::test]
async fn host_ip_defaults_to_the_default_route_interface() {
    let node = Node::new().await;
    let mut settings = settings_for(&node);
    settings.host_ip = None;
    let collector = Collector::start_with(settings).await;
    let expected = default_route_addresses();

    let host_net = node
        .run(
            Pod::new(node.ns("kube-system"), "kube-proxy-7xk2p")
                .host_network()
                .label("k8s-app", "kube-proxy")
                .container(Container::new("kube-proxy")),
        )
        .await;
    let isolated = node
        .run(Pod::new(node.ns("default"), "isolated").container(Container::new("app")))
        .await;

    let pod = collector.pod(&host_net.namespace, &host_net.name).await;
    let isolated_pod = collector.pod(&isolated.namespace, &isolated.name).await;
    if expected.is_empty() {
        // No default route on this machine: nothing to report, nothing invented.
        for p in [&pod, &isolated_pod] {
            assert!(is_empty(&p["status"]["hostIP"]), "{}", p["status"]);
        }
        assert!(is_empty(&pod["status"]["podIP"]), "{}", pod["status"]);
    } else {
        // The interface's address (any of them, should it have several).
        let host_ip = pod["status"]["hostIP"].as_str().unwrap_or_default();
        assert!(
            expected.iter().any(|ip| ip == host_ip),
            "hostIP {host_ip:?}: the default route's interface has {expected:?}"
        );
        for p in [&pod, &isolated_pod] {
            assert_eq!(
                p["status"]["hostIP"], host_ip,
                "hostIP of {}",
                p["metadata"]["name"]
            );
            assert_eq!(p["status"]["hostIPs"], json!([{"ip": host_ip}]), "hostIPs");
        }
        assert_eq!(pod["spec"]["hostNetwork"], true);
        assert_eq!(
            pod["status"]["podIP"], host_ip,
            "podIP of a host-network pod"
        );
        assert_eq!(pod["status"]["podIPs"], json!([{"ip": host_ip}]));
    }
    assert!(
        is_empty(&isolated_pod["status"]["podIP"]),
        "a sandbox without eth0 has no known pod IP: {}",
        isolated_pod["status"]
    );
    collector.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Init containers still running.
// ---------------------------------------------------------------------------------------------

fn initializing_pod(ns: String) -> Pod {
    Pod::new(ns, "db-client-5b6c7d8e9-r4t5y")
        .label("app", "db-client")
        .container(
            Container::new("wait-for-db")
                .container_type("init")
                .args(["sh", "-c", "sleep 3600"])
                .instance(Instance::Running),
        )
        .container(
            Container::new("client")
                .container_type("container")
                .instance(Instance::Created),
        )
}

/// The init container runs; the app container is created but waits for it: `PodInitializing`,
/// not initialized, not ready, with the kubelet's reasons and messages.
#[tokio::test]
async fn init_container_running_app_container_pod_initializing() {
    let node = Node::new().await;
    let collector = Collector::start(&node).await;
    let created = node.run(initializing_pod(node.ns("default"))).await;

    let pod = collector.pod(&created.namespace, &created.name).await;
    assert_eq!(pod["metadata"]["uid"], created.uid.as_str());
    assert_eq!(names(&pod["spec"]["initContainers"]), vec!["wait-for-db"]);
    assert_eq!(names(&pod["spec"]["containers"]), vec!["client"]);

    let init = by_name(&pod["status"]["initContainerStatuses"], "wait-for-db")
        .unwrap_or_else(|| panic!("initContainerStatuses: {}", pod["status"]));
    assert_eq!(
        init["containerID"],
        docker_id(created.current("wait-for-db"))
    );
    assert!(
        init["state"]["running"].is_object(),
        "the init container runs: {}",
        init["state"]
    );
    let client = status(&pod, "client");
    assert_eq!(
        client["state"],
        json!({"waiting": {"reason": "PodInitializing"}}),
        "an app container waiting for init containers"
    );
    assert_eq!(client["containerID"], docker_id(created.current("client")));
    assert_eq!(client["ready"], false);
    assert_eq!(client["started"], false);
    assert_eq!(client["restartCount"], 0);

    assert_eq!(
        condition_of(&pod, "Initialized"),
        cond(
            "Initialized",
            "False",
            Some("ContainersNotInitialized"),
            Some("containers with incomplete status: [wait-for-db]")
        )
    );
    for kind in ["Ready", "ContainersReady"] {
        assert_eq!(
            condition_of(&pod, kind),
            cond(
                kind,
                "False",
                Some("ContainersNotReady"),
                Some("containers with unready status: [client]")
            )
        );
    }
    assert_eq!(
        condition_of(&pod, "PodScheduled"),
        cond("PodScheduled", "True", None, None)
    );
    collector.shutdown().await;
}

/// SPEC §4: "no app container ever started → Pending". An init container is not an app
/// container, and the kubelet itself keeps a pod `Pending` until its init containers have
/// succeeded (`kubectl get` shows `Init:0/1`).
#[tokio::test]
async fn running_init_container_keeps_the_pod_pending() {
    let node = Node::new().await;
    let collector = Collector::start(&node).await;
    let created = node.run(initializing_pod(node.ns("default"))).await;
    let pod = collector.pod(&created.namespace, &created.name).await;
    assert_eq!(
        pod["status"]["phase"], "Pending",
        "no app container ever started (only an init container runs)"
    );
    collector.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Conditions.
// ---------------------------------------------------------------------------------------------

/// Init container done, every app container running, the sandbox up with its address: the
/// five conditions are True, with no reason or message.
#[tokio::test]
async fn conditions_of_a_fully_running_pod() {
    let node = Node::new().await;
    let collector = Collector::start(&node).await;
    let created = node
        .run(
            Pod::new(node.ns("default"), "web-8c9d7f6b5-m2n3b")
                .label("app", "web")
                .pod_ip("198.51.100.73/24")
                .container(
                    Container::new("migrate")
                        .container_type("init")
                        .instance(Instance::Exit(0)),
                )
                .container(Container::new("web").container_type("container"))
                .container(Container::new("sidecar").container_type("container")),
        )
        .await;

    let pod = collector.pod(&created.namespace, &created.name).await;
    assert_eq!(pod["status"]["phase"], "Running");
    let kinds = [
        "PodReadyToStartContainers",
        "Initialized",
        "Ready",
        "ContainersReady",
        "PodScheduled",
    ];
    for kind in kinds {
        assert_eq!(condition_of(&pod, kind), cond(kind, "True", None, None));
    }
    // One of each, in the kubelet's order.
    let types: Vec<String> = pod["status"]["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .map(|c| c["type"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(types, kinds, "conditions");
    for name in ["web", "sidecar"] {
        assert_running(&node, status(&pod, name), created.current(name), name).await;
    }
    collector.shutdown().await;
}

/// A completed job's pod is not ready because it completed: `Ready` and `ContainersReady`
/// False with reason `PodCompleted`; `Initialized` and `PodScheduled` stay True.
#[tokio::test]
async fn completed_job_is_not_ready_because_it_completed() {
    let node = Node::new().await;
    let collector = Collector::start(&node).await;
    let created = node
        .run(
            Pod::new(node.ns("jobs"), "report-29123460-k9j8h")
                .label("job-name", "report-29123460")
                .container(Container::new("report").instance(Instance::Exit(0)))
                .finished(),
        )
        .await;

    let pod = collector.pod(&created.namespace, &created.name).await;
    assert_eq!(pod["status"]["phase"], "Succeeded");
    for kind in ["Ready", "ContainersReady"] {
        let (_, status, reason, _) = condition_of(&pod, kind);
        assert_eq!(status, "False", "{kind}");
        assert_eq!(reason.as_deref(), Some("PodCompleted"), "{kind} reason");
    }
    for kind in ["Initialized", "PodScheduled"] {
        let (_, status, _, _) = condition_of(&pod, kind);
        assert_eq!(status, "True", "{kind}");
    }
    assert_terminated(
        &node,
        &status(&pod, "report")["state"]["terminated"],
        created.current("report"),
        0,
        "Completed",
        "report",
    )
    .await;
    collector.shutdown().await;
}

/// The kubelet's reasons for finished pods (`pkg/kubelet/status/generate.go`): a Failed pod's
/// `Ready`/`ContainersReady` say `PodFailed`, not `PodCompleted`; a Succeeded pod's
/// `Initialized` is True with reason `PodCompleted`.
#[tokio::test]
async fn finished_pods_carry_the_kubelets_terminal_reasons() {
    let node = Node::new().await;
    let collector = Collector::start(&node).await;
    let failed = node
        .run(
            Pod::new(node.ns("jobs"), "import-29123461-p0o9i")
                .container(Container::new("import").instance(Instance::Exit(3)))
                .finished(),
        )
        .await;
    let succeeded = node
        .run(
            Pod::new(node.ns("jobs"), "export-29123461-u7y6t")
                .container(Container::new("export").instance(Instance::Exit(0)))
                .finished(),
        )
        .await;

    // Every difference is collected first, so one run tells them all.
    let mut wrong = Vec::new();
    let pod = collector.pod(&failed.namespace, &failed.name).await;
    assert_eq!(pod["status"]["phase"], "Failed");
    for kind in ["Ready", "ContainersReady"] {
        let got = condition_of(&pod, kind);
        let want = cond(kind, "False", Some("PodFailed"), None);
        if got != want {
            wrong.push(format!(
                "Failed pod: {kind} is {got:?}, the kubelet's is {want:?}"
            ));
        }
    }
    let pod = collector.pod(&succeeded.namespace, &succeeded.name).await;
    assert_eq!(pod["status"]["phase"], "Succeeded");
    let got = condition_of(&pod, "Initialized");
    let want = cond("Initialized", "True", Some("PodCompleted"), None);
    if got != want {
        wrong.push(format!(
            "Succeeded pod: Initialized is {got:?}, the kubelet's is {want:?}"
        ));
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    collector.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Command, args and env without the image's defaults.
// ---------------------------------------------------------------------------------------------

/// The app image has `CMD ["sleep","86400"]`, `ENV PATH=…` and `ENV IMAGE_DEFAULT=from-image`.
/// Only what the pod spec set shows: args alone, command alone, or neither (Docker fills in the
/// image's CMD); the image's env entries are left out, the pod's are there, redacted.
#[tokio::test]
async fn command_args_and_env_without_the_images_defaults() {
    let node = Node::new().await;
    let collector = Collector::start(&node).await;
    let created = node
        .run(
            Pod::new(node.ns("default"), "cmd-args-env")
                .container(Container::new("args-only").args(["sh", "-c", "sleep 3600"]))
                .container(Container::new("command-only").command(["sleep", "3600"]))
                .container(
                    Container::new("image-defaults")
                        .env("LOG_LEVEL", "debug")
                        .env("IMAGE_DEFAULT", "from-pod"),
                ),
        )
        .await;

    // The fixture really let Docker fill in the image's defaults.
    let inspected = util::inspect(&node.docker, created.current("image-defaults")).await;
    let config = inspected.config.expect("config");
    assert_eq!(
        config.cmd,
        Some(vec!["sleep".to_string(), "86400".to_string()])
    );
    assert!(
        config
            .env
            .unwrap_or_default()
            .iter()
            .any(|e| e.starts_with("PATH=")),
        "Docker merges the image's PATH into the container's env"
    );

    let pod = collector.pod(&created.namespace, &created.name).await;

    let c = container(&pod, "args-only");
    assert_eq!(
        c["args"],
        json!(["sh", "-c", "sleep 3600"]),
        "args-only: args"
    );
    assert!(
        c.get("command").is_none(),
        "args-only: command absent, got {}",
        c["command"]
    );
    assert!(
        c.get("env").is_none(),
        "args-only: the image's env only, so no env: {}",
        c["env"]
    );

    let c = container(&pod, "command-only");
    assert_eq!(
        c["command"],
        json!(["sleep", "3600"]),
        "command-only: command"
    );
    assert!(
        c.get("args").is_none(),
        "command-only: args absent, got {}",
        c["args"]
    );

    let c = container(&pod, "image-defaults");
    assert!(
        c.get("command").is_none(),
        "image-defaults: command absent, got {}",
        c["command"]
    );
    assert!(
        c.get("args").is_none(),
        "image-defaults: the image's CMD is not the pod's args, got {}",
        c["args"]
    );
    let mut env_names = names(&c["env"]);
    env_names.sort();
    assert_eq!(
        env_names,
        vec!["IMAGE_DEFAULT", "LOG_LEVEL"],
        "the pod's env (IMAGE_DEFAULT overridden by the pod), without the image's PATH: {}",
        c["env"]
    );
    for var in c["env"].as_array().expect("env") {
        assert_eq!(var["value"], "<redacted>", "{var}");
    }
    assert!(
        !pod.to_string().contains("from-image"),
        "the image's own env value shows somewhere: {pod}"
    );
    for name in ["args-only", "command-only", "image-defaults"] {
        assert_running(&node, status(&pod, name), created.current(name), name).await;
    }
    collector.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Volumes.
// ---------------------------------------------------------------------------------------------

/// The name the collector gives a host path (no name reaches Docker outside static pods):
/// `hostpath-` and the path's parts joined by `-`.
fn host_path_volume_name(path: &str) -> String {
    let parts: Vec<String> = path
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|p| !p.is_empty())
        .map(str::to_ascii_lowercase)
        .collect();
    format!("hostpath-{}", parts.join("-"))
}

/// emptyDir, configMap, secret, projected, hostPath and subPath mounts, as the kubelet binds
/// them: each kubelet volume's kind told by its plugin directory, subPath mounts named after
/// their volume, and the termination-log and `/etc/hosts` binds left out.
#[tokio::test]
async fn volumes_of_every_kind_and_a_sub_path_mount() {
    let node = Node::new().await;
    let collector = Collector::start(&node).await;
    let data = node.host_dir().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let data_path = data.display().to_string();
    let host_volume = host_path_volume_name(&data_path);
    assert!(host_volume.len() <= 63, "{host_volume}");
    let created = node
        .run(
            Pod::new(node.ns("default"), "volumes-5d6f7g8h9-z1x2c")
                .volume(Volume::empty_dir("cache"))
                .volume(Volume::config_map("app-config"))
                .volume(Volume::secret("tls"))
                .volume(Volume::projected("kube-api-access-8x7zq"))
                .volume(Volume::host_path("data", &data))
                .container(
                    Container::new("app")
                        .mount("cache", "/cache", false)
                        .mount_sub_path("app-config", "/etc/app/app.yaml", "app.yaml", true)
                        .mount("tls", "/etc/tls", true)
                        .mount(
                            "kube-api-access-8x7zq",
                            "/var/run/secrets/kubernetes.io/serviceaccount",
                            true,
                        )
                        .mount("data", "/data", false),
                )
                .container(
                    Container::new("sidecar")
                        .mount("app-config", "/etc/config", true)
                        .mount_sub_path("cache", "/logs", "logs", false),
                ),
        )
        .await;

    // The fixture bound the kubelet's subPath directory, the termination log and /etc/hosts.
    let inspected = util::inspect(&node.docker, created.current("app")).await;
    let sources: Vec<String> = inspected
        .mounts
        .unwrap_or_default()
        .iter()
        .filter_map(|m| m.source.clone())
        .collect();
    let sub_path_source = node
        .kubelet_root
        .join(format!(
            "pods/{}/volume-subpaths/app-config/app/1",
            created.uid
        ))
        .display()
        .to_string();
    assert!(
        sources.contains(&sub_path_source),
        "subPath source {sub_path_source} among {sources:?}"
    );
    assert!(
        sources.iter().any(|s| s.ends_with("/etc-hosts")),
        "{sources:?}"
    );

    let pod = collector.pod(&created.namespace, &created.name).await;
    assert_pod_identity(&pod, &created);

    let app = container(&pod, "app");
    assert_eq!(
        mounts_of(app),
        vec![
            mount("app-config", "/etc/app/app.yaml", true),
            mount("cache", "/cache", false),
            mount(&host_volume, "/data", false),
            mount(
                "kube-api-access-8x7zq",
                "/var/run/secrets/kubernetes.io/serviceaccount",
                true
            ),
            mount("tls", "/etc/tls", true),
        ],
        "app volumeMounts: the subPath mount names its volume; no termination log, no /etc/hosts"
    );
    let sidecar = container(&pod, "sidecar");
    assert_eq!(
        mounts_of(sidecar),
        vec![
            mount("app-config", "/etc/config", true),
            mount("cache", "/logs", false),
        ],
        "sidecar volumeMounts"
    );
    for c in [app, sidecar] {
        for m in c["volumeMounts"].as_array().expect("mounts") {
            let path = m["mountPath"].as_str().unwrap_or_default();
            assert!(
                path != "/dev/termination-log" && path != "/etc/hosts",
                "kubelet plumbing shown as a volume mount: {m}"
            );
        }
    }

    let volumes = pod["spec"]["volumes"].as_array().expect("spec.volumes");
    let mut by_volume: Vec<(String, Value)> = volumes
        .iter()
        .map(|v| {
            (
                v["name"].as_str().unwrap_or_default().to_string(),
                v.clone(),
            )
        })
        .collect();
    by_volume.sort_by(|a, b| a.0.cmp(&b.0));
    let mut expected = vec![
        (
            "app-config".to_string(),
            json!({"name": "app-config", "configMap": {}}),
        ),
        (
            "cache".to_string(),
            json!({"name": "cache", "emptyDir": {}}),
        ),
        (
            host_volume.clone(),
            json!({"name": host_volume, "hostPath": {"path": data_path}}),
        ),
        (
            "kube-api-access-8x7zq".to_string(),
            json!({"name": "kube-api-access-8x7zq", "projected": {}}),
        ),
        ("tls".to_string(), json!({"name": "tls", "secret": {}})),
    ];
    expected.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        by_volume, expected,
        "spec.volumes: one per volume, its kind from the plugin directory, nothing for the \
         kubelet's plumbing"
    );
    collector.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Image labels merged into container labels.
// ---------------------------------------------------------------------------------------------

/// Docker merges the sandbox image's labels into the sandbox's labels. Those are not the pod's:
/// they are left out of `metadata.labels`, while the pod's own labels stay — also one whose
/// key the image has, with another value.
#[tokio::test]
async fn sandbox_image_labels_are_not_pod_labels() {
    let node = Node::new().await;
    let collector = Collector::start(&node).await;
    let image = util::labelled_image(
        &node.docker,
        &util::pause_image(),
        "pdc-test/pause-labelled:1",
        &[
            ("io.example.pause.build", "3.9-pdc"),
            ("maintainer", "pdc-test"),
            ("tier", "image-default"),
        ],
    )
    .await;
    let created = node
        .run(
            Pod::new(node.ns("default"), "frontend-7b8c9d-h5j6k")
                .sandbox_image(&image)
                .label("app", "frontend")
                .label("tier", "web")
                .container(Container::new("web")),
        )
        .await;

    // Docker did merge the image's labels into the sandbox's.
    let sandbox = util::inspect(&node.docker, &created.sandbox_id).await;
    let labels = sandbox
        .config
        .and_then(|c| c.labels)
        .expect("sandbox labels");
    assert_eq!(
        labels.get("io.example.pause.build").map(String::as_str),
        Some("3.9-pdc")
    );
    assert_eq!(
        labels.get("maintainer").map(String::as_str),
        Some("pdc-test")
    );
    assert_eq!(labels.get("tier").map(String::as_str), Some("web"));

    let pod = collector.pod(&created.namespace, &created.name).await;
    assert_eq!(
        string_map(&pod["metadata"]["labels"]),
        map_of(&[("app", "frontend"), ("tier", "web")]),
        "metadata.labels: the pod's own, not the sandbox image's"
    );
    let annotations = string_map(&pod["metadata"]["annotations"]);
    assert!(
        annotations.keys().all(|k| k.starts_with("kubernetes.io/")),
        "annotations: {annotations:?}"
    );
    all_conditions(&pod, "True");
    collector.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Several sandboxes, the old one still running.
// ---------------------------------------------------------------------------------------------

/// The kubelet made a new sandbox (attempt 1) while the old one still runs, each with its own
/// CNI address and labels: the newest sandbox alone says the pod's IP, labels and start time,
/// and the newest instance the container's state.
#[tokio::test]
async fn newest_of_two_running_sandboxes_wins() {
    let node = Node::new().await;
    let collector = Collector::start(&node).await;
    let ns = node.ns("default");
    let old = node
        .run(
            Pod::new(ns.clone(), "cache-1")
                .label("app", "cache")
                .label("revision", "1")
                .cni_veth("198.51.100.61/24", None)
                .container(Container::new("redis")),
        )
        .await;
    let new = node
        .run(
            Pod::new(ns.clone(), "cache-1")
                .uid(&old.uid)
                .label("app", "cache")
                .label("revision", "2")
                .sandbox_attempt(1)
                .cni_veth("198.51.100.62/24", None)
                .container(Container::new("redis").first_attempt(1)),
        )
        .await;

    let pod = collector.pod(&ns, "cache-1").await;
    assert_pod_identity(&pod, &new);
    assert_eq!(pod["status"]["podIP"], "198.51.100.62", "the new sandbox's");
    assert_eq!(pod["status"]["podIPs"], json!([{"ip": "198.51.100.62"}]));
    assert_eq!(
        string_map(&pod["metadata"]["labels"]),
        map_of(&[("app", "cache"), ("revision", "2")])
    );
    let (started, _) = util::state_times(&node.docker, &new.sandbox_id).await;
    support::pod::assert_same_second(&pod["status"]["startTime"], &started, "startTime");
    let st = status(&pod, "redis");
    assert_eq!(st["restartCount"], 1);
    assert_running(&node, st, new.current("redis"), "redis").await;
    assert!(
        is_empty(&st["lastState"]),
        "the old instance still runs: no terminated lastState, got {}",
        st["lastState"]
    );
    assert_eq!(names(&pod["spec"]["containers"]), vec!["redis"]);
    assert_eq!(pod["status"]["phase"], "Running");
    collector.shutdown().await;
}
