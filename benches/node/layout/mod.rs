//! The node, laid out as the kubelet would: the one pod shape both runtimes get (made by the
//! test support's fixtures), the check that an answer holds a pod as it was made, and, per
//! runtime, the layout and the clean-up of everything the benchmark made:
//!
//! - `docker.rs`: Docker, as dockershim and cri-dockerd leave pods (support's `Node`), plus
//!   containers that are not the kubelet's;
//! - `cri.rs`: containerd over CRI, as the kubelet's kuberuntime leaves pods (support's
//!   `CriNode`).

pub(crate) mod cri;
pub(crate) mod docker;

use serde_json::Value;

use crate::support::{self, Container, Instance, Pod, Volume};

pub(crate) const NAMESPACES: [&str; 5] =
    ["default", "kube-system", "monitoring", "payments", "batch"];
const APPS: [&str; 4] = ["web", "api", "worker", "cache"];
const POD_DETAIL_KEY: &str = "collector.kubernetes.pod.detail";

#[derive(Clone, Debug)]
pub(crate) struct PodKey {
    pub(crate) namespace: String,
    pub(crate) name: String,
}

/// Pod `i` of the node, the same on every runtime: a Deployment-like pod with an init
/// container that completed and an app container that crashed once and runs again
/// (restartCount 1). Its address comes from the runtime's layout (CNI).
pub(crate) fn pod_shape(namespace: String, i: usize) -> Pod {
    let app = APPS[i % APPS.len()];
    let template_hash = format!("{:09x}", support::util::fnv64(&[app, "template"]) >> 28);
    let name = format!("{app}-{template_hash}-{i:05}");
    Pod::new(namespace, &name)
        .label("app", app)
        .label("pod-template-hash", &template_hash)
        .annotation("prometheus.io/scrape", "true")
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

/// The namespace of pod `i` (spread over [`NAMESPACES`]).
pub(crate) fn namespace_base(i: usize) -> &'static str {
    NAMESPACES[i % NAMESPACES.len()]
}

/// Whether the reply holds the pod as it was made: the app container restarted once after
/// exiting 1, the init container completed, the CNI address (`pod_ip` says which) is known.
pub(crate) fn check_reply(text: &str, pod_ip: impl Fn(&str) -> bool) -> String {
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
    if status["podIP"].as_str().is_none_or(|ip| !pod_ip(ip)) {
        problems.push("no CNI pod IP");
    }
    if problems.is_empty() {
        "ok".into()
    } else {
        problems.join("; ")
    }
}
