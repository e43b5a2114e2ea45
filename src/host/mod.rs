//! What the node's own files tell about a pod, beyond the runtime: addresses in the sandbox's
//! network namespace, termination-message files and the log tails that stand in for empty
//! ones, static pod manifests, the kubelet's resource allocation checkpoint, the node's
//! address.
//! Read-only, best effort: a file that cannot be read leaves its field out. Blocking: call it
//! off the async workers.

pub mod allocation;
pub mod manifests;
pub mod netns;
pub mod pod_logs;

use std::io::Read;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::kubelet;
use crate::pod_ref::PodRef;
use crate::record::{HostFacts, Instance, PodView, Sandbox, SandboxState};

/// The kubelet reads at most this much of a termination-message file.
const TERMINATION_MESSAGE_LIMIT: u64 = 4096;
/// The interface a CNI plugin names inside the pod's network namespace.
const POD_INTERFACE: &str = "eth0";

pub struct HostFiles {
    host_proc: PathBuf,
    manifests: manifests::Manifests,
    allocations: allocation::Allocations,
    /// The kubelet's container log directory (`/var/log/pods`).
    pod_logs: PathBuf,
    node_name: String,
}

/// Where the node's files are.
pub struct HostPaths {
    pub host_proc: PathBuf,
    pub manifest_dir: PathBuf,
    pub kubelet_root: PathBuf,
    pub pod_logs: PathBuf,
}

impl HostFiles {
    pub fn new(paths: HostPaths, node_name: String) -> Self {
        HostFiles {
            host_proc: paths.host_proc,
            manifests: manifests::Manifests::new(paths.manifest_dir),
            allocations: allocation::Allocations::new(&paths.kubelet_root),
            pod_logs: paths.pod_logs,
            node_name,
        }
    }

    /// Reads what the host holds for the pod.
    pub fn facts(&self, pod: &PodRef, view: &PodView) -> HostFacts {
        let mut facts = HostFacts {
            pod_ips: view
                .sandbox
                .map(|sandbox| self.cni_addresses(sandbox))
                .unwrap_or_default(),
            ..HostFacts::default()
        };
        // Only the instances the status shows: the newest and the one before it.
        for instance in view
            .containers
            .values()
            .flat_map(|history| history.iter().take(2))
        {
            let message = termination_message(instance);
            // The log only where the kubelet would read it: a failed instance whose policy
            // says so and whose message file is empty or missing.
            if message.is_none() && instance.falls_back_to_logs() {
                let path = kubelet::container_log_path(
                    &self.pod_logs,
                    &pod.namespace,
                    &pod.name,
                    view.uid,
                    &instance.name,
                    instance.restart_count().unwrap_or_default(),
                );
                if let Some(tail) = pod_logs::tail(&path) {
                    facts.log_tails.insert(instance.id.clone(), tail);
                }
            }
            if let Some(message) = message {
                facts
                    .termination_messages
                    .insert(instance.id.clone(), message);
            }
        }
        if view.pod_annotation(kubelet::CONFIG_SOURCE) == Some("file") {
            facts.manifest = self.manifests.find(pod, &self.node_name);
        }
        facts.allocated = self.allocations.of(view.uid);
        facts
    }

    /// Addresses a CNI plugin gave the pod where the runtime does not know them; the
    /// sandbox's network namespace, seen through its process, does.
    fn cni_addresses(&self, sandbox: &Sandbox) -> Vec<IpAddr> {
        let Some(pid) = sandbox.pid.filter(|_| sandbox.ips.is_none()) else {
            return Vec::new();
        };
        if sandbox.state != SandboxState::Ready {
            return Vec::new();
        }
        let net_dir = self.host_proc.join(pid.to_string()).join("net");
        netns::interface_addresses(&net_dir, POD_INTERFACE)
    }

    /// The node's address: the first global address of the default route's interface, seen
    /// from the host's first process (the collector may run in its own network namespace).
    pub fn node_ip(&self) -> Option<IpAddr> {
        [
            self.host_proc.join("1/net"),
            PathBuf::from("/proc/self/net"),
        ]
        .iter()
        .find_map(|net_dir| {
            let interface = netns::default_route_interface(net_dir)?;
            netns::interface_addresses(net_dir, &interface)
                .into_iter()
                .next()
        })
    }
}

/// The file behind the container's termination-message path, read on the host through the
/// bind mount's source.
fn termination_message(instance: &Instance) -> Option<String> {
    if !instance.has_exited() {
        return None;
    }
    let path = instance.annotation(kubelet::TERMINATION_MESSAGE_PATH)?;
    let mount = instance
        .mounts
        .iter()
        .find(|mount| mount.container_path == path)?;
    let source = Path::new(&mount.host_path);
    let file = std::fs::File::open(source)
        .map_err(|err| log::debug!("termination message {}: {err}", source.display()))
        .ok()?;
    let mut bytes = Vec::new();
    file.take(TERMINATION_MESSAGE_LIMIT)
        .read_to_end(&mut bytes)
        .ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned()).filter(|text| !text.is_empty())
}
