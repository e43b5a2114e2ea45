//! The rebuild on recorded runtime output: `tests/fixtures/*.json` hold what `docker inspect`
//! and `docker image inspect` returned for kubelet-made pods (see `scripts/record-fixture`).

use std::path::PathBuf;

use pod_detail_collector::rebuild::{Context, PodRecord, REDACTED, rebuild};
use serde_json::{Value, json};

fn context() -> Context {
    Context {
        node_name: "n1".to_string(),
        host_ip: Some("10.0.2.15".parse().expect("literal IP")),
        reveal_env: false,
        kubelet_root: PathBuf::from("/tmp/rec-kubelet"),
    }
}

fn record(name: &str) -> PodRecord {
    let path = format!("{}/tests/fixtures/{name}.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{path}: {err}"));
    serde_json::from_str(&text).unwrap_or_else(|err| panic!("{path}: {err}"))
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
    assert!(rebuild(&PodRecord::default(), &context()).is_none());
}
