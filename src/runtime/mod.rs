//! The runtime backends: the only code that talks to a container runtime. Each one reads (and
//! never writes) and turns its runtime's answers into the neutral `record`, so nothing after it
//! knows which runtime spoke. `Runtime` is the node's runtime, chosen once (see `choose`).

pub mod cri;
pub mod docker;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;
use tokio::sync::OnceCell;

use crate::docker_context::DockerContext;
use crate::error::{Result, RuntimeFailure};
use crate::metrics::Metrics;
use crate::pod_ref::PodRef;
use crate::record::PodRecord;
use crate::settings::Settings;
use cri::CriRuntime;
use docker::DockerRuntime;

/// Which pods a request is about.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    Pod(&'a PodRef),
    Namespace(&'a str),
    Node,
}

impl Scope<'_> {
    pub fn contains(&self, pod: &PodRef) -> bool {
        match self {
            Scope::Pod(wanted) => *wanted == pod,
            Scope::Namespace(namespace) => pod.namespace == *namespace,
            Scope::Node => true,
        }
    }
}

/// A runtime the collector can read pods from.
pub enum Backend {
    Docker(DockerRuntime),
    /// Boxed: its cache of exited containers makes it twice Docker's size.
    Cri(Box<CriRuntime>),
}

/// The well-known sockets, in the order the runtime is looked for when none is named: the
/// kubelet's CRI endpoints as crictl probes them, except that a cri-dockerd node is read
/// through Docker (its inspect output holds more), and a plain Docker socket comes last (a
/// node may run Docker for builds beside the containerd its kubelet uses).
pub const WELL_KNOWN: [(Kind, &str); 4] = [
    (Kind::CriDockerd, "/var/run/cri-dockerd.sock"),
    (Kind::Cri, "/run/containerd/containerd.sock"),
    (Kind::Cri, "/var/run/crio/crio.sock"),
    (Kind::Docker, "/var/run/docker.sock"),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Docker,
    /// cri-dockerd's CRI socket: the pods are in the Docker daemon beside it.
    CriDockerd,
    Cri,
}

/// Which runtime to read, as the operator said it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuntimeChoice {
    /// A Docker daemon: `unix:///path`, `/path`, `tcp://host:port` or `http://host:port`.
    Docker(String),
    /// The Docker daemon of a Docker context (no `--docker-host`, as the docker CLI).
    DockerContext(DockerContext),
    /// A CRI runtime's socket: `unix:///path` or `/path`.
    Cri(String),
    /// The first of these sockets that answers as its kind.
    Discover(Vec<(Kind, PathBuf)>),
}

impl RuntimeChoice {
    pub fn well_known() -> Self {
        RuntimeChoice::Discover(
            WELL_KNOWN
                .iter()
                .map(|(kind, path)| (*kind, PathBuf::from(path)))
                .collect(),
        )
    }
}

/// The node's runtime: named by the operator, or found on first use (and looked for again
/// on every call until one answers, so the service serves and recovers while none is up).
pub struct Runtime {
    choice: RuntimeChoice,
    backend: OnceCell<Backend>,
    settings: Settings,
    metrics: Arc<Metrics>,
}

impl Runtime {
    pub fn new(settings: &Settings, metrics: Arc<Metrics>) -> Result<Self> {
        let backend = OnceCell::new();
        match &settings.runtime {
            RuntimeChoice::Docker(host) => {
                let _ = backend.set(Backend::Docker(DockerRuntime::new(
                    host,
                    settings,
                    metrics.clone(),
                )?));
            }
            RuntimeChoice::DockerContext(context) => {
                let docker = DockerRuntime::new(&context.host, settings, metrics.clone())?;
                let _ = backend.set(Backend::Docker(docker.from_context(&context.name)));
            }
            RuntimeChoice::Cri(endpoint) => {
                let _ = backend.set(Backend::Cri(Box::new(cri_runtime(
                    endpoint, settings, &metrics,
                )?)));
            }
            RuntimeChoice::Discover(_) => {}
        }
        Ok(Runtime {
            choice: settings.runtime.clone(),
            backend,
            settings: settings.clone(),
            metrics,
        })
    }

    /// The backend, found first if it was not named.
    pub async fn backend(&self) -> Result<&Backend, RuntimeFailure> {
        self.backend.get_or_try_init(|| self.discover()).await
    }

    /// What the operator named, or where the collector looks.
    pub fn describe_choice(&self) -> String {
        match &self.choice {
            RuntimeChoice::Docker(host) => format!("docker daemon at {host}"),
            RuntimeChoice::DockerContext(context) => format!(
                "docker daemon at {} (Docker context {:?}, from {})",
                context.host, context.name, context.chosen_by
            ),
            RuntimeChoice::Cri(endpoint) => format!("CRI runtime at {endpoint}"),
            RuntimeChoice::Discover(sockets) => {
                let paths: Vec<String> = sockets
                    .iter()
                    .map(|(_, path)| path.display().to_string())
                    .collect();
                format!("the first runtime that answers of {}", paths.join(", "))
            }
        }
    }

    async fn discover(&self) -> Result<Backend, RuntimeFailure> {
        let RuntimeChoice::Discover(sockets) = &self.choice else {
            // A named runtime was set at construction; only a failed one lands here.
            return Err(RuntimeFailure::Unreachable {
                runtime: self.describe_choice(),
                detail: "not configured".into(),
            });
        };
        for (kind, path) in sockets {
            if !path.exists() {
                continue;
            }
            let found = match kind {
                // The pods of a cri-dockerd node are in the Docker daemon beside it.
                Kind::CriDockerd => docker_beside(path, sockets)
                    .and_then(|docker| self.docker(&docker))
                    .map(Backend::Docker),
                Kind::Docker => self
                    .docker(&format!("unix://{}", path.display()))
                    .map(Backend::Docker),
                Kind::Cri => {
                    let endpoint = format!("unix://{}", path.display());
                    let cri = cri_runtime(&endpoint, &self.settings, &self.metrics).ok();
                    match cri {
                        // A containerd without its CRI plugin (Docker's own) is not the
                        // kubelet's runtime.
                        Some(cri) => match cri.ping().await {
                            Ok(()) => Some(Backend::Cri(Box::new(cri))),
                            Err(failure) => {
                                log::info!(
                                    "{} is not the node's runtime: {failure}",
                                    path.display()
                                );
                                None
                            }
                        },
                        None => None,
                    }
                }
            };
            if let Some(backend) = found {
                log::info!("runtime found: {}", backend.endpoint());
                return Ok(backend);
            }
        }
        Err(self.counted(RuntimeFailure::Unreachable {
            runtime: "the node's container runtime".into(),
            detail: format!(
                "none answers at {} (and neither --docker-host, --runtime-endpoint nor a Docker \
                 context names one)",
                self.describe_choice()
                    .trim_start_matches("the first runtime that answers of ")
            ),
        }))
    }

    fn docker(&self, host: &str) -> Option<DockerRuntime> {
        DockerRuntime::new(host, &self.settings, self.metrics.clone())
            .map_err(|err| log::warn!("{err}"))
            .ok()
    }

    fn counted(&self, failure: RuntimeFailure) -> RuntimeFailure {
        self.metrics.runtime_error(&failure);
        failure
    }

    pub async fn pod_records(
        &self,
        scope: Scope<'_>,
    ) -> Result<BTreeMap<PodRef, PodRecord>, RuntimeFailure> {
        match self.backend().await? {
            Backend::Docker(docker) => docker.pod_records(scope).await,
            Backend::Cri(cri) => cri.pod_records(scope).await,
        }
    }

    /// The runtime's containers as it lists them; stopped ones too when `all`.
    pub async fn containers(&self, all: bool) -> Result<Value, RuntimeFailure> {
        match self.backend().await? {
            Backend::Docker(docker) => {
                let listed = docker.containers(all).await?;
                serde_json::to_value(listed).map_err(|err| RuntimeFailure::BadAnswer {
                    runtime: docker.runtime_name(),
                    detail: err.to_string(),
                })
            }
            Backend::Cri(cri) => cri.containers(all).await,
        }
    }

    /// The runtime's name, version and status.
    pub async fn info(&self) -> Result<Value, RuntimeFailure> {
        match self.backend().await? {
            Backend::Docker(docker) => {
                let (version, info) = tokio::try_join!(docker.version(), docker.info())?;
                Ok(serde_json::json!({
                    "runtime": "docker",
                    "endpoint": docker.host(),
                    "version": version,
                    "info": info,
                }))
            }
            Backend::Cri(cri) => cri.info().await,
        }
    }

    /// Docker's `/info`; a CRI node has none.
    pub async fn docker_info(&self) -> Result<Value, RuntimeFailure> {
        match self.backend().await? {
            Backend::Docker(docker) => {
                let info = docker.info().await?;
                serde_json::to_value(info).map_err(|err| RuntimeFailure::BadAnswer {
                    runtime: docker.runtime_name(),
                    detail: err.to_string(),
                })
            }
            Backend::Cri(cri) => {
                let version = cri.version().await?;
                Err(RuntimeFailure::Unsupported {
                    runtime: cri.endpoint().to_string(),
                    detail: format!(
                        "this node runs {} {}, not Docker: ask runtimeInfoCollector",
                        version.runtime_name, version.runtime_version
                    ),
                })
            }
        }
    }

    /// Whether the runtime answers; which one it is (name, version, endpoint) when it does.
    /// The answer is also exported as `pod_detail_collector_runtime_info`.
    pub async fn ping(&self) -> Result<Value, RuntimeFailure> {
        let (runtime, version, endpoint, event_index) = match self.backend().await? {
            Backend::Docker(docker) => {
                docker.ping().await?;
                let version = docker.version().await?;
                (
                    "docker".to_string(),
                    version.version.unwrap_or_default(),
                    docker.runtime_name(),
                    docker.event_index_state(),
                )
            }
            Backend::Cri(cri) => {
                cri.ping().await?;
                let version = cri.version().await?;
                (
                    version.runtime_name,
                    version.runtime_version,
                    cri.endpoint().to_string(),
                    None,
                )
            }
        };
        self.metrics.runtime(&runtime, &version, &endpoint);
        let mut ready = serde_json::json!({
            "runtime": runtime,
            "version": version,
            "endpoint": endpoint,
        });
        if let Some(state) = event_index {
            ready["event_index"] = state.into();
        }
        Ok(ready)
    }
}

impl Backend {
    pub fn endpoint(&self) -> String {
        match self {
            Backend::Docker(docker) => docker.runtime_name(),
            Backend::Cri(cri) => cri.endpoint().to_string(),
        }
    }
}

fn cri_runtime(endpoint: &str, settings: &Settings, metrics: &Arc<Metrics>) -> Result<CriRuntime> {
    CriRuntime::new(
        endpoint,
        settings.runtime_timeout,
        settings.runtime_concurrency,
        metrics.clone(),
    )
}

/// The Docker socket of a cri-dockerd node: the well-known one in the list.
fn docker_beside(_cri_dockerd: &Path, sockets: &[(Kind, PathBuf)]) -> Option<String> {
    sockets
        .iter()
        .find(|(kind, path)| *kind == Kind::Docker && path.exists())
        .map(|(_, path)| format!("unix://{}", path.display()))
}

/// The message of an error and of its causes, so "connection refused" is not lost behind
/// "error trying to connect".
pub(crate) fn error_chain(err: &dyn std::error::Error) -> String {
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
