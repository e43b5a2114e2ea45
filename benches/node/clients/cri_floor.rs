//! The CRI floor: the CRI calls an answer needs when nothing is kept (`src/runtime/cri`,
//! `answer_pods`, the first time it sees each exited container), with nothing around them, by a
//! bare client over the same socket (`cri-floor`, `cri-list-only`).

use std::time::Duration;

use futures_util::future::{join, join_all};
use pod_detail_collector::cri_api::{self as cri, runtime_service_client::RuntimeServiceClient};
use tonic::transport::Channel;

use crate::layout::PodKey;
use crate::measure::{Bench, Point};

/// Longest one query may take (a runtime that stopped answering ends the point, not the run).
const QUERY: Duration = Duration::from_secs(30);

type Runtime = RuntimeServiceClient<Channel>;

/// The answer's CRI calls with nothing around them: the pod's sandboxes and containers
/// listed by its namespace and name labels (both at once), then the verbose status of every
/// sandbox and every container, all at once.
async fn cri_floor_query(runtime: Runtime, key: PodKey) -> Result<(), String> {
    let (sandboxes, containers) = list_pod(&runtime, &key).await?;
    let sandbox_statuses = sandboxes.iter().map(|sandbox| {
        let mut runtime = runtime.clone();
        let request = cri::PodSandboxStatusRequest {
            pod_sandbox_id: sandbox.id.clone(),
            verbose: true,
        };
        async move { runtime.pod_sandbox_status(request).await }
    });
    let container_statuses = containers.iter().map(|container| {
        let mut runtime = runtime.clone();
        let request = cri::ContainerStatusRequest {
            container_id: container.id.clone(),
            verbose: true,
        };
        async move { runtime.container_status(request).await }
    });
    let (sandbox_statuses, container_statuses) =
        join(join_all(sandbox_statuses), join_all(container_statuses)).await;
    for status in sandbox_statuses {
        status.map_err(|s| format!("PodSandboxStatus: {:?}: {}", s.code(), s.message()))?;
    }
    for status in container_statuses {
        status.map_err(|s| format!("ContainerStatus: {:?}: {}", s.code(), s.message()))?;
    }
    Ok(())
}

/// `ListPodSandbox` and `ListContainers` by the pod's namespace and name labels, at once.
async fn list_pod(
    runtime: &Runtime,
    key: &PodKey,
) -> Result<(Vec<cri::PodSandbox>, Vec<cri::Container>), String> {
    let selector = std::collections::HashMap::from([
        (
            "io.kubernetes.pod.namespace".to_string(),
            key.namespace.clone(),
        ),
        ("io.kubernetes.pod.name".to_string(), key.name.clone()),
    ]);
    let (mut sandbox_lister, mut container_lister) = (runtime.clone(), runtime.clone());
    let (sandboxes, containers) = join(
        sandbox_lister.list_pod_sandbox(cri::ListPodSandboxRequest {
            filter: Some(cri::PodSandboxFilter {
                label_selector: selector.clone(),
                ..Default::default()
            }),
        }),
        container_lister.list_containers(cri::ListContainersRequest {
            filter: Some(cri::ContainerFilter {
                label_selector: selector,
                ..Default::default()
            }),
        }),
    )
    .await;
    let sandboxes = sandboxes
        .map_err(|s| format!("ListPodSandbox: {:?}: {}", s.code(), s.message()))?
        .into_inner()
        .items;
    let containers = containers
        .map_err(|s| format!("ListContainers: {:?}: {}", s.code(), s.message()))?
        .into_inner()
        .containers;
    if sandboxes.is_empty() || containers.is_empty() {
        return Err(format!(
            "no sandbox or no container for {}/{}",
            key.namespace, key.name
        ));
    }
    Ok((sandboxes, containers))
}

async fn bounded(query: impl Future<Output = Result<(), String>>) -> Result<(), String> {
    tokio::time::timeout(QUERY, query)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {QUERY:?}")))
}

impl Bench<'_> {
    pub(crate) async fn cri_floor(&self, concurrency: usize, total: usize) -> Point {
        let runtime = RuntimeServiceClient::new(self.cri_channel());
        self.point("cri-floor", concurrency, total, Some("self"), move |k| {
            bounded(cri_floor_query(runtime.clone(), k))
        })
        .await
    }

    pub(crate) async fn cri_list_only(&self) -> Point {
        let runtime = RuntimeServiceClient::new(self.cri_channel());
        self.point(
            "cri-list-only",
            1,
            self.config.requests,
            Some("self"),
            move |k| {
                let runtime = runtime.clone();
                bounded(async move { list_pod(&runtime, &k).await.map(drop) })
            },
        )
        .await
    }
}
