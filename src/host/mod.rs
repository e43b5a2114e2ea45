//! What the node's own files tell about a pod, beyond Docker: CNI addresses in the sandbox's
//! network namespace, termination-message files, static pod manifests, the node's address.
//! Read-only, best effort: a file that cannot be read leaves its field out.

pub mod manifests;
pub mod netns;

use std::io::Read;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::error::PodRef;
use crate::rebuild::kubelet::{self, Instance, RunState};
use crate::rebuild::{HostFacts, PodRecord, PodView};

/// The kubelet reads at most this much of a termination-message file.
const TERMINATION_MESSAGE_LIMIT: u64 = 4096;
/// The interface a CNI plugin names inside the pod's network namespace.
const POD_INTERFACE: &str = "eth0";

pub struct HostFiles {
    pub host_proc: PathBuf,
    pub manifest_dir: PathBuf,
    pub node_name: String,
}

impl HostFiles {
    /// Reads what the host holds for the pod in `record`.
    pub fn facts(&self, pod: &PodRef, record: &PodRecord) -> HostFacts {
        let Some(view) = PodView::new(record) else {
            return HostFacts::default();
        };
        let mut facts = HostFacts {
            pod_ips: view
                .sandbox
                .as_ref()
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
            if let Some(message) = termination_message(instance) {
                facts
                    .termination_messages
                    .insert(instance.id.to_string(), message);
            }
        }
        let is_static = view
            .sandbox
            .as_ref()
            .and_then(|s| s.annotation(kubelet::CONFIG_SOURCE))
            == Some("file");
        if is_static {
            facts.manifest = manifests::find(&self.manifest_dir, pod, &self.node_name);
        }
        facts
    }

    /// Addresses a CNI plugin gave the pod. Docker knows none of them (`NetworkMode=none`);
    /// the sandbox's network namespace, seen through its process, does.
    fn cni_addresses(&self, sandbox: &Instance) -> Vec<IpAddr> {
        let host = sandbox.inspect.host_config.as_ref();
        let network_mode = host.and_then(|h| h.network_mode.as_deref());
        let pid = sandbox
            .inspect
            .state
            .as_ref()
            .and_then(|s| s.pid)
            .unwrap_or(0);
        if network_mode != Some("none") || sandbox.run_state() != RunState::Running || pid <= 0 {
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
    if instance.run_state() != RunState::Exited {
        return None;
    }
    let path = instance.annotation(kubelet::TERMINATION_MESSAGE_PATH)?;
    let mount = instance
        .inspect
        .mounts
        .as_deref()?
        .iter()
        .find(|mount| mount.destination.as_deref() == Some(path))?;
    let source = Path::new(mount.source.as_deref()?);
    let file = std::fs::File::open(source)
        .map_err(|err| log::debug!("termination message {}: {err}", source.display()))
        .ok()?;
    let mut bytes = Vec::new();
    file.take(TERMINATION_MESSAGE_LIMIT)
        .read_to_end(&mut bytes)
        .ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned()).filter(|text| !text.is_empty())
}
