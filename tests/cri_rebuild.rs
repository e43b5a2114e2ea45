//! The CRI conversion and rebuild on recorded containerd answers (`tests/fixtures/cri/*.json`,
//! recorded by `tests/cri_layout.rs`): the service's own path from CRI answers to a Pod, with
//! no runtime. Also with the verbose `info` taken away, as CRI-O and cri-dockerd keep less:
//! what cannot then be told is left out, never guessed. Part of the fast tier.

mod support;

use std::path::PathBuf;

use pod_detail_collector::rebuild::{Context, rebuild};
use pod_detail_collector::record::{HostFacts, PodView};
use pod_detail_collector::runtime::cri::convert::{self, Answered};
use serde_json::{Value, json};
use support::cri::CriRecord;

fn context() -> Context {
    Context {
        node_name: "n1".to_string(),
        host_ip: Some("192.0.2.10".parse().expect("literal IP")),
        reveal_env: false,
        kubelet_root: PathBuf::from("/nonexistent/kubelet"),
    }
}

fn recorded(name: &str) -> CriRecord {
    let path = format!(
        "{}/tests/fixtures/cri/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{path}: {err}"));
    serde_json::from_str(&text).unwrap_or_else(|err| panic!("{path}: {err}"))
}

/// What the backend would have gathered for the pod: the verbose statuses and images.
fn answered(record: &CriRecord) -> Answered {
    Answered {
        runtime_name: record.version.runtime_name.clone(),
        sandboxes: record.pod_sandbox_status.values().cloned().collect(),
        containers: record.container_status.values().cloned().collect(),
        images: record
            .image_status
            .iter()
            .map(|(name, status)| (name.clone(), status.clone()))
            .collect(),
        sandbox_ids: record
            .list_containers
            .containers
            .iter()
            .map(|c| (c.id.clone(), c.pod_sandbox_id.clone()))
            .collect(),
    }
}

fn pod_of(answered: &Answered) -> Value {
    let record = convert::pod_record(answered);
    let view = PodView::new(&record).expect("the fixture holds a pod");
    let pod = rebuild(&view, &HostFacts::default(), &context());
    serde_json::to_value(pod).expect("a Pod serializes")
}

fn without_info(mut answered: Answered) -> Answered {
    for sandbox in &mut answered.sandboxes {
        sandbox.info.clear();
    }
    for container in &mut answered.containers {
        container.info.clear();
    }
    answered
}

fn status<'a>(pod: &'a Value, name: &str) -> &'a Value {
    pod["status"]["containerStatuses"]
        .as_array()
        .and_then(|list| list.iter().find(|s| s["name"] == name))
        .unwrap_or_else(|| panic!("no status of {name}: {pod}"))
}

#[test]
fn control_plane_pod_from_containerd() {
    let record = recorded("control-plane");
    let pod = pod_of(&answered(&record));
    assert_eq!(pod["metadata"]["name"], "kube-scheduler-cri-node");
    assert_eq!(
        pod["metadata"]["labels"],
        json!({"component": "kube-scheduler", "tier": "control-plane"})
    );
    assert_eq!(pod["spec"]["hostNetwork"], true);
    assert_eq!(pod["status"]["podIP"], "192.0.2.10");
    assert_eq!(pod["status"]["qosClass"], "Burstable");
    let container = &pod["spec"]["containers"][0];
    assert_eq!(container["command"][0], "kube-scheduler");
    assert_eq!(container["resources"], json!({"requests": {"cpu": "100m"}}));
    let st = status(&pod, "kube-scheduler");
    assert_eq!(st["restartCount"], 31);
    assert_eq!(st["lastState"]["terminated"]["exitCode"], 2);
    assert_eq!(st["lastState"]["terminated"]["reason"], "Error");
    let id = st["containerID"].as_str().unwrap_or_default();
    assert!(id.starts_with("containerd://"), "{id}");
    assert_eq!(st["image"], "docker.io/pdc-test/app:1");
    assert!(
        st["imageID"]
            .as_str()
            .is_some_and(|i| i.starts_with("docker.io/pdc-test/app@sha256:")),
        "{st}"
    );
}

#[test]
fn secrets_in_the_verbose_info_never_reach_the_pod() {
    let record = recorded("web");
    let raw = serde_json::to_string(&record).unwrap_or_default();
    assert!(
        raw.contains("s3cr3t-Pa55w0rd"),
        "the fixture holds the secret in clear"
    );
    let pod = pod_of(&answered(&record));
    let text = pod.to_string();
    assert!(!text.contains("s3cr3t-Pa55w0rd"), "{text}");
    let api = pod["spec"]["containers"]
        .as_array()
        .and_then(|list| list.iter().find(|c| c["name"] == "api"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        api["env"],
        json!([{"name": "DB_HOST", "value": "<redacted>"}, {"name": "DB_PASSWORD", "value": "<redacted>"}])
    );
    assert_eq!(
        api["resources"],
        json!({"requests": {"cpu": "250m"}, "limits": {"cpu": "500m", "memory": "128Mi"}})
    );
    let ip = pod["status"]["podIP"].as_str().unwrap_or_default();
    assert!(ip.starts_with("198.51.100."), "{ip}");
}

#[test]
fn runtime_reasons_are_kept() {
    let oom = pod_of(&answered(&recorded("oom")));
    assert_eq!(
        status(&oom, "hog")["lastState"]["terminated"]["reason"],
        "OOMKilled"
    );
    let broken = pod_of(&answered(&recorded("start-failed")));
    let terminated = &status(&broken, "app")["state"]["terminated"];
    assert_eq!(terminated["reason"], "StartError");
    assert_eq!(terminated["exitCode"], 128);
    let never = pod_of(&answered(&recorded("never-started")));
    assert_eq!(
        status(&never, "app")["state"]["waiting"]["reason"],
        "ContainerCreating"
    );
    assert_eq!(never["status"]["phase"], "Pending");
    let done = pod_of(&answered(&recorded("job-done")));
    assert_eq!(done["status"]["phase"], "Succeeded");
    let failed = pod_of(&answered(&recorded("job-failed")));
    assert_eq!(failed["status"]["phase"], "Failed");
    assert_eq!(failed["status"]["qosClass"], "Guaranteed");
}

/// CRI-O and cri-dockerd keep no `info.config`: command, args, env and the cgroup parent
/// cannot come from there. What the plain status fields hold still shows (state, resources,
/// mounts, IDs); the rest is left out, not guessed.
#[test]
fn without_verbose_info_only_what_the_status_holds_is_shown() {
    let web = pod_of(&without_info(answered(&recorded("web"))));
    let shipper = web["spec"]["containers"]
        .as_array()
        .and_then(|list| list.iter().find(|c| c["name"] == "log-shipper"))
        .cloned()
        .unwrap_or_default();
    assert!(shipper.get("command").is_none(), "{shipper}");
    assert!(shipper.get("args").is_none(), "{shipper}");
    assert!(shipper.get("env").is_none(), "{shipper}");
    assert_eq!(
        shipper["resources"],
        json!({"requests": {"cpu": "50m"}, "limits": {"memory": "32Mi"}})
    );
    assert!(status(&web, "api")["state"]["running"].is_object());
    assert!(
        web["status"]["podIP"]
            .as_str()
            .is_some_and(|ip| ip.starts_with("198.51.100."))
    );
    // The QoS class then comes from the OOM score the kubelet gave the containers.
    assert_eq!(web["status"]["qosClass"], "Burstable");

    let control_plane = pod_of(&without_info(answered(&recorded("control-plane"))));
    let st = status(&control_plane, "kube-scheduler");
    assert_eq!(st["restartCount"], 31);
    assert_eq!(control_plane["spec"]["hostNetwork"], true);
}
