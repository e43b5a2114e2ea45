//! The CRI backend (containerd, CRI-O): the only code that talks to a CRI runtime, over the
//! gRPC API the kubelet itself uses, on the runtime's unix socket. It makes only the
//! kubelet's read calls: `Version`, `Status`, `ListPodSandbox`, `PodSandboxStatus`,
//! `ListContainers`, `ContainerStatus`, `ImageStatus`.

pub mod convert;
mod exited;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tonic::transport::Channel;

use super::{Scope, error_chain};
use crate::cri_api::image_service_client::ImageServiceClient;
use crate::cri_api::runtime_service_client::RuntimeServiceClient;
use crate::cri_api::{
    self, ContainerFilter, ContainerStatusRequest, ImageSpec, ImageStatusRequest,
    ListContainersRequest, ListPodSandboxRequest, PodSandboxFilter, PodSandboxStatusRequest,
    StatusRequest, VersionRequest, VersionResponse,
};
use crate::error::{Error, Result, RuntimeFailure};
use crate::kubelet::{POD_NAME_LABEL, POD_NAMESPACE_LABEL};
use crate::metrics::Metrics;
use crate::pod_ref::PodRef;
use crate::record::{Instance, PodRecord, State};
use convert::Answered;
use exited::Exited;

/// A lazily connected CRI client: the service starts and serves while the socket is missing,
/// and connects on first use, again after the runtime went away.
pub struct CriRuntime {
    socket: PathBuf,
    /// `CRI runtime at unix:///…`, as error messages name it.
    endpoint: String,
    timeout: Duration,
    connection: tokio::sync::Mutex<Option<Connected>>,
    /// Caps the calls in flight, so a storm of diagnoses cannot overload a sick runtime.
    calls: Semaphore,
    metrics: Arc<Metrics>,
    exited: std::sync::Mutex<Exited>,
}

/// What the runtime answered about one pod, and the instances of its exited containers
/// already known (their status is not asked again).
#[derive(Default)]
struct PodAnswer {
    answered: Answered,
    /// Containers asked about that the list showed exited: their instances are kept.
    asked_exited: HashSet<String>,
    kept: Vec<Instance>,
}

#[derive(Clone)]
struct Connected {
    channel: Channel,
    version: VersionResponse,
}

impl CriRuntime {
    /// `unix:///path` or a bare `/path`.
    pub fn new(
        endpoint: &str,
        timeout: Duration,
        concurrency: usize,
        metrics: Arc<Metrics>,
    ) -> Result<Self> {
        let socket = socket_path(endpoint)?;
        Ok(CriRuntime {
            endpoint: format!("CRI runtime at unix://{}", socket.display()),
            socket,
            timeout,
            connection: tokio::sync::Mutex::new(None),
            calls: Semaphore::new(concurrency.max(1)),
            metrics,
            exited: std::sync::Mutex::new(Exited::new(Instant::now())),
        })
    }

    /// How error messages and `/readyz` name the runtime.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The runtime's `Version` answer (its name prefixes container IDs).
    pub async fn version(&self) -> Result<VersionResponse, RuntimeFailure> {
        Ok(self.connected().await?.version)
    }

    /// The record of every pod in scope.
    pub async fn pod_records(
        &self,
        scope: Scope<'_>,
    ) -> Result<BTreeMap<PodRef, PodRecord>, RuntimeFailure> {
        let answers = self.answer_pods(scope).await?;
        let now = Instant::now();
        let converted: Vec<(PodRef, PodRecord, PodAnswer)> = answers
            .into_iter()
            .map(|(pod, answer)| (pod, convert::pod_record(&answer.answered), answer))
            .collect();
        // Converted first: the cache is held only while the new exited instances go in.
        let mut exited = self.exited();
        Ok(converted
            .into_iter()
            .map(|(pod, mut record, answer)| {
                for instance in &record.containers {
                    if matches!(instance.state, State::Exited { .. })
                        && answer.asked_exited.contains(&instance.id.id)
                    {
                        exited.keep(&pod, instance, now);
                    }
                }
                record.containers.extend(answer.kept);
                (pod, record)
            })
            .collect())
    }

    fn exited(&self) -> std::sync::MutexGuard<'_, Exited> {
        // The cache holds no invariant a panic elsewhere could break.
        self.exited
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The kubelet's calls for the pods in scope: sandboxes and containers listed by the
    /// pod's labels, then the verbose status of each. One that vanished between list and
    /// status is skipped.
    async fn answer_pods(
        &self,
        scope: Scope<'_>,
    ) -> Result<BTreeMap<PodRef, PodAnswer>, RuntimeFailure> {
        let connected = self.connected().await?;
        let runtime = RuntimeServiceClient::new(connected.channel.clone());
        let (mut sandbox_lister, mut container_lister) = (runtime.clone(), runtime.clone());
        let selector = label_selector(&scope);
        let (sandboxes, containers) = tokio::join!(
            self.call(sandbox_lister.list_pod_sandbox(ListPodSandboxRequest {
                filter: Some(PodSandboxFilter {
                    label_selector: selector.clone(),
                    ..PodSandboxFilter::default()
                }),
            })),
            self.call(container_lister.list_containers(ListContainersRequest {
                filter: Some(ContainerFilter {
                    label_selector: selector,
                    ..ContainerFilter::default()
                }),
            })),
        );
        let (sandboxes, containers) = (sandboxes?.items, containers?.containers);

        let mut pods: BTreeMap<PodRef, PodAnswer> = BTreeMap::new();
        let runtime_name = &connected.version.runtime_name;
        let in_scope = |labels: Option<&HashMap<String, String>>| {
            pod_of(labels?).filter(|pod| scope.contains(pod))
        };
        // Exited containers already known are not asked again.
        let containers: Vec<cri_api::Container> = {
            let now = Instant::now();
            let mut exited = self.exited();
            let listed = containers.iter().map(|c| c.id.as_str()).collect();
            exited.forget_unlisted(&scope, &listed);
            let mut asked = Vec::with_capacity(containers.len());
            for listed in containers {
                let kept = (listed.state == cri_api::ContainerState::ContainerExited as i32)
                    .then(|| exited.get(&listed.id, now))
                    .flatten();
                match (kept, in_scope(Some(&listed.labels))) {
                    (Some(instance), Some(pod)) => {
                        answer_for(&mut pods, pod, runtime_name).kept.push(instance)
                    }
                    (Some(_), None) => {}
                    (None, _) => asked.push(listed),
                }
            }
            asked
        };

        let sandbox_statuses = sandboxes.iter().map(|sandbox| {
            let mut runtime = runtime.clone();
            let id = sandbox.id.clone();
            async move {
                self.call(runtime.pod_sandbox_status(PodSandboxStatusRequest {
                    pod_sandbox_id: id,
                    verbose: true,
                }))
                .await
            }
        });
        let container_statuses = containers.iter().map(|container| {
            let mut runtime = runtime.clone();
            let id = container.id.clone();
            async move {
                self.call(runtime.container_status(ContainerStatusRequest {
                    container_id: id,
                    verbose: true,
                }))
                .await
            }
        });
        let (sandbox_statuses, container_statuses) =
            tokio::join!(join_all(sandbox_statuses), join_all(container_statuses));

        for status in sandbox_statuses.into_iter().filter_map(skip_vanished) {
            let status = status?;
            if let Some(pod) = in_scope(status.status.as_ref().map(|s| &s.labels)) {
                answer_for(&mut pods, pod, runtime_name)
                    .answered
                    .sandboxes
                    .push(status);
            }
        }
        for (listed, status) in containers.iter().zip(container_statuses) {
            let Some(status) = skip_vanished(status) else {
                continue;
            };
            let status = status?;
            if let Some(pod) = in_scope(status.status.as_ref().map(|s| &s.labels)) {
                let answer = answer_for(&mut pods, pod, runtime_name);
                if listed.state == cri_api::ContainerState::ContainerExited as i32 {
                    answer.asked_exited.insert(listed.id.clone());
                }
                let answered = &mut answer.answered;
                answered
                    .sandbox_ids
                    .insert(listed.id.clone(), listed.pod_sandbox_id.clone());
                answered.containers.push(status);
            }
        }
        self.add_images(&connected, &mut pods).await?;
        Ok(pods)
    }

    /// The image status of containers whose runtime keeps no `info.config` (CRI-O): the
    /// image's own Entrypoint, Cmd and Env are what set the spec's apart.
    async fn add_images(
        &self,
        connected: &Connected,
        pods: &mut BTreeMap<PodRef, PodAnswer>,
    ) -> Result<(), RuntimeFailure> {
        let wanted: BTreeSet<String> = pods
            .values()
            .flat_map(|answer| &answer.answered.containers)
            .filter(|container| {
                !container
                    .info
                    .get("info")
                    .is_some_and(|info| info.contains("\"config\""))
            })
            .filter_map(|container| container.status.as_ref())
            .map(|status| status.image_ref.clone())
            .filter(|image| !image.is_empty())
            .collect();
        if wanted.is_empty() {
            return Ok(());
        }
        let images = ImageServiceClient::new(connected.channel.clone());
        let statuses = wanted.iter().map(|image| {
            let mut images = images.clone();
            let request = ImageStatusRequest {
                image: Some(ImageSpec {
                    image: image.clone(),
                    ..ImageSpec::default()
                }),
                verbose: true,
            };
            async move { self.call(images.image_status(request)).await }
        });
        let statuses = join_all(statuses).await;
        let mut found = HashMap::new();
        for (image, status) in wanted.into_iter().zip(statuses) {
            match status {
                Ok(status) => {
                    found.insert(image, status);
                }
                Err(RuntimeFailure::Api { status: 404, .. }) => {
                    log::debug!("image {image} is gone")
                }
                Err(failure) => return Err(failure),
            }
        }
        for answered in pods.values_mut().map(|answer| &mut answer.answered) {
            for container in answered.containers.iter().filter_map(|c| c.status.as_ref()) {
                if let Some(image) = found.get(&container.image_ref) {
                    answered
                        .images
                        .insert(container.image_ref.clone(), image.clone());
                }
            }
        }
        Ok(())
    }

    /// The runtime's containers as it lists them (`containerCollector`).
    pub async fn containers(&self, all: bool) -> Result<Value, RuntimeFailure> {
        let connected = self.connected().await?;
        let mut runtime = RuntimeServiceClient::new(connected.channel);
        let filter = (!all).then(|| ContainerFilter {
            state: Some(cri_api::ContainerStateValue {
                state: cri_api::ContainerState::ContainerRunning as i32,
            }),
            ..ContainerFilter::default()
        });
        let listed = self
            .call(runtime.list_containers(ListContainersRequest { filter }))
            .await?;
        serde_json::to_value(listed.containers).map_err(|err| RuntimeFailure::BadAnswer {
            runtime: self.endpoint.clone(),
            detail: err.to_string(),
        })
    }

    /// `Version` and `Status` (`runtimeInfoCollector`).
    pub async fn info(&self) -> Result<Value, RuntimeFailure> {
        let connected = self.connected().await?;
        let mut runtime = RuntimeServiceClient::new(connected.channel);
        let status = self
            .call(runtime.status(StatusRequest { verbose: false }))
            .await?;
        Ok(json!({
            "runtime": "cri",
            "endpoint": format!("unix://{}", self.socket.display()),
            "version": connected.version,
            "status": status.status,
        }))
    }

    /// Whether the runtime answers `Version`.
    pub async fn ping(&self) -> Result<(), RuntimeFailure> {
        let connected = self.connected().await?;
        let mut runtime = RuntimeServiceClient::new(connected.channel);
        self.call(runtime.version(VersionRequest::default()))
            .await
            .map(drop)
    }

    /// A connected channel, connecting (and asking the runtime's name) if needed.
    async fn connected(&self) -> Result<Connected, RuntimeFailure> {
        let mut slot = self.connection.lock().await;
        if let Some(connected) = slot.as_ref() {
            return Ok(connected.clone());
        }
        let channel = match tokio::time::timeout(self.timeout, cri_api::connect(&self.socket)).await
        {
            Ok(Ok(channel)) => channel,
            Ok(Err(err)) => {
                return Err(self.counted(RuntimeFailure::Unreachable {
                    runtime: self.endpoint.clone(),
                    detail: error_chain(&err),
                }));
            }
            Err(_) => {
                return Err(self.counted(RuntimeFailure::Timeout {
                    runtime: self.endpoint.clone(),
                    timeout: self.timeout,
                }));
            }
        };
        let mut runtime = RuntimeServiceClient::new(channel.clone());
        let version = self
            .call(runtime.version(VersionRequest::default()))
            .await?;
        log::info!(
            "connected to {} ({} {}, CRI {})",
            self.endpoint,
            version.runtime_name,
            version.runtime_version,
            version.runtime_api_version
        );
        let connected = Connected { channel, version };
        *slot = Some(connected.clone());
        Ok(connected)
    }

    /// Runs one call within the runtime timeout and the concurrency cap, and phrases its
    /// failure.
    async fn call<T>(
        &self,
        call: impl Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T, RuntimeFailure> {
        // Waiting for a turn counts against the timeout too: the caller waits either way.
        let limited = async {
            let _turn = self.calls.acquire().await;
            call.await
        };
        let failure = match tokio::time::timeout(self.timeout, limited).await {
            Ok(Ok(response)) => return Ok(response.into_inner()),
            Ok(Err(status)) => self.phrase(&status),
            Err(_) => RuntimeFailure::Timeout {
                runtime: self.endpoint.clone(),
                timeout: self.timeout,
            },
        };
        if matches!(failure, RuntimeFailure::Unreachable { .. }) {
            // The runtime may come back as another process: connect afresh next time.
            if let Ok(mut slot) = self.connection.try_lock() {
                *slot = None;
            }
        }
        Err(self.counted(failure))
    }

    fn counted(&self, failure: RuntimeFailure) -> RuntimeFailure {
        self.metrics.runtime_error(&failure);
        failure
    }

    fn phrase(&self, status: &tonic::Status) -> RuntimeFailure {
        let runtime = self.endpoint.clone();
        match status.code() {
            tonic::Code::Unavailable | tonic::Code::Unknown if status.message().is_empty() => {
                RuntimeFailure::Unreachable {
                    runtime,
                    detail: error_chain(status),
                }
            }
            tonic::Code::Unavailable => RuntimeFailure::Unreachable {
                runtime,
                detail: status.message().to_string(),
            },
            tonic::Code::DeadlineExceeded => RuntimeFailure::Timeout {
                runtime,
                timeout: self.timeout,
            },
            code => RuntimeFailure::Api {
                runtime,
                // The HTTP status a gRPC code stands for, so that NotFound reads as 404.
                status: match code {
                    tonic::Code::NotFound => 404,
                    tonic::Code::InvalidArgument => 400,
                    tonic::Code::Unimplemented => 501,
                    _ => 500,
                },
                message: format!("{code:?}: {}", status.message()),
            },
        }
    }
}

fn answer_for<'a>(
    pods: &'a mut BTreeMap<PodRef, PodAnswer>,
    pod: PodRef,
    runtime_name: &str,
) -> &'a mut PodAnswer {
    pods.entry(pod).or_insert_with(|| PodAnswer {
        answered: Answered {
            runtime_name: runtime_name.to_string(),
            ..Answered::default()
        },
        ..PodAnswer::default()
    })
}

/// Skips a status call that found nothing (the sandbox or container was removed after the
/// list, as the kubelet skips it).
fn skip_vanished<T>(outcome: Result<T, RuntimeFailure>) -> Option<Result<T, RuntimeFailure>> {
    match outcome {
        Err(RuntimeFailure::Api { status: 404, .. }) => None,
        other => Some(other),
    }
}

/// The label selector of the list calls for this scope.
fn label_selector(scope: &Scope) -> HashMap<String, String> {
    match scope {
        Scope::Pod(pod) => HashMap::from([
            (POD_NAMESPACE_LABEL.to_string(), pod.namespace.clone()),
            (POD_NAME_LABEL.to_string(), pod.name.clone()),
        ]),
        Scope::Namespace(namespace) => {
            HashMap::from([(POD_NAMESPACE_LABEL.to_string(), namespace.to_string())])
        }
        Scope::Node => HashMap::new(),
    }
}

fn pod_of(labels: &HashMap<String, String>) -> Option<PodRef> {
    Some(PodRef {
        namespace: labels.get(POD_NAMESPACE_LABEL)?.clone(),
        name: labels.get(POD_NAME_LABEL)?.clone(),
    })
}

/// `unix:///path` or `/path`: CRI runtimes listen on unix sockets only.
pub fn socket_path(endpoint: &str) -> Result<PathBuf> {
    let endpoint = endpoint.trim();
    let path = endpoint.strip_prefix("unix://").unwrap_or(endpoint);
    if path.starts_with('/') {
        return Ok(PathBuf::from(path));
    }
    Err(Error::Config(format!(
        "runtime endpoint {endpoint:?} is not supported: use unix:///path/to/the/runtime.sock"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_unix_sockets() {
        assert_eq!(
            socket_path("unix:///run/containerd/containerd.sock").ok(),
            Some(PathBuf::from("/run/containerd/containerd.sock"))
        );
        assert_eq!(
            socket_path("/var/run/crio/crio.sock").ok(),
            Some(PathBuf::from("/var/run/crio/crio.sock"))
        );
        assert!(socket_path("tcp://127.0.0.1:1234").is_err());
    }
}
