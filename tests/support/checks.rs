//! Field-by-field checks of a rebuilt pod against what the fixtures created (SPEC §4).

use std::collections::BTreeMap;

use serde_json::Value;

use super::docker::Node;
use super::pod::{assert_same_second, condition, container, docker_id, names, status, string_map};
use super::scenario::CreatedPod;
use super::service::{HOST_IP, NODE_NAME};
use super::util;

/// The checks every rebuilt pod passes, whatever its state.
pub fn assert_pod_identity(pod: &Value, created: &CreatedPod) {
    let meta = &pod["metadata"];
    assert_eq!(meta["name"], created.name.as_str(), "metadata.name");
    assert_eq!(
        meta["namespace"],
        created.namespace.as_str(),
        "metadata.namespace"
    );
    assert_eq!(meta["uid"], created.uid.as_str(), "metadata.uid");
    // The kubelet's own pod labels from the pod spec only: no io.kubernetes.* keys.
    let expected_labels: BTreeMap<String, String> = created
        .pod
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    assert_eq!(
        string_map(&meta["labels"]),
        expected_labels,
        "metadata.labels"
    );
    let expected_annotations: BTreeMap<String, String> = created
        .annotations
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    assert_eq!(
        string_map(&meta["annotations"]),
        expected_annotations,
        "metadata.annotations"
    );
    assert!(
        meta.get("creationTimestamp").is_none_or(Value::is_null),
        "creationTimestamp is not in Docker and must be left out: {meta}"
    );
    let spec = &pod["spec"];
    assert_eq!(spec["nodeName"], NODE_NAME, "spec.nodeName");
    assert_eq!(
        spec["terminationGracePeriodSeconds"], created.pod.termination_grace_period,
        "spec.terminationGracePeriodSeconds"
    );
    let mut spec_names = names(&spec["containers"]);
    spec_names.sort();
    let mut want: Vec<String> = created.containers.iter().map(|(n, _)| n.clone()).collect();
    want.sort();
    assert_eq!(spec_names, want, "spec.containers names (no POD)");
    assert_eq!(pod["status"]["hostIP"], HOST_IP, "status.hostIP");
    assert_eq!(
        pod["status"]["qosClass"],
        created.pod.qos().as_str(),
        "status.qosClass"
    );
}

/// Checks `spec.containers[i].image` and `status.containerStatuses[i].image/imageID` for the
/// test app image (imported: no repo digest).
pub async fn assert_app_image(node: &Node, pod: &Value, name: &str) {
    let image = util::app_image();
    let id = util::image_id(&node.docker, &image).await;
    assert_eq!(
        container(pod, name)["image"],
        image.as_str(),
        "{name}: image"
    );
    let st = status(pod, name);
    assert_eq!(st["image"], image.as_str(), "{name}: status image");
    assert_eq!(
        st["imageID"],
        format!("docker://{id}"),
        "{name}: imageID (no repo digest)"
    );
}

pub async fn assert_running(node: &Node, st: &Value, id: &str, what: &str) {
    assert_eq!(st["containerID"], docker_id(id), "{what}: containerID");
    let running = &st["state"]["running"];
    assert!(
        running.is_object(),
        "{what}: state.running, got {}",
        st["state"]
    );
    let (started, _) = util::state_times(&node.docker, id).await;
    assert_same_second(
        &running["startedAt"],
        &started,
        &format!("{what} startedAt"),
    );
    assert_eq!(st["ready"], true, "{what}: ready");
    assert_eq!(st["started"], true, "{what}: started");
}

/// Checks a `terminated` state against the Docker container it came from.
pub async fn assert_terminated(
    node: &Node,
    term: &Value,
    id: &str,
    exit_code: i64,
    reason: &str,
    what: &str,
) {
    assert!(term.is_object(), "{what}: expected terminated, got {term}");
    assert_eq!(term["exitCode"], exit_code, "{what}: exitCode");
    assert_eq!(term["reason"], reason, "{what}: reason");
    assert_eq!(term["containerID"], docker_id(id), "{what}: containerID");
    let (started, finished) = util::state_times(&node.docker, id).await;
    assert_same_second(&term["startedAt"], &started, &format!("{what} startedAt"));
    assert_same_second(
        &term["finishedAt"],
        &finished,
        &format!("{what} finishedAt"),
    );
}

/// Checks the four pod conditions are there, with `ContainersReady` and `Ready` as expected.
pub fn all_conditions(pod: &Value, expected: &str) {
    for kind in ["Initialized", "ContainersReady", "Ready", "PodScheduled"] {
        let c = condition(pod, kind).unwrap_or_else(|| {
            panic!(
                "status.conditions lacks {kind}: {}",
                pod["status"]["conditions"]
            )
        });
        if kind == "ContainersReady" || kind == "Ready" {
            assert_eq!(c["status"], expected, "condition {kind}");
        }
    }
}
