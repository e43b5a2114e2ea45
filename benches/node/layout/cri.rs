//! The node on containerd over CRI, as the kubelet's kuberuntime leaves it: the same pods as
//! on Docker (support's `CriNode` sends the kubelet's `RunPodSandbox` / `CreateContainer` /
//! `StartContainer`; the sandbox's address comes from containerd's CNI bridge), and the
//! clean-up of every sandbox the benchmark made, a few at a time.
//!
//! CRI lists only what the kubelet made (containerd's `k8s.io` namespace, CRI's own
//! metadata): containers that are not the kubelet's are invisible to it, so none are added.

use std::collections::{BTreeSet, HashMap};

use futures_util::stream::{self, StreamExt};
use pod_detail_collector::cri_api as cri;

use super::{NAMESPACES, namespace_base, pod_shape};
use crate::log;
use crate::support::Pod;
use crate::support::cri::{CriNode, try_call};

/// Pod `i` of the node: [`pod_shape`], its address given by CNI.
pub(crate) fn pod_spec(node: &CriNode, i: usize) -> Pod {
    pod_shape(node.ns(namespace_base(i)), i)
}

/// Stops and removes every sandbox of the benchmark's namespaces (their containers go with
/// them), `parallel` at a time; how many there were.
pub(crate) async fn clean_up(node: &CriNode, parallel: usize) -> usize {
    let mut ids = BTreeSet::new();
    for base in NAMESPACES {
        let request = cri::ListPodSandboxRequest {
            filter: Some(cri::PodSandboxFilter {
                label_selector: HashMap::from([(
                    "io.kubernetes.pod.namespace".to_string(),
                    node.ns(base),
                )]),
                ..Default::default()
            }),
        };
        match try_call(node.runtime.clone().list_pod_sandbox(request)).await {
            Ok(list) => ids.extend(list.items.into_iter().map(|s| s.id)),
            Err(status) => log(format!(
                "could not list the sandboxes of {}: {}",
                node.ns(base),
                status.message()
            )),
        }
    }
    let count = ids.len();
    stream::iter(ids)
        .for_each_concurrent(parallel, |id| async move {
            let mut runtime = node.runtime.clone();
            let stopped = try_call(runtime.stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: id.clone(),
            }))
            .await;
            let removed = try_call(runtime.remove_pod_sandbox(cri::RemovePodSandboxRequest {
                pod_sandbox_id: id.clone(),
            }))
            .await;
            if let Err(status) = stopped.and(removed) {
                log(format!(
                    "could not remove sandbox {id}: {}",
                    status.message()
                ));
            }
        })
        .await;
    count
}
