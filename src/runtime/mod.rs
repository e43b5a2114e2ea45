//! The only code that talks to the Docker daemon. It reads and never writes: list, inspect
//! (containers and images), ping and version.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::time::Duration;

use bollard::Docker;
use bollard::errors::Error as DockerError;
use bollard::models::{ContainerInspectResponse, ContainerSummary, SystemInfo};
use bollard::query_parameters::ListContainersOptionsBuilder;
use futures_util::future::join_all;
use tokio::sync::{Mutex, Semaphore};

use crate::error::{Error, PodRef, Result, RuntimeFailure};
use crate::metrics::Metrics;
use crate::rebuild::PodRecord;
use crate::rebuild::kubelet::{POD_NAME_LABEL, POD_NAMESPACE_LABEL};
use std::sync::Arc;

/// A lazily connected Docker client. The service must start and serve while the daemon is
/// down, so the connection (and API version negotiation) happens on first use and is retried
/// on every call until it succeeds.
pub struct DockerRuntime {
    host: String,
    timeout: Duration,
    client: Mutex<Option<Docker>>,
    /// Caps the calls in flight, so a storm of diagnoses cannot overload a sick daemon.
    calls: Semaphore,
    metrics: Arc<Metrics>,
}

impl DockerRuntime {
    /// Accepts `unix:///path`, a bare `/path`, `tcp://host:port` or `http://host:port`.
    pub fn new(
        docker_host: &str,
        timeout: Duration,
        max_calls: usize,
        metrics: Arc<Metrics>,
    ) -> Result<Self> {
        let host = normalize_host(docker_host)?;
        Ok(DockerRuntime {
            host,
            timeout,
            client: Mutex::new(None),
            calls: Semaphore::new(max_calls.max(1)),
            metrics,
        })
    }

    /// The daemon address, as shown in error messages.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Whether the daemon answers a ping.
    pub async fn ping(&self) -> Result<(), RuntimeFailure> {
        let docker = self.client().await?;
        self.bounded(docker.ping()).await.map(drop)
    }

    /// Every container (any state) the kubelet made for the pod, inspected, with the images
    /// they run. A container removed between listing and inspecting is skipped.
    pub async fn pod_record(&self, pod: &PodRef) -> Result<PodRecord, RuntimeFailure> {
        let selector = vec![
            format!("{POD_NAMESPACE_LABEL}={}", pod.namespace),
            format!("{POD_NAME_LABEL}={}", pod.name),
        ];
        let mut records = self.pod_records(selector).await?;
        Ok(records.remove(pod).unwrap_or_default())
    }

    /// Every pod with a container on this node (optionally in one namespace), from one list
    /// call, whatever the number of pods.
    pub async fn node_records(
        &self,
        namespace: Option<&str>,
    ) -> Result<BTreeMap<PodRef, PodRecord>, RuntimeFailure> {
        let selector = match namespace {
            Some(namespace) => format!("{POD_NAMESPACE_LABEL}={namespace}"),
            None => POD_NAMESPACE_LABEL.to_string(),
        };
        self.pod_records(vec![selector]).await
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

    /// Lists the containers matching every label selector (all states), inspects them and
    /// their images concurrently, and sorts them into pods.
    async fn pod_records(
        &self,
        label_selectors: Vec<String>,
    ) -> Result<BTreeMap<PodRef, PodRecord>, RuntimeFailure> {
        let docker = self.client().await?;
        let filters = HashMap::from([("label".to_string(), label_selectors)]);
        let options = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        let listed = self.bounded(docker.list_containers(Some(options))).await?;

        let inspects = listed
            .iter()
            .filter_map(|summary| summary.id.as_deref())
            .map(|id| self.bounded(docker.inspect_container(id, None)));
        let mut records: BTreeMap<PodRef, PodRecord> = BTreeMap::new();
        for inspected in join_all(inspects).await {
            let container = match inspected {
                Ok(container) => container,
                Err(RuntimeFailure::Api { status: 404, .. }) => {
                    log::debug!("a container vanished between list and inspect");
                    continue;
                }
                Err(failure) => return Err(failure),
            };
            let Some(pod) = pod_of(&container) else {
                continue;
            };
            records.entry(pod).or_default().containers.push(container);
        }

        let image_ids: BTreeSet<String> = records
            .values()
            .flat_map(|record| &record.containers)
            .filter_map(|container| container.image.clone())
            .collect();
        let image_inspects = image_ids
            .iter()
            .map(|id| self.bounded(docker.inspect_image(id)));
        let mut images = HashMap::with_capacity(image_ids.len());
        for (id, inspected) in image_ids.iter().zip(join_all(image_inspects).await) {
            match inspected {
                Ok(image) => {
                    images.insert(id.as_str(), image);
                }
                // An image removed while its container stays: the rebuild falls back to the ID.
                Err(RuntimeFailure::Api { status: 404, .. }) => {
                    log::debug!("image {id} is gone");
                }
                Err(failure) => return Err(failure),
            }
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

    /// A connected client, connecting (and negotiating the API version) if needed.
    async fn client(&self) -> Result<Docker, RuntimeFailure> {
        let mut slot = self.client.lock().await;
        if let Some(docker) = slot.as_ref() {
            return Ok(docker.clone());
        }
        let docker = Docker::connect_with_host(&self.host)
            .map_err(|err| self.failure(err))?
            .with_timeout(self.timeout + Duration::from_secs(1));
        // Daemons refuse clients newer than themselves (Docker 20.10 speaks API 1.41) and
        // recent ones refuse very old clients, so the version is agreed on, not fixed.
        let docker = self.bounded(docker.negotiate_version()).await?;
        log::info!(
            "connected to docker daemon at {} (API {})",
            self.host,
            docker.client_version()
        );
        *slot = Some(docker.clone());
        Ok(docker)
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
        self.metrics.runtime_error(&failure);
        if matches!(failure, RuntimeFailure::Unreachable { .. }) {
            // The daemon may come back as another version: connect afresh next time.
            if let Ok(mut slot) = self.client.try_lock() {
                *slot = None;
            }
        }
        Err(failure)
    }

    fn failure(&self, err: DockerError) -> RuntimeFailure {
        let host = self.host.clone();
        match err {
            DockerError::RequestTimeoutError => RuntimeFailure::Timeout {
                host,
                timeout: self.timeout,
            },
            DockerError::DockerResponseServerError {
                status_code,
                message,
            } => RuntimeFailure::Api {
                host,
                status: status_code,
                message,
            },
            DockerError::SocketNotFoundError(path) => RuntimeFailure::Unreachable {
                host,
                detail: format!("no socket at {path}"),
            },
            DockerError::JsonDataError { .. }
            | DockerError::JsonSerdeError { .. }
            | DockerError::APIVersionParseError { .. }
            | DockerError::StrParseError { .. } => RuntimeFailure::BadAnswer {
                host,
                detail: err.to_string(),
            },
            other => RuntimeFailure::Unreachable {
                host,
                detail: error_chain(&other),
            },
        }
    }
}

/// The message of an error and of its causes, so "connection refused" is not lost behind
/// "error trying to connect".
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
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
fn normalize_host(docker_host: &str) -> Result<String> {
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
