//! The floor: the Docker calls the answer needs, with nothing around them, over the same
//! socket as the collector's (floor, floor-seq, list-only).

use std::collections::{BTreeSet, HashMap};

use bollard::Docker;
use bollard::query_parameters::ListContainersOptionsBuilder;
use futures_util::future::{join, join_all};

use crate::layout::PodKey;
use crate::measure::{Bench, Point};

/// The answer's Docker calls with nothing around them: list, then all inspects at once (the
/// list already names each container's image).
async fn floor_query(docker: Docker, key: PodKey) -> Result<(), String> {
    let listed = list_pod(&docker, &key).await?;
    let images: BTreeSet<&str> = listed
        .iter()
        .filter_map(|c| c.image_id.as_deref())
        .collect();
    let containers = join_all(
        listed
            .iter()
            .filter_map(|c| c.id.as_deref())
            .map(|id| docker.inspect_container(id, None)),
    );
    let images = join_all(images.iter().map(|id| docker.inspect_image(id)));
    let (containers, images) = join(containers, images).await;
    for c in containers {
        c.map_err(|err| format!("inspect container: {err}"))?;
    }
    for i in images {
        i.map_err(|err| format!("inspect image: {err}"))?;
    }
    Ok(())
}

/// The same calls in the collector's order: list → container inspects → image inspects.
async fn floor_seq_query(docker: Docker, key: PodKey) -> Result<(), String> {
    let listed = list_pod(&docker, &key).await?;
    let mut images = BTreeSet::new();
    for c in join_all(
        listed
            .iter()
            .filter_map(|c| c.id.as_deref())
            .map(|id| docker.inspect_container(id, None)),
    )
    .await
    {
        let c = c.map_err(|err| format!("inspect container: {err}"))?;
        images.extend(c.image);
    }
    for i in join_all(images.iter().map(|id| docker.inspect_image(id))).await {
        i.map_err(|err| format!("inspect image: {err}"))?;
    }
    Ok(())
}

async fn list_pod(
    docker: &Docker,
    key: &PodKey,
) -> Result<Vec<bollard::models::ContainerSummary>, String> {
    let filters = HashMap::from([(
        "label".to_string(),
        vec![
            format!("io.kubernetes.pod.namespace={}", key.namespace),
            format!("io.kubernetes.pod.name={}", key.name),
        ],
    )]);
    let options = ListContainersOptionsBuilder::new()
        .all(true)
        .filters(&filters)
        .build();
    let listed = docker
        .list_containers(Some(options))
        .await
        .map_err(|err| format!("list: {err}"))?;
    if listed.is_empty() {
        return Err(format!("no container for {}/{}", key.namespace, key.name));
    }
    Ok(listed)
}

impl Bench<'_> {
    pub(crate) async fn floor(&self, concurrency: usize, total: usize) -> Point {
        let docker = self.docker().clone();
        self.point("floor", concurrency, total, Some("self"), move |k| {
            floor_query(docker.clone(), k)
        })
        .await
    }

    pub(crate) async fn floor_seq(&self) -> Point {
        let docker = self.docker().clone();
        self.point(
            "floor-seq",
            1,
            self.config.requests,
            Some("self"),
            move |k| floor_seq_query(docker.clone(), k),
        )
        .await
    }

    pub(crate) async fn list_only(&self) -> Point {
        let docker = self.docker().clone();
        self.point(
            "list-only",
            1,
            self.config.requests,
            Some("self"),
            move |k| {
                let docker = docker.clone();
                async move { list_pod(&docker, &k).await.map(drop) }
            },
        )
        .await
    }
}
