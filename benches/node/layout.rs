//! The node, laid out on Docker as the kubelet would: kubelet-style pods (made by the test
//! support's kubelet fixture), containers that are not the kubelet's, the check that an answer
//! holds a pod as it was made, and the clean-up of everything the benchmark made.

use std::collections::{BTreeSet, HashMap};

use bollard::Docker;
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptions, ListContainersOptionsBuilder, RemoveContainerOptions,
};
use futures_util::stream::{self, StreamExt};
use serde_json::Value;

use crate::log;
use crate::support::{self, Container, Instance, Node, Pod, Volume};

const NAMESPACES: [&str; 5] = ["default", "kube-system", "monitoring", "payments", "batch"];
const APPS: [&str; 4] = ["web", "api", "worker", "cache"];
const POD_DETAIL_KEY: &str = "collector.kubernetes.pod.detail";

#[derive(Clone, Debug)]
pub(crate) struct PodKey {
    pub(crate) namespace: String,
    pub(crate) name: String,
}

/// Pod `i` of the node: a Deployment-like pod on a CNI network with an init container that
/// completed and an app container that crashed once and runs again (restartCount 1).
pub(crate) fn pod_spec(node: &Node, i: usize) -> Pod {
    let app = APPS[i % APPS.len()];
    let namespace = node.ns(NAMESPACES[i % NAMESPACES.len()]);
    let template_hash = format!("{:09x}", support::util::fnv64(&[app, "template"]) >> 28);
    let name = format!("{app}-{template_hash}-{i:05}");
    Pod::new(namespace, &name)
        .label("app", app)
        .label("pod-template-hash", &template_hash)
        .annotation("prometheus.io/scrape", "true")
        // CNI: an eth0 inside the sandbox's network namespace (RFC 2544 benchmarking range;
        // both ends of the veth stay inside that namespace, nothing is ever sent).
        .pod_ip(&format!("198.18.{}.{}/15", i / 250, i % 250 + 1))
        .volume(Volume::empty_dir("cache"))
        .volume(Volume::projected("kube-api-access"))
        .container(
            Container::new("init-config")
                .container_type("init")
                .command(["sh", "-c", "true"])
                .mount("cache", "/cache", false)
                .instance(Instance::Exit(0)),
        )
        .container(
            Container::new(app)
                .container_type("container")
                .cpu_request(100)
                .memory_limit(128 * 1024 * 1024)
                .env("MODE", "bench")
                .env("POD_INDEX", &i.to_string())
                .port("http", 8080)
                .mount("cache", "/cache", false)
                .mount(
                    "kube-api-access",
                    "/var/run/secrets/kubernetes.io/serviceaccount",
                    true,
                )
                .instance(Instance::Exit(1))
                .instance(Instance::Running),
        )
}

/// Containers on the node that are not the kubelet's: half running, half never started.
pub(crate) async fn add_other_containers(
    docker: &Docker,
    label: &str,
    suffix: &str,
    count: usize,
) -> Result<(), String> {
    let (key, value) = label.split_once('=').unwrap_or((label, ""));
    for i in 0..count {
        let body = ContainerCreateBody {
            image: Some(support::util::app_image()),
            cmd: Some(vec!["sleep".into(), "86400".into()]),
            labels: Some(HashMap::from([
                (key.to_string(), value.to_string()),
                ("com.example.role".to_string(), "not-kubernetes".to_string()),
            ])),
            host_config: Some(HostConfig {
                network_mode: Some("none".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let options = CreateContainerOptions {
            name: Some(format!("bench-other-{suffix}-{i}")),
            ..Default::default()
        };
        let id = docker
            .create_container(Some(options), body)
            .await
            .map_err(|err| format!("create a non-kubelet container: {err}"))?
            .id;
        if i % 2 == 0 {
            docker
                .start_container(&id, None)
                .await
                .map_err(|err| format!("start a non-kubelet container: {err}"))?;
        }
    }
    Ok(())
}

/// Whether the reply holds the pod as it was made: the app container restarted once after
/// exiting 1, the init container completed, the CNI address is known.
pub(crate) fn check_reply(text: &str) -> String {
    let pod: Option<Value> = serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|v| v.get(POD_DETAIL_KEY)?.as_str().map(str::to_string))
        .and_then(|s| serde_json::from_str(&s).ok());
    let Some(pod) = pod else {
        return "reply holds no pod".into();
    };
    let status = &pod["status"];
    let app = status["containerStatuses"]
        .as_array()
        .and_then(|list| list.first());
    let mut problems = Vec::new();
    match app {
        Some(app) => {
            if app["restartCount"] != 1 {
                problems.push("restartCount is not 1");
            }
            if app["lastState"]["terminated"]["exitCode"] != 1 {
                problems.push("lastState is not terminated with exit code 1");
            }
            if app["state"]["running"].is_null() {
                problems.push("app is not running");
            }
        }
        None => problems.push("no container status"),
    }
    if status["initContainerStatuses"]
        .as_array()
        .is_none_or(|l| l.is_empty())
    {
        problems.push("no init container status");
    }
    if status["podIP"]
        .as_str()
        .is_none_or(|ip| !ip.starts_with("198.18."))
    {
        problems.push("no CNI pod IP");
    }
    if problems.is_empty() {
        "ok".into()
    } else {
        problems.join("; ")
    }
}

/// Every container of the benchmark's namespaces and every other one it made, removed a few
/// at a time.
pub(crate) async fn clean_up(docker: &Docker, node: &Node, label: &str, parallel: usize) -> usize {
    let mut ids = BTreeSet::new();
    let mut filters: Vec<HashMap<String, Vec<String>>> = NAMESPACES
        .iter()
        .map(|base| {
            HashMap::from([(
                "label".to_string(),
                vec![format!("io.kubernetes.pod.namespace={}", node.ns(base))],
            )])
        })
        .collect();
    filters.push(HashMap::from([(
        "label".to_string(),
        vec![label.to_string()],
    )]));
    for filter in &filters {
        let options = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(filter)
            .build();
        if let Ok(list) = docker.list_containers(Some(options)).await {
            ids.extend(list.into_iter().filter_map(|c| c.id));
        }
    }
    let count = ids.len();
    stream::iter(ids)
        .for_each_concurrent(parallel, |id| async move {
            let options = RemoveContainerOptions {
                force: true,
                v: true,
                ..Default::default()
            };
            if let Err(err) = docker.remove_container(&id, Some(options)).await {
                log(format!("could not remove container {id}: {err}"));
            }
        })
        .await;
    count
}
