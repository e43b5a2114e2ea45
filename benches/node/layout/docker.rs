//! The node on Docker, as dockershim and cri-dockerd leave it: kubelet-style pods (made by
//! the test support's kubelet fixture), containers that are not the kubelet's, and the
//! clean-up of everything the benchmark made.

use std::collections::{BTreeSet, HashMap};

use bollard::Docker;
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptions, ListContainersOptionsBuilder, RemoveContainerOptions,
};
use futures_util::stream::{self, StreamExt};

use super::{NAMESPACES, namespace_base, pod_shape};
use crate::log;
use crate::support::{self, Node, Pod};

/// The prefix of the pods' CNI addresses (what [`pod_spec`] gives them).
pub(crate) const POD_IP_PREFIX: &str = "198.18.";

/// Pod `i` of the node: [`pod_shape`] on a CNI network (an eth0 inside the sandbox's network
/// namespace, RFC 2544 benchmarking range; both ends of the veth stay inside that namespace,
/// nothing is ever sent).
pub(crate) fn pod_spec(node: &Node, i: usize) -> Pod {
    pod_shape(node.ns(namespace_base(i)), i).pod_ip(&format!(
        "198.18.{}.{}/15",
        i / 250,
        i % 250 + 1
    ))
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
