//! The event index (`--event-index`) under container churn: after every change to the pod's
//! containers (a new instance created, one killed, one removed, a new pod, a pod gone), the
//! very next answer of a collector that uses the index equals the answer of one that lists
//! containers, and shows the change. Requests keep running while the containers change.

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use bollard::models::{ContainerCreateBody, ContainerStateStatusEnum};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, KillContainerOptionsBuilder, RemoveContainerOptionsBuilder,
};
use serde_json::Value;
use support::service::settings_for;
use support::{Collector, Container, Node, Pod, pod, util};

const RESTART_COUNT: &str = "annotation.io.kubernetes.container.restartCount";

/// Creates the next instance of a container the way the kubelet restarts it: the labels of
/// the previous instance with the restart count raised, the next attempt in the name.
async fn restart(node: &Node, previous_id: &str, attempt: u32) -> String {
    let previous = util::inspect(&node.docker, previous_id).await;
    let config = previous.config.clone().unwrap_or_default();
    let mut labels: HashMap<String, String> = config.labels.clone().unwrap_or_default();
    labels.insert(RESTART_COUNT.to_string(), attempt.to_string());
    let old_name = previous.name.clone().unwrap_or_default();
    let base = old_name
        .trim_start_matches('/')
        .rsplit_once('_')
        .map(|(base, _)| base.to_string())
        .unwrap_or_default();
    let name = format!("{base}_{attempt}");
    let body = ContainerCreateBody {
        image: config.image.clone(),
        cmd: Some(vec!["sleep".into(), "86400".into()]),
        labels: Some(labels),
        host_config: previous.host_config.clone(),
        ..Default::default()
    };
    let options = CreateContainerOptionsBuilder::new().name(&name).build();
    let id = node
        .docker
        .create_container(Some(options), body)
        .await
        .unwrap_or_else(|e| panic!("create {name}: {e}"))
        .id;
    node.docker
        .start_container(&id, None)
        .await
        .unwrap_or_else(|e| panic!("start {name}: {e}"));
    id
}

async fn kill(node: &Node, id: &str) {
    let options = KillContainerOptionsBuilder::new().signal("KILL").build();
    node.docker
        .kill_container(id, Some(options))
        .await
        .unwrap_or_else(|e| panic!("kill {id}: {e}"));
    util::wait_status(
        &node.docker,
        id,
        &[ContainerStateStatusEnum::EXITED],
        std::time::Duration::from_secs(30),
    )
    .await;
}

async fn remove(node: &Node, id: &str) {
    let options = RemoveContainerOptionsBuilder::new().force(true).build();
    node.docker
        .remove_container(id, Some(options))
        .await
        .unwrap_or_else(|e| panic!("remove {id}: {e}"));
}

/// The answers of both collectors, which must be equal.
async fn both(indexed: &Collector, listed: &Collector, ns: &str, name: &str) -> Value {
    let from_index = indexed.pod(ns, name).await;
    let from_list = listed.pod(ns, name).await;
    assert_eq!(
        from_index, from_list,
        "the indexed answer differs from the listed one"
    );
    from_index
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_stale_answer_under_container_churn() {
    let node = Node::new().await;
    let ns = node.ns("churn");
    let created = node
        .run(Pod::new(ns.clone(), "web").container(Container::new("app")))
        .await;
    let indexed = Arc::new(
        Collector::start_with(pod_detail_collector::Settings {
            event_index: true,
            ..settings_for(&node)
        })
        .await,
    );
    let listed = Collector::start(&node).await;

    let first = both(&indexed, &listed, &ns, "web").await;
    assert_eq!(pod::status(&first, "app")["restartCount"], 0);

    // Requests keep coming while the containers change; none may fail.
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let background = {
        let (indexed, stop, answered, ns) =
            (indexed.clone(), stop.clone(), answered.clone(), ns.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let reply = indexed.ask(&ns, "web").await;
                assert_eq!(reply.status, 200, "{}", reply.body);
                answered.fetch_add(1, Ordering::Relaxed);
            }
        })
    };

    let mut instances = vec![created.current("app").to_string()];
    for attempt in 1..=6u32 {
        let current = instances.last().cloned().unwrap_or_default();
        // The container dies: its state comes from a live inspect.
        kill(&node, &current).await;
        let answer = both(&indexed, &listed, &ns, "web").await;
        let terminated = &pod::status(&answer, "app")["state"]["terminated"];
        assert_eq!(terminated["exitCode"], 137, "{answer}");

        // The kubelet starts the next instance: the index must know it at once.
        let next = restart(&node, &current, attempt).await;
        instances.push(next.clone());
        let answer = both(&indexed, &listed, &ns, "web").await;
        let status = pod::status(&answer, "app");
        assert_eq!(status["restartCount"], attempt, "{answer}");
        assert_eq!(status["containerID"], format!("docker://{next}"));
        assert_eq!(
            status["lastState"]["terminated"]["containerID"],
            format!("docker://{current}")
        );

        // The kubelet garbage-collects dead instances but the newest dead one.
        if instances.len() > 2 {
            let oldest = instances.remove(0);
            remove(&node, &oldest).await;
            let answer = both(&indexed, &listed, &ns, "web").await;
            assert!(!answer.to_string().contains(&oldest), "{answer}");
        }
    }

    // A pod made after the index was built is found at once, and a pod removed is gone.
    let second = node
        .run(Pod::new(ns.clone(), "late").container(Container::new("app")))
        .await;
    let late = both(&indexed, &listed, &ns, "late").await;
    assert_eq!(late["metadata"]["uid"], second.uid);
    for id in second
        .instances("app")
        .iter()
        .map(|i| i.id.clone())
        .chain([second.sandbox_id.clone()])
    {
        remove(&node, &id).await;
    }
    let gone = indexed.ask(&ns, "late").await;
    gone.expect_error(404);

    stop.store(true, Ordering::Relaxed);
    background.await.expect("background requests");
    assert!(answered.load(Ordering::Relaxed) > 0);
}
