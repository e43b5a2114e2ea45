//! The Docker backend (dockershim and cri-dockerd nodes): the only code that talks to the
//! Docker daemon. It reads and never writes: list, inspect (containers and images), events,
//! ping, version and info.

pub mod convert;
mod index;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::Docker;
use bollard::errors::Error as DockerError;
use bollard::models::{
    ContainerInspectResponse, ContainerSummary, EventMessage, ImageInspect, SystemInfo,
    SystemVersion,
};
use bollard::query_parameters::{EventsOptionsBuilder, ListContainersOptionsBuilder};
use futures_util::TryStreamExt;
use futures_util::future::join_all;
use tokio::sync::{Mutex, Semaphore};

use super::{Scope, error_chain};
use crate::error::{Error, Result, RuntimeFailure};
use crate::kubelet::{POD_NAME_LABEL, POD_NAMESPACE_LABEL};
use crate::metrics::Metrics;
use crate::pod_ref::PodRef;
use crate::record::PodRecord;
use crate::settings::Settings;
use convert::Inspected;
use index::{CatchUp, PodIndex};

/// The label filters of a container list call for this scope.
fn label_selectors(scope: &Scope) -> Vec<String> {
    match scope {
        Scope::Pod(pod) => vec![
            format!("{POD_NAMESPACE_LABEL}={}", pod.namespace),
            format!("{POD_NAME_LABEL}={}", pod.name),
        ],
        Scope::Namespace(namespace) => vec![format!("{POD_NAMESPACE_LABEL}={namespace}")],
        Scope::Node => vec![POD_NAMESPACE_LABEL.to_string()],
    }
}

/// A container of the pods in scope, with its image when the list named it.
struct Member {
    id: String,
    image_id: Option<String>,
}

impl Member {
    fn unlisted(ids: Vec<String>) -> Vec<Member> {
        ids.into_iter()
            .map(|id| Member { id, image_id: None })
            .collect()
    }
}

/// A lazily connected Docker client. The service must start and serve while the daemon is
/// down, so the connection (and API version negotiation) happens on first use and is retried
/// on every call until it succeeds.
pub struct DockerRuntime {
    host: String,
    /// The Docker context that named the daemon, if one did: said in every message.
    context: Option<String>,
    timeout: Duration,
    client: std::sync::Mutex<Option<Docker>>,
    /// Caps the calls in flight, so a storm of diagnoses cannot overload a sick daemon.
    calls: Semaphore,
    /// With `--event-index`: pod membership from Docker's event log instead of list calls.
    index: Option<Mutex<PodIndex>>,
    metrics: Arc<Metrics>,
}

impl DockerRuntime {
    /// Accepts `unix:///path`, a bare `/path`, `tcp://host:port` or `http://host:port`.
    pub fn new(host: &str, settings: &Settings, metrics: Arc<Metrics>) -> Result<Self> {
        Ok(DockerRuntime {
            host: normalize_host(host)?,
            context: None,
            timeout: settings.runtime_timeout,
            client: std::sync::Mutex::new(None),
            calls: Semaphore::new(settings.runtime_concurrency.max(1)),
            index: settings
                .event_index
                .then(|| Mutex::new(PodIndex::default())),
            metrics,
        })
    }

    /// The daemon address.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The daemon as a Docker context named it: messages say which context that was.
    pub fn from_context(mut self, context: &str) -> Self {
        self.context = Some(context.to_string());
        self
    }

    /// How error messages name the daemon.
    pub fn runtime_name(&self) -> String {
        match &self.context {
            Some(context) => format!(
                "docker daemon at {} (Docker context {context:?})",
                self.host
            ),
            None => format!("docker daemon at {}", self.host),
        }
    }

    /// Whether the daemon answers a ping.
    pub async fn ping(&self) -> Result<(), RuntimeFailure> {
        let docker = self.client().await?;
        self.bounded(docker.ping()).await.map(drop)
    }

    /// The record of every pod in scope.
    pub async fn pod_records(
        &self,
        scope: Scope<'_>,
    ) -> Result<BTreeMap<PodRef, PodRecord>, RuntimeFailure> {
        let inspected = self.inspect_pods(scope).await?;
        Ok(inspected
            .into_iter()
            .map(|(pod, inspected)| (pod, convert::pod_record(&inspected)))
            .collect())
    }

    /// Every container (any state) the kubelet made for the pods in scope, inspected, with
    /// the images they run, sorted into pods. A container removed between listing and
    /// inspecting is skipped.
    async fn inspect_pods(
        &self,
        scope: Scope<'_>,
    ) -> Result<BTreeMap<PodRef, Inspected>, RuntimeFailure> {
        let requested_at = unix_nanos();
        let docker = self.client().await?;
        let members = match &self.index {
            Some(index) => {
                self.indexed_members(&docker, index, scope, requested_at)
                    .await?
            }
            None => self.listed_members(&docker, scope).await?,
        };

        // The images a list names are inspected at the same time as the containers.
        let listed_images: BTreeSet<String> = members
            .iter()
            .filter_map(|member| member.image_id.clone())
            .collect();
        let inspects = members
            .iter()
            .map(|member| self.bounded(docker.inspect_container(&member.id, None)));
        let (inspected, images) = tokio::join!(
            join_all(inspects),
            self.inspect_images(&docker, listed_images)
        );
        let mut images = images?;

        let mut records: BTreeMap<PodRef, Inspected> = BTreeMap::new();
        for (member, inspected) in members.iter().zip(inspected) {
            let container = match inspected {
                Ok(container) => container,
                Err(RuntimeFailure::Api { status: 404, .. }) => {
                    log::debug!("container {} vanished between list and inspect", member.id);
                    if let Some(index) = &self.index {
                        index.lock().await.forget(&member.id);
                    }
                    continue;
                }
                Err(failure) => return Err(failure),
            };
            // The labels are read again from the inspect: the list or index may be a moment old.
            if let Some(pod) = pod_of(&container).filter(|pod| scope.contains(pod)) {
                records.entry(pod).or_default().containers.push(container);
            }
        }

        // Images the list did not name (the index names none).
        let unseen: BTreeSet<String> = records
            .values()
            .flat_map(|record| &record.containers)
            .filter_map(|container| container.image.clone())
            .filter(|id| !images.contains_key(id))
            .collect();
        if !unseen.is_empty() {
            images.extend(self.inspect_images(&docker, unseen).await?);
        }
        for record in records.values_mut() {
            for id in record.containers.iter().filter_map(|c| c.image.as_deref()) {
                if let Some(image) = images.get(id).filter(|_| !record.images.contains_key(id)) {
                    record.images.insert(id.to_string(), image.clone());
                }
            }
        }
        Ok(records)
    }

    /// The containers in scope, from a list call.
    async fn listed_members(
        &self,
        docker: &Docker,
        scope: Scope<'_>,
    ) -> Result<Vec<Member>, RuntimeFailure> {
        let filters = HashMap::from([("label".to_string(), label_selectors(&scope))]);
        let options = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        let listed = self.bounded(docker.list_containers(Some(options))).await?;
        Ok(listed
            .into_iter()
            .filter_map(|summary| {
                Some(Member {
                    id: summary.id?,
                    image_id: summary.image_id.filter(|id| !id.is_empty()),
                })
            })
            .collect())
    }

    /// The container IDs in scope, from the index once it has caught up with every event
    /// logged before the request arrived.
    async fn indexed_members(
        &self,
        docker: &Docker,
        index: &Mutex<PodIndex>,
        scope: Scope<'_>,
        requested_at: i64,
    ) -> Result<Vec<Member>, RuntimeFailure> {
        let mut index = index.lock().await;
        // Requests that waited here are usually covered by the catch-up made before them.
        if index.current_at(requested_at) {
            return Ok(Member::unlisted(index.container_ids(&scope)));
        }
        if let Some(since) = index.catch_up_since() {
            let until = unix_nanos();
            let events = self.events(docker, since, until).await?;
            if index.apply(&events, until) == CatchUp::Applied {
                return Ok(Member::unlisted(index.container_ids(&scope)));
            }
            log::info!(
                "more than {} docker events since the last request: listing containers again",
                index::DOCKER_EVENT_BUFFER
            );
        }
        let as_of = unix_nanos();
        let filters = HashMap::from([("label".to_string(), label_selectors(&Scope::Node))]);
        let options = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        let listed = self.bounded(docker.list_containers(Some(options))).await?;
        index.reset(
            listed.into_iter().filter_map(|summary| {
                let labels = summary.labels.as_ref()?;
                let pod = PodRef {
                    namespace: labels.get(POD_NAMESPACE_LABEL)?.clone(),
                    name: labels.get(POD_NAME_LABEL)?.clone(),
                };
                Some((summary.id?, pod))
            }),
            as_of,
        );
        Ok(Member::unlisted(index.container_ids(&scope)))
    }

    /// The events Docker logged in `[since, until]` (Unix nanoseconds), from its in-memory log.
    async fn events(
        &self,
        docker: &Docker,
        since: i64,
        until: i64,
    ) -> Result<Vec<EventMessage>, RuntimeFailure> {
        let options = EventsOptionsBuilder::new()
            .since(&docker_timestamp(since))
            .until(&docker_timestamp(until))
            .build();
        self.bounded(docker.events(Some(options)).try_collect())
            .await
    }

    /// Inspects each image once; with the index, from its cache. A missing image is left out
    /// (the rebuild falls back to the image ID).
    async fn inspect_images(
        &self,
        docker: &Docker,
        ids: BTreeSet<String>,
    ) -> Result<HashMap<String, ImageInspect>, RuntimeFailure> {
        let mut images = HashMap::with_capacity(ids.len());
        let mut wanted = Vec::with_capacity(ids.len());
        match &self.index {
            Some(index) => {
                let index = index.lock().await;
                for id in ids {
                    match index.image(&id) {
                        Some(image) => {
                            images.insert(id, image.clone());
                        }
                        None => wanted.push(id),
                    }
                }
            }
            None => wanted.extend(ids),
        }
        let inspects = wanted
            .iter()
            .map(|id| self.bounded(docker.inspect_image(id)));
        let inspected = join_all(inspects).await;
        for (id, inspected) in wanted.into_iter().zip(inspected) {
            match inspected {
                Ok(image) => {
                    if let Some(index) = &self.index {
                        index.lock().await.remember_image(&id, image.clone());
                    }
                    images.insert(id, image);
                }
                Err(RuntimeFailure::Api { status: 404, .. }) => log::debug!("image {id} is gone"),
                Err(failure) => return Err(failure),
            }
        }
        Ok(images)
    }

    /// The node's containers as Docker lists them; stopped ones too when `all`.
    pub async fn containers(&self, all: bool) -> Result<Vec<ContainerSummary>, RuntimeFailure> {
        let docker = self.client().await?;
        let options = ListContainersOptionsBuilder::new().all(all).build();
        self.bounded(docker.list_containers(Some(options))).await
    }

    /// Docker's `/info`.
    pub async fn info(&self) -> Result<SystemInfo, RuntimeFailure> {
        let docker = self.client().await?;
        self.bounded(docker.info()).await
    }

    /// Docker's `/version`.
    pub async fn version(&self) -> Result<SystemVersion, RuntimeFailure> {
        let docker = self.client().await?;
        self.bounded(docker.version()).await
    }

    /// A connected client, connecting (and negotiating the API version) if needed.
    /// Concurrent first calls each connect: none waits behind another's negotiation with a
    /// daemon that may not answer.
    async fn client(&self) -> Result<Docker, RuntimeFailure> {
        if let Some(docker) = self.client_slot().as_ref() {
            return Ok(docker.clone());
        }
        let docker = Docker::connect_with_host(&self.host)
            .map_err(|err| self.failure(err))?
            .with_timeout(self.timeout + Duration::from_secs(1));
        // Daemons refuse clients newer than themselves (Docker 20.10 speaks API 1.41) and
        // recent ones refuse very old clients, so the version is agreed on, not fixed.
        let docker = self.bounded(docker.negotiate_version()).await?;
        log::info!(
            "connected to {} (API {})",
            self.runtime_name(),
            docker.client_version()
        );
        *self.client_slot() = Some(docker.clone());
        Ok(docker)
    }

    fn client_slot(&self) -> std::sync::MutexGuard<'_, Option<Docker>> {
        // The slot holds no invariant a panic elsewhere could break.
        self.client
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs one daemon call within the runtime timeout and phrases its failure.
    async fn bounded<T>(
        &self,
        call: impl Future<Output = Result<T, DockerError>>,
    ) -> Result<T, RuntimeFailure> {
        // Waiting for a turn counts against the timeout too: the caller waits either way.
        let limited = async {
            let _turn = self.calls.acquire().await;
            call.await
        };
        let outcome = match tokio::time::timeout(self.timeout, limited).await {
            Ok(outcome) => outcome,
            Err(_) => Err(DockerError::RequestTimeoutError),
        };
        let failure = match outcome {
            Ok(value) => return Ok(value),
            Err(err) => self.failure(err),
        };
        if matches!(failure, RuntimeFailure::Unreachable { .. }) {
            // The daemon may come back as another version: connect afresh next time.
            *self.client_slot() = None;
        }
        Err(failure)
    }

    /// Phrases a failed call, and counts it.
    fn failure(&self, err: DockerError) -> RuntimeFailure {
        let failure = self.phrase(err);
        self.metrics.runtime_error(&failure);
        failure
    }

    fn phrase(&self, err: DockerError) -> RuntimeFailure {
        let host = self.runtime_name();
        match err {
            DockerError::RequestTimeoutError => RuntimeFailure::Timeout {
                runtime: host,
                timeout: self.timeout,
            },
            DockerError::DockerResponseServerError {
                status_code,
                message,
            } => RuntimeFailure::Api {
                runtime: host,
                status: status_code,
                message,
            },
            DockerError::SocketNotFoundError(path) => RuntimeFailure::Unreachable {
                runtime: host,
                detail: format!("no socket at {path}"),
            },
            DockerError::JsonDataError { .. }
            | DockerError::JsonSerdeError { .. }
            | DockerError::APIVersionParseError { .. }
            | DockerError::StrParseError { .. } => RuntimeFailure::BadAnswer {
                runtime: host,
                detail: err.to_string(),
            },
            other => RuntimeFailure::Unreachable {
                runtime: host,
                detail: error_chain(&other),
            },
        }
    }
}

fn unix_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

/// Docker's `seconds.nanoseconds` form of a time.
fn docker_timestamp(unix_nanos: i64) -> String {
    format!(
        "{}.{:09}",
        unix_nanos.div_euclid(1_000_000_000),
        unix_nanos.rem_euclid(1_000_000_000)
    )
}

/// The pod a kubelet container belongs to, from its identity labels.
fn pod_of(container: &ContainerInspectResponse) -> Option<PodRef> {
    let labels = container.config.as_ref()?.labels.as_ref()?;
    Some(PodRef {
        namespace: labels.get(POD_NAMESPACE_LABEL)?.clone(),
        name: labels.get(POD_NAME_LABEL)?.clone(),
    })
}

/// Turns a `DOCKER_HOST` value into the form bollard connects to.
pub(crate) fn normalize_host(docker_host: &str) -> Result<String> {
    let host = docker_host.trim();
    if host.starts_with('/') {
        return Ok(format!("unix://{host}"));
    }
    let supported = ["unix://", "tcp://", "http://"];
    if supported.iter().any(|scheme| host.starts_with(scheme)) {
        return Ok(host.to_string());
    }
    Err(Error::Config(format!(
        "docker host {docker_host:?} is not supported: use unix:///path/to/docker.sock, tcp://host:port or http://host:port"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_socket_paths_become_unix_urls() {
        assert_eq!(
            normalize_host("/run/docker.sock").ok(),
            Some("unix:///run/docker.sock".to_string())
        );
        assert_eq!(
            normalize_host("tcp://127.0.0.1:2375").ok(),
            Some("tcp://127.0.0.1:2375".to_string())
        );
        assert!(normalize_host("ssh://node").is_err());
    }
}
