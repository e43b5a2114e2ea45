//! The rebuild on recorded runtime output: `tests/fixtures/*.json` hold what `docker inspect`
//! and `docker image inspect` returned for kubelet-made pods (see `scripts/record-fixture`).
//! Each is converted on load by the Docker backend, as the service does, then rebuilt.

use std::collections::HashMap;
use std::path::PathBuf;

use bollard::models::{ContainerInspectResponse, ImageInspect};
use k8s_openapi::api::core::v1::Pod;
use pod_detail_collector::rebuild::{Context, REDACTED};
use pod_detail_collector::record::{ContainerId, HostFacts, PodRecord, PodView, pack, unpack};
use pod_detail_collector::runtime::docker::convert::{self, Inspected};
use serde_json::{Value, json};

fn context() -> Context {
    Context {
        node_name: "n1".to_string(),
        host_ip: Some("10.0.2.15".parse().expect("literal IP")),
        reveal_env: false,
        kubelet_root: PathBuf::from("/tmp/rec-kubelet"),
    }
}

/// A recorded pod as Docker answered it, and what the node's files would add.
#[derive(Default)]
struct Recorded {
    containers: Vec<ContainerInspectResponse>,
    images: HashMap<String, ImageInspect>,
    host: HostFacts,
}

fn record(name: &str) -> Recorded {
    let path = format!("{}/tests/fixtures/{name}.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{path}: {err}"));
    let inspected: Inspected =
        serde_json::from_str(&text).unwrap_or_else(|err| panic!("{path}: {err}"));
    Recorded {
        containers: inspected.containers,
        images: inspected.images,
        host: HostFacts::default(),
    }
}

/// The service's own path: Docker's answers converted to the record, sorted, rebuilt.
fn rebuild(recorded: &Recorded, context: &Context) -> Option<Pod> {
    let record = convert::pod_record(&Inspected {
        containers: recorded.containers.clone(),
        images: recorded.images.clone(),
    });
    let view = PodView::new(&record)?;
    Some(pod_detail_collector::rebuild::rebuild(
        &view,
        &recorded.host,
        context,
    ))
}

fn rebuilt(name: &str, context: &Context) -> Value {
    let pod = rebuild(&record(name), context).expect("the fixture holds kubelet containers");
    serde_json::to_value(pod).expect("a Pod serializes")
}

/// The ID of the recorded container with this Docker name.
fn id_of(name: &str, docker_name: &str) -> String {
    record(name)
        .containers
        .iter()
        .find(|c| c.name.as_deref() == Some(docker_name))
        .and_then(|c| c.id.clone())
        .unwrap_or_else(|| panic!("{docker_name} is not in {name}"))
}

#[test]
fn control_plane_static_pod() {
    let pod = rebuilt("control-plane", &context());
    let uid = "64fc326d-1ad6-4807-a9df-c075aea9722a";
    assert_eq!(pod["apiVersion"], "v1");
    assert_eq!(pod["kind"], "Pod");
    assert_eq!(
        pod["metadata"],
        json!({
            "name": "kube-scheduler-n1",
            "namespace": "kube-system",
            "uid": uid,
            "labels": {"component": "kube-scheduler", "tier": "control-plane"},
            "annotations": {
                "kubernetes.io/config.hash": "dc675150aa3673437a278feada9047bb",
                "kubernetes.io/config.seen": "2026-11-20T10:37:33.814176150Z",
                "kubernetes.io/config.source": "file",
            },
        })
    );
    let spec = &pod["spec"];
    assert_eq!(spec["nodeName"], "n1");
    assert_eq!(spec["hostNetwork"], true);
    assert_eq!(spec["terminationGracePeriodSeconds"], 30);
    let container = &spec["containers"][0];
    assert_eq!(spec["containers"].as_array().map(Vec::len), Some(1));
    assert_eq!(container["name"], "kube-scheduler");
    assert_eq!(container["image"], "registry.local/app:1.0");
    assert_eq!(container["command"], json!(["sh"]));
    assert_eq!(
        container["args"],
        json!(["-c", "sleep 3600", "--leader-elect=true"])
    );
    assert_eq!(container["resources"], json!({"requests": {"cpu": "100m"}}));
    assert_eq!(container["terminationMessagePath"], "/dev/termination-log");
    assert_eq!(container["terminationMessagePolicy"], "File");
    // The image's own environment is not the pod's.
    assert!(container.get("env").is_none(), "{container}");

    let status = &pod["status"];
    assert_eq!(status["phase"], "Running");
    assert_eq!(status["qosClass"], "Burstable");
    assert_eq!(status["hostIP"], "10.0.2.15");
    assert_eq!(status["podIP"], "10.0.2.15");
    assert_eq!(status["podIPs"], json!([{"ip": "10.0.2.15"}]));
    assert!(status["startTime"].is_string());
    let current = &status["containerStatuses"][0];
    let instance_31 = id_of(
        "control-plane",
        &format!("/k8s_kube-scheduler_kube-scheduler-n1_kube-system_{uid}_31"),
    );
    let instance_30 = id_of(
        "control-plane",
        &format!("/k8s_kube-scheduler_kube-scheduler-n1_kube-system_{uid}_30"),
    );
    assert_eq!(current["name"], "kube-scheduler");
    assert_eq!(current["restartCount"], 31);
    assert_eq!(current["ready"], true);
    assert_eq!(current["started"], true);
    assert_eq!(current["containerID"], format!("docker://{instance_31}"));
    assert_eq!(current["image"], "registry.local/app:1.0");
    assert!(
        current["imageID"]
            .as_str()
            .is_some_and(|id| id.starts_with("docker://sha256:")),
        "{current}"
    );
    assert!(current["state"]["running"]["startedAt"].is_string());
    let last = &current["lastState"]["terminated"];
    assert_eq!(last["exitCode"], 2);
    assert_eq!(last["reason"], "Error");
    assert_eq!(last["containerID"], format!("docker://{instance_30}"));
    assert!(last["startedAt"].is_string() && last["finishedAt"].is_string());
}

#[test]
fn oom_killed_then_restarted_with_resources_ports_env_and_volumes() {
    let pod = rebuilt("web-oom", &context());
    assert_eq!(
        pod["metadata"]["labels"],
        json!({"app": "web", "pod-template-hash": "7d9f8"})
    );
    assert!(pod["spec"].get("hostNetwork").is_none());
    let containers = pod["spec"]["containers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let names: Vec<&str> = containers
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(names, ["sidecar", "web"]);

    let web = &containers[1];
    assert_eq!(web["command"], json!(["/bin/sh"]));
    assert_eq!(web["args"], json!(["-c", "sleep 3600"]));
    assert_eq!(
        web["resources"],
        json!({"requests": {"cpu": "250m"}, "limits": {"cpu": "500m", "memory": "128Mi"}})
    );
    assert_eq!(
        web["ports"],
        json!([{"name": "http", "containerPort": 8080, "protocol": "TCP"}])
    );
    assert_eq!(
        web["env"],
        json!([
            {"name": "DB_PASSWORD", "value": REDACTED},
            {"name": "LOG_LEVEL", "value": REDACTED},
        ])
    );
    assert_eq!(
        web["volumeMounts"],
        json!([
            {"name": "db-credentials", "mountPath": "/etc/db", "readOnly": true},
            {"name": "cache", "mountPath": "/cache"},
        ])
    );

    // The image's default command is not the pod's.
    let sidecar = &containers[0];
    assert!(sidecar.get("command").is_none(), "{sidecar}");
    assert_eq!(sidecar["resources"]["limits"]["memory"], "16Mi");

    let statuses = pod["status"]["containerStatuses"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let sidecar = &statuses[0];
    assert_eq!(sidecar["restartCount"], 1);
    assert!(sidecar["state"]["running"].is_object());
    assert_eq!(sidecar["lastState"]["terminated"]["reason"], "OOMKilled");
    assert_eq!(sidecar["lastState"]["terminated"]["exitCode"], 137);
    assert_eq!(statuses[1]["restartCount"], 0);
    assert!(statuses[1].get("lastState").is_none());
    assert_eq!(pod["status"]["phase"], "Running");
    assert_eq!(pod["status"]["qosClass"], "Burstable");
    // CNI pods' IPs are not in Docker, and no host IP stands in for them.
    assert!(pod["status"].get("podIP").is_none());
}

#[test]
fn env_values_are_shown_only_when_revealed() {
    let revealed = rebuilt(
        "web-oom",
        &Context {
            reveal_env: true,
            ..context()
        },
    );
    assert_eq!(
        revealed["spec"]["containers"][1]["env"][0],
        json!({"name": "DB_PASSWORD", "value": "hunter2"})
    );
}

#[test]
fn completed_and_failed_jobs() {
    let done = rebuilt("job-done-1", &context());
    assert_eq!(done["status"]["phase"], "Succeeded");
    assert_eq!(done["status"]["qosClass"], "BestEffort");
    let terminated = &done["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(terminated["reason"], "Completed");
    assert_eq!(terminated["exitCode"], 0);
    assert_eq!(done["status"]["containerStatuses"][0]["ready"], false);
    assert!(done["spec"]["containers"][0].get("resources").is_none());

    let failed = rebuilt("job-fail-1", &context());
    assert_eq!(failed["status"]["phase"], "Failed");
    let terminated = &failed["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(terminated["reason"], "Error");
    assert_eq!(terminated["exitCode"], 1);
}

#[test]
fn created_but_never_started() {
    let pod = rebuilt("never-started", &context());
    assert_eq!(pod["status"]["phase"], "Pending");
    let status = &pod["status"]["containerStatuses"][0];
    assert_eq!(
        status["state"],
        json!({"waiting": {"reason": "ContainerCreating"}})
    );
    assert_eq!(status["ready"], false);
    assert_eq!(status["started"], false);
}

#[test]
fn a_container_docker_could_not_start() {
    let pod = rebuilt("cannot-run", &context());
    let status = &pod["status"]["containerStatuses"][0];
    let terminated = &status["state"]["terminated"];
    assert_eq!(terminated["reason"], "ContainerCannotRun");
    assert_eq!(terminated["exitCode"], 127);
    assert!(
        terminated["message"]
            .as_str()
            .is_some_and(|m| m.contains("executable file not found")),
        "{terminated}"
    );
    assert_eq!(terminated["startedAt"], terminated["finishedAt"]);
    assert_eq!(status["lastState"]["terminated"]["exitCode"], 2);
}

#[test]
fn no_kubelet_container_is_no_pod() {
    assert!(rebuild(&Recorded::default(), &context()).is_none());
}

#[test]
fn restarted_sandbox_init_container_and_termination_message() {
    let mut record = record("restarted-sandbox-init");
    let uid = "5a1c2d3e-4f50-6172-8394-a5b6c7d8e9f0";
    let first_instance = id_of(
        "restarted-sandbox-init",
        &format!("/k8s_postgres_postgres-0_db_{uid}_0"),
    );
    record.host.termination_messages.insert(
        ContainerId {
            runtime: "docker".into(),
            id: first_instance.clone(),
        },
        "database crashed\n".to_string(),
    );
    record.host.pod_ips = vec![
        "10.244.1.5".parse().expect("literal"),
        "fd00::5".parse().expect("literal"),
    ];
    let pod = serde_json::to_value(rebuild(&record, &context()).expect("pod")).expect("json");

    // The newest sandbox (with a name-clash suffix) is the pod's; its start is the pod's.
    let sandbox = id_of(
        "restarted-sandbox-init",
        &format!("/k8s_POD_postgres-0_db_{uid}_1_0a1b2c3d"),
    );
    let sandbox_start = record
        .containers
        .iter()
        .find(|c| c.id.as_deref() == Some(sandbox.as_str()))
        .and_then(|c| c.state.as_ref()?.started_at.clone())
        .unwrap_or_default();
    let start_time = pod["status"]["startTime"].as_str().unwrap_or("-");
    // Both to the second, and both there: two missing times are not equal times.
    assert!(
        sandbox_start.get(..19).is_some(),
        "the fixture's sandbox has no start time: {sandbox_start:?}"
    );
    assert_eq!(sandbox_start.get(..19), start_time.get(..19));
    assert_eq!(pod["status"]["phase"], "Running");
    assert_eq!(pod["status"]["qosClass"], "Guaranteed");
    assert_eq!(pod["status"]["podIP"], "10.244.1.5");
    assert_eq!(
        pod["status"]["podIPs"],
        json!([{"ip": "10.244.1.5"}, {"ip": "fd00::5"}])
    );

    assert_eq!(pod["spec"]["initContainers"][0]["name"], "init-perms");
    assert_eq!(
        pod["spec"]["initContainers"][0]["args"],
        json!(["sh", "-c", "exit 0"])
    );
    assert_eq!(pod["spec"]["containers"].as_array().map(Vec::len), Some(1));
    let init = &pod["status"]["initContainerStatuses"][0];
    assert_eq!(init["state"]["terminated"]["reason"], "Completed");

    // The instance from the old sandbox is the last state, with what it wrote before dying.
    let postgres = &pod["status"]["containerStatuses"][0];
    assert_eq!(postgres["restartCount"], 1);
    let last = &postgres["lastState"]["terminated"];
    assert_eq!(last["exitCode"], 3);
    assert_eq!(last["containerID"], format!("docker://{first_instance}"));
    assert_eq!(last["message"], "database crashed\n");

    let conditions = &pod["status"]["conditions"];
    assert_eq!(
        conditions,
        &json!([
            {"type": "PodReadyToStartContainers", "status": "True"},
            {"type": "Initialized", "status": "True"},
            {"type": "Ready", "status": "True"},
            {"type": "ContainersReady", "status": "True"},
            {"type": "PodScheduled", "status": "True"},
        ])
    );
}

#[test]
fn unready_and_finished_pods_say_why() {
    let pending = rebuilt("never-started", &context());
    let conditions = &pending["status"]["conditions"];
    assert_eq!(conditions[2]["type"], "Ready");
    assert_eq!(conditions[2]["status"], "False");
    assert_eq!(conditions[2]["reason"], "ContainersNotReady");
    assert_eq!(
        conditions[2]["message"],
        "containers with unready status: [main]"
    );

    let done = rebuilt("job-done-1", &context());
    assert_eq!(done["status"]["conditions"][3]["reason"], "PodCompleted");
    // The finished pod's sandbox is stopped: a new one would be needed.
    assert_eq!(
        done["status"]["conditions"][0],
        json!({"type": "PodReadyToStartContainers", "status": "False"})
    );
}

#[test]
fn static_pod_spec_comes_from_its_manifest_with_the_runtime_on_top() {
    let mut record = record("control-plane");
    let manifest: k8s_openapi::api::core::v1::Pod = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "kube-scheduler", "namespace": "kube-system"},
        "spec": {
            "priorityClassName": "system-node-critical",
            "restartPolicy": "Always",
            "hostNetwork": true,
            "containers": [{
                "name": "kube-scheduler",
                "image": "registry.k8s.io/kube-scheduler:v1.29.4",
                "command": ["kube-scheduler", "--leader-elect=true"],
                "env": [{"name": "GOMAXPROCS", "value": "2"}],
                "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
                "livenessProbe": {"httpGet": {"path": "/healthz", "port": 10259, "scheme": "HTTPS"}},
                "volumeMounts": [{"name": "kubeconfig", "mountPath": "/etc/kubernetes/scheduler.conf", "readOnly": true}],
            }],
            "volumes": [{"name": "kubeconfig", "hostPath": {"path": "/tmp/rec-etc/scheduler.conf", "type": "FileOrCreate"}}],
        },
    }))
    .expect("manifest");
    record.host.manifest = Some(manifest);
    let pod = serde_json::to_value(rebuild(&record, &context()).expect("pod")).expect("json");
    let spec = &pod["spec"];
    assert_eq!(spec["priorityClassName"], "system-node-critical");
    assert_eq!(spec["restartPolicy"], "Always");
    let container = &spec["containers"][0];
    // What runs wins over what was asked for.
    assert_eq!(container["image"], "registry.local/app:1.0");
    assert_eq!(container["command"], json!(["sh"]));
    assert_eq!(
        container["resources"]["requests"],
        json!({"cpu": "100m", "memory": "64Mi"})
    );
    assert!(container["livenessProbe"].is_object());
    // The manifest's values are secret-worthy too.
    assert_eq!(
        container["env"],
        json!([{"name": "GOMAXPROCS", "value": REDACTED}])
    );
    // The host path keeps the manifest's name and type, not a made-up one.
    assert_eq!(
        spec["volumes"],
        json!([{"name": "kubeconfig", "hostPath": {"path": "/tmp/rec-etc/scheduler.conf", "type": "FileOrCreate"}}])
    );
    assert_eq!(
        container["volumeMounts"],
        json!([{"name": "kubeconfig", "mountPath": "/etc/kubernetes/scheduler.conf", "readOnly": true}])
    );
    assert_eq!(pod["status"]["containerStatuses"][0]["restartCount"], 31);
}

#[test]
fn image_labels_are_not_pod_labels() {
    let mut record = record("web-oom");
    for image in record.images.values_mut() {
        if let Some(config) = image.config.as_mut() {
            config
                .labels
                .get_or_insert_with(Default::default)
                .insert("app".to_string(), "web".to_string());
        }
    }
    let pod = serde_json::to_value(rebuild(&record, &context()).expect("pod")).expect("json");
    assert_eq!(
        pod["metadata"]["labels"],
        json!({"pod-template-hash": "7d9f8"})
    );
}

#[test]
fn containers_whose_sandbox_is_gone_still_make_the_pod() {
    let mut record = record("web-oom");
    record.containers.retain(|c| {
        c.config
            .as_ref()
            .and_then(|config| config.labels.as_ref())
            .and_then(|labels| labels.get("io.kubernetes.docker.type"))
            .map(String::as_str)
            != Some("podsandbox")
    });
    let pod = serde_json::to_value(rebuild(&record, &context()).expect("pod")).expect("json");
    assert_eq!(pod["metadata"]["name"], "web-7d9f8");
    assert_eq!(
        pod["metadata"]["uid"],
        "0b5c7a1e-3f1d-4c55-9a3e-7d2b6c1f0a42"
    );
    // Pod labels live on the sandbox only.
    assert!(pod["metadata"].get("labels").is_none());
    assert_eq!(
        pod["status"]["containerStatuses"].as_array().map(Vec::len),
        Some(2)
    );
    assert!(pod["status"].get("startTime").is_none());
}

#[test]
fn pulled_images_are_named_by_tag_and_digest() {
    let mut record = record("control-plane");
    for image in record.images.values_mut() {
        image.repo_tags = Some(vec!["registry.k8s.io/kube-scheduler:v1.29.4".to_string()]);
        image.repo_digests = Some(vec![
            "registry.k8s.io/kube-scheduler@sha256:d9156baf649cd356bad6be119a62cf137b73956957604275ab8e3008bee96c8f".to_string(),
        ]);
    }
    let pod = serde_json::to_value(rebuild(&record, &context()).expect("pod")).expect("json");
    let status = &pod["status"]["containerStatuses"][0];
    assert_eq!(status["image"], "registry.k8s.io/kube-scheduler:v1.29.4");
    assert_eq!(
        status["imageID"],
        "docker-pullable://registry.k8s.io/kube-scheduler@sha256:d9156baf649cd356bad6be119a62cf137b73956957604275ab8e3008bee96c8f"
    );
    assert_eq!(
        pod["spec"]["containers"][0]["image"],
        "registry.k8s.io/kube-scheduler:v1.29.4"
    );

    // An untagged image: its ID stands in for the name.
    for image in record.images.values_mut() {
        image.repo_tags = Some(vec!["<none>:<none>".to_string()]);
        image.repo_digests = None;
    }
    let pod = serde_json::to_value(rebuild(&record, &context()).expect("pod")).expect("json");
    let status = &pod["status"]["containerStatuses"][0];
    let image_id = status["imageID"].as_str().unwrap_or_default();
    assert_eq!(
        format!("docker://{}", status["image"].as_str().unwrap_or("-")),
        image_id
    );
}

/// The caches of exited containers keep each one packed: every recorded instance and sandbox
/// reads back exactly, each from at most half its JSON, all from at most two fifths of theirs.
#[test]
fn packed_records_read_back_exactly_from_a_fraction_of_their_json() {
    let (mut packed_bytes, mut json_bytes) = (0, 0);
    for name in [
        "control-plane",
        "web-oom",
        "job-done-1",
        "job-fail-1",
        "restarted-sandbox-init",
    ] {
        let recorded = record(name);
        let record = convert::pod_record(&Inspected {
            containers: recorded.containers,
            images: recorded.images,
        });
        let singles = record
            .sandboxes
            .iter()
            .map(|sandbox| PodRecord {
                sandboxes: vec![sandbox.clone()],
                containers: Vec::new(),
            })
            .chain(record.containers.iter().map(|instance| PodRecord {
                sandboxes: Vec::new(),
                containers: vec![instance.clone()],
            }));
        for single in singles {
            let json = serde_json::to_vec(&single).expect("a record serializes");
            let packed = pack(&single).expect("a record packs");
            assert!(
                packed.len() * 2 <= json.len(),
                "{name}: {} bytes packed from {} of JSON",
                packed.len(),
                json.len()
            );
            packed_bytes += packed.len();
            json_bytes += json.len();
            let back = unpack(&packed).expect("a packed record reads back");
            assert_eq!(
                serde_json::to_vec(&back).expect("serializes"),
                json,
                "{name}"
            );
        }
    }
    assert!(
        packed_bytes * 5 <= json_bytes * 2,
        "{packed_bytes} bytes packed from {json_bytes} of JSON"
    );
}
