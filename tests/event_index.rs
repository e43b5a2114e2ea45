//! The event index (`--event-index`, on by default) under container churn: after every change
//! to the pod's containers (a new instance created, one killed, one started again, one
//! removed, a new pod, a pod gone), the very next answer of a collector that uses the index
//! equals the answer of one that lists containers, and shows the change. Requests keep running
//! while the containers change. The same holds against a daemon whose clock is minutes ahead
//! or behind (a proxy that skews every time Docker answers), with every answer served by the
//! index after its first seconds; exited containers are not inspected again once cached, and
//! a cached one that is removed is never served.

mod faults;
mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use bollard::models::{ContainerCreateBody, ContainerStateStatusEnum};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, KillContainerOptionsBuilder, RemoveContainerOptionsBuilder,
};
use faults::{Mode, Proxy, metric};
use pod_detail_collector::runtime::RuntimeChoice;
use serde_json::Value;
use support::service::{POD_LIST_KEY, POD_LIST_PATH, settings_for};
use support::{Collector, Container, CreatedPod, Node, Pod, pod, util};

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

async fn start(node: &Node, id: &str) {
    node.docker
        .start_container(id, None)
        .await
        .unwrap_or_else(|e| panic!("start {id}: {e}"));
    util::wait_status(
        &node.docker,
        id,
        &[ContainerStateStatusEnum::RUNNING],
        std::time::Duration::from_secs(30),
    )
    .await;
}

/// The collector's counters of lookups served by the index, and of fallbacks to a list.
async fn lookups(collector: &Collector) -> (f64, f64) {
    let text = collector.request("GET", "/metrics", None).await.body;
    let indexed = metric(
        &text,
        "pod_detail_collector_docker_lookups_total",
        &[("source", "event_index")],
    )
    .unwrap_or(0.0);
    let fallbacks = metric(
        &text,
        "pod_detail_collector_event_index_fallbacks_total",
        &[],
    )
    .unwrap_or(0.0);
    (indexed, fallbacks)
}

/// Asks until answers come from the index, caught up with the daemon's events (its clock is
/// read in the first seconds; until then the list answers).
async fn until_indexed(collector: &Collector, ns: &str, name: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut streak = 0;
    while streak < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "the index did not answer within 30s: {:?}",
            lookups(collector).await
        );
        let before = lookups(collector).await;
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
        collector.pod(ns, name).await;
        let after = lookups(collector).await;
        let served = after.0 > before.0 && after.1 == before.1;
        streak = if served { streak + 1 } else { 0 };
    }
}

/// The IDs of the containers the collector behind `proxy` inspected.
fn inspected(proxy: &Proxy) -> Vec<String> {
    proxy
        .log()
        .iter()
        .filter_map(|call| {
            call.path
                .strip_prefix("/containers/")?
                .strip_suffix("/json")
                .map(str::to_string)
        })
        .collect()
}

/// Kills, restarts, starts again and removes instances of `web`'s `app`, asking both
/// collectors after each change.
async fn churn(
    node: &Node,
    indexed: &Collector,
    indexed_proxy: &Proxy,
    listed: &Collector,
    ns: &str,
    created: &CreatedPod,
) {
    let mut instances = vec![created.current("app").to_string()];
    for attempt in 1..=3u32 {
        let current = instances.last().cloned().unwrap_or_default();
        kill(node, &current).await;
        let answer = both(indexed, listed, ns, "web").await;
        let terminated = &pod::status(&answer, "app")["state"]["terminated"];
        assert_eq!(terminated["exitCode"], 137, "{answer}");
        // Asked again, the exited instance is not inspected again: its record is cached.
        indexed_proxy.clear_log();
        assert_eq!(both(indexed, listed, ns, "web").await, answer);
        let live = inspected(indexed_proxy);
        assert!(
            !live.contains(&current),
            "the exited {current} was inspected again: {live:?}; lookups {:?}; {:?}",
            lookups(indexed).await,
            indexed_proxy.log()
        );
        assert!(live.contains(&created.sandbox_id), "{live:?}");

        let next = restart(node, &current, attempt).await;
        instances.push(next.clone());
        let answer = both(indexed, listed, ns, "web").await;
        let status = pod::status(&answer, "app");
        assert_eq!(status["restartCount"], attempt, "{answer}");
        assert_eq!(
            status["lastState"]["terminated"]["containerID"],
            format!("docker://{current}")
        );

        if instances.len() > 2 {
            // The oldest instance was cached as exited; removed, it is never served.
            let oldest = instances.remove(0);
            remove(node, &oldest).await;
            let answer = both(indexed, listed, ns, "web").await;
            assert!(!answer.to_string().contains(&oldest), "{answer}");
        }
    }
    // Docker (not the kubelet) starts the exited previous instance again: its cached record
    // goes with the `start` event.
    let previous = instances[0].clone();
    start(node, &previous).await;
    both(indexed, listed, ns, "web").await;
    kill(node, &previous).await;
    both(indexed, listed, ns, "web").await;

    // The namespace's pod list (index: every member in scope, cached or live) too.
    let body = serde_json::json!({"pod.namespace": ns});
    let from_index = indexed.post_json_to(POD_LIST_PATH, &body).await;
    let from_list = listed.post_json_to(POD_LIST_PATH, &body).await;
    assert_eq!(from_index.status, 200, "{}", from_index.body);
    assert_eq!(
        from_index.expect_answer(POD_LIST_KEY),
        from_list.expect_answer(POD_LIST_KEY),
        "the indexed pod list differs from the listed one"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_stale_answer_from_a_daemon_whose_clock_is_minutes_off() {
    let node = Node::new().await;
    let minutes = |m: i64, ms: i64| (m * 60_000 + ms) * 1_000_000;
    for (label, skew) in [("ahead", minutes(7, 370)), ("behind", -minutes(5, 810))] {
        let ns = node.ns(&format!("skew-{label}"));
        let created = node
            .run(Pod::new(ns.clone(), "web").container(Container::new("app")))
            .await;
        // Each collector has its own proxy, so that the calls of each can be told.
        let (indexed_proxy, listed_proxy) = (Proxy::start(), Proxy::start());
        indexed_proxy.set_clock_skew(skew);
        listed_proxy.set_clock_skew(skew);
        let indexed = Collector::start_with(pod_detail_collector::Settings {
            runtime: RuntimeChoice::Docker(indexed_proxy.docker_host()),
            ..settings_for(&node)
        })
        .await;
        assert!(indexed.settings.event_index, "the index is on by default");
        let listed = Collector::start_with(pod_detail_collector::Settings {
            runtime: RuntimeChoice::Docker(listed_proxy.docker_host()),
            event_index: false,
            ..settings_for(&node)
        })
        .await;
        // The times the collectors show are the daemon's.
        let first = both(&indexed, &listed, &ns, "web").await;
        let started = pod::status(&first, "app")["state"]["running"]["startedAt"]
            .as_str()
            .unwrap_or_default()
            .parse::<k8s_openapi::jiff::Timestamp>()
            .expect("startedAt");
        let ahead = started.as_second() - k8s_openapi::jiff::Timestamp::now().as_second();
        assert!(
            (ahead - skew / 1_000_000_000).abs() < 60,
            "{label}: startedAt {started} is not {skew} ns off"
        );

        until_indexed(&indexed, &ns, "web").await;
        let before = lookups(&indexed).await;
        churn(&node, &indexed, &indexed_proxy, &listed, &ns, &created).await;

        // A pod made now is found at once; removed, it is gone.
        let late = node
            .run(Pod::new(ns.clone(), "late").container(Container::new("app")))
            .await;
        assert_eq!(
            both(&indexed, &listed, &ns, "late").await["metadata"]["uid"],
            late.uid
        );
        for id in late
            .instances("app")
            .iter()
            .map(|i| i.id.clone())
            .chain([late.sandbox_id.clone()])
        {
            remove(&node, &id).await;
        }
        indexed.ask(&ns, "late").await.expect_error(404);
        listed.ask(&ns, "late").await.expect_error(404);

        // Every one of those answers came from the index, none from a list.
        let after = lookups(&indexed).await;
        assert_eq!(after.1, before.1, "{label}: fallbacks to a list: {after:?}");
        assert!(
            after.0 >= before.0 + 12.0,
            "{label}: {before:?} → {after:?}"
        );
        assert!(
            !indexed_proxy
                .log()
                .iter()
                .any(|call| call.path == "/containers/json" && call.uri.contains("name%3D")),
            "the indexed collector listed a pod"
        );
    }
}

/// A counter of the collector's metrics, summed over series with these labels.
async fn counter(collector: &Collector, name: &str, labels: &[(&str, &str)]) -> f64 {
    let text = collector.request("GET", "/metrics", None).await.body;
    metric(&text, name, labels).unwrap_or(0.0)
}

/// Whenever Docker's events cannot be followed — the events API hangs, floods the window with
/// more events than Docker keeps, or fails — every answer still comes, in time and equal to
/// the list path's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_list_answers_whenever_the_events_cannot_be_followed() {
    let node = Node::new().await;
    let ns = node.ns("events-fail");
    node.run(
        Pod::new(ns.clone(), "web").container(
            Container::new("app")
                .instance(support::Instance::Exit(1))
                .instance(support::Instance::Running),
        ),
    )
    .await;
    let proxy = Proxy::start();
    let indexed = Collector::start_with(pod_detail_collector::Settings {
        runtime: RuntimeChoice::Docker(proxy.docker_host()),
        ..settings_for(&node)
    })
    .await;
    let listed = Collector::start_with(pod_detail_collector::Settings {
        event_index: false,
        ..settings_for(&node)
    })
    .await;
    until_indexed(&indexed, &ns, "web").await;
    const FALLBACKS: &str = "pod_detail_collector_event_index_fallbacks_total";
    const REBUILDS: &str = "pod_detail_collector_event_index_rebuilds_total";

    // The events API hangs: the answer comes from the list, within the lag budget.
    proxy.set_mode(Mode::only("/events", Mode::Hang));
    let started = std::time::Instant::now();
    both(&indexed, &listed, &ns, "web").await;
    assert!(
        started.elapsed() < std::time::Duration::from_secs(3),
        "answered after {:?}",
        started.elapsed()
    );
    assert_eq!(
        counter(&indexed, FALLBACKS, &[("reason", "events_lag")]).await,
        1.0
    );
    proxy.set_mode(Mode::Pass);
    until_indexed(&indexed, &ns, "web").await;

    // A window holding as many events as Docker keeps may have lost some: rebuilt from a
    // list, and the answer is still right.
    let overflows = counter(&indexed, REBUILDS, &[("reason", "overflow")]).await;
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    proxy.set_mode(Mode::only("/events", Mode::Flood(256)));
    both(&indexed, &listed, &ns, "web").await;
    proxy.set_mode(Mode::Pass);
    assert_eq!(
        counter(&indexed, REBUILDS, &[("reason", "overflow")]).await,
        overflows + 1.0
    );
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let (before, fallbacks) = lookups(&indexed).await;
    both(&indexed, &listed, &ns, "web").await;
    assert_eq!(lookups(&indexed).await, (before + 1.0, fallbacks));

    // The events API fails: the list answers, and keeps answering for a while.
    proxy.set_mode(Mode::only("/events", Mode::Http500));
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    both(&indexed, &listed, &ns, "web").await;
    assert_eq!(
        counter(&indexed, FALLBACKS, &[("reason", "events_failed")]).await,
        1.0
    );
    proxy.set_mode(Mode::Pass);
    both(&indexed, &listed, &ns, "web").await;
    assert_eq!(
        counter(&indexed, FALLBACKS, &[("reason", "paused")]).await,
        1.0
    );
}

/// `/readyz` says whether the index can answer: while the daemon's clock is being read, in the
/// first seconds, requests are answered from lists; once it says `ready`, the index answers.
/// Without the index it says nothing of one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_says_when_the_event_index_answers() {
    let node = Node::new().await;
    let ns = node.ns("warm");
    node.run(Pod::new(ns.clone(), "web").container(Container::new("app")))
        .await;
    let indexed = Collector::start_with(settings_for(&node)).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut states = Vec::new();
    loop {
        let ready = indexed.request("GET", "/readyz", None).await;
        assert_eq!(ready.status, 200, "{}", ready.body);
        let body: Value = serde_json::from_str(&ready.body).expect("/readyz is JSON");
        let state = body["event_index"].as_str().unwrap_or_default().to_string();
        assert!(
            ["reading the daemon's clock", "ready"].contains(&state.as_str()),
            "/readyz: {body}"
        );
        if states.last() != Some(&state) {
            states.push(state.clone());
        }
        if state == "ready" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not ready within 10 s: {states:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let before = lookups(&indexed).await;
    indexed.pod(&ns, "web").await;
    let after = lookups(&indexed).await;
    assert_eq!(after.0, before.0 + 1.0, "served by the index once ready");
    assert_eq!(after.1, before.1, "no fallback once ready");
    indexed.shutdown().await;

    let listed = Collector::start_with(pod_detail_collector::Settings {
        event_index: false,
        ..settings_for(&node)
    })
    .await;
    let ready = listed.request("GET", "/readyz", None).await;
    let body: Value = serde_json::from_str(&ready.body).expect("/readyz is JSON");
    assert!(body.get("event_index").is_none(), "{body}");
    listed.shutdown().await;
}
