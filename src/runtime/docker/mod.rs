//! The Docker backend (dockershim and cri-dockerd nodes): the only code that talks to the
//! Docker daemon. It reads and never writes: list, inspect (containers and images), events,
//! ping, version and info.

pub mod clock;
pub mod convert;
pub mod index;
mod wire;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bollard::Docker;
use bollard::errors::Error as DockerError;
use bollard::models::{
    ContainerInspectResponse, ContainerStateStatusEnum, ContainerSummary, ImageInspect, SystemInfo,
    SystemVersion,
};
use bollard::query_parameters::ListContainersOptionsBuilder;
use futures_util::future::join_all;
use tokio::sync::{Mutex, Semaphore};

use super::{Scope, error_chain};
use crate::error::{Error, Result, RuntimeFailure};
use crate::kubelet::{POD_NAME_LABEL, POD_NAMESPACE_LABEL};
use crate::metrics::Metrics;
use crate::pod_ref::PodRef;
use crate::record::PodRecord;
use crate::settings::Settings;
use clock::{CalibrationError, DaemonClock, Observed};
use convert::Inspected;
use index::{CatchUp, Listed, Lookup, OVERLAP_NANOS, PodIndex, parse_events};
use wire::{Conn, Wire};

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
    calls: Arc<Semaphore>,
    /// With the event index (`--event-index`, on by default for `serve`).
    events: Option<Arc<EventIndex>>,
    metrics: Arc<Metrics>,
}

impl DockerRuntime {
    /// Accepts `unix:///path`, a bare `/path`, `tcp://host:port` or `http://host:port`.
    pub fn new(host: &str, settings: &Settings, metrics: Arc<Metrics>) -> Result<Self> {
        let host = normalize_host(host)?;
        let calls = Arc::new(Semaphore::new(settings.runtime_concurrency.max(1)));
        let events = settings
            .event_index
            .then(|| Wire::new(&host))
            .flatten()
            .map(|wire| {
                Arc::new(EventIndex {
                    state: Mutex::new(IndexState::default()),
                    clock: Arc::new(DaemonClock::new()),
                    wire,
                    pinger: Mutex::new(None),
                    calibrating: AtomicBool::new(false),
                    paused_until: std::sync::Mutex::new(None),
                    timeout: settings.runtime_timeout,
                    calls: calls.clone(),
                    metrics: metrics.clone(),
                    runtime: format!("docker daemon at {host}"),
                })
            });
        Ok(DockerRuntime {
            host,
            context: None,
            timeout: settings.runtime_timeout,
            client: std::sync::Mutex::new(None),
            calls,
            events,
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

    /// Whether the daemon answers a ping. With the event index, also starts learning the
    /// daemon's clock, so that the first requests find it known.
    pub async fn ping(&self) -> Result<(), RuntimeFailure> {
        let docker = self.client().await?;
        self.bounded(docker.ping()).await?;
        if let Some(events) = &self.events {
            events.warm();
        }
        Ok(())
    }

    /// What `/readyz` says of the event index: `ready` once it can answer, `reading the
    /// daemon's clock` in the seconds after start (requests are answered from lists), `paused`
    /// while the events cannot be followed; `None` without it.
    pub fn event_index_state(&self) -> Option<&'static str> {
        let events = self.events.as_ref()?;
        Some(if events.paused() {
            "paused"
        } else if events
            .clock
            .bounds()
            .is_none_or(|bounds| bounds.width() > MAX_CLOCK_WIDTH)
        {
            "reading the daemon's clock"
        } else {
            "ready"
        })
    }

    /// The record of every pod in scope.
    pub async fn pod_records(
        &self,
        scope: Scope<'_>,
    ) -> Result<BTreeMap<PodRef, PodRecord>, RuntimeFailure> {
        let requested_at = self.events.as_ref().map(|events| events.clock.local());
        let docker = self.client().await?;
        if let (Some(events), Some(requested_at)) = (&self.events, requested_at) {
            // A catch-up waits until the daemon's clock has passed the request; meanwhile the
            // containers the index last knew to be live are inspected. Made after the request
            // arrived, such an inspect is as fresh as the list path's.
            let early_ids = events.live_members(&scope);
            let early = early_ids
                .iter()
                .map(|id| self.bounded(docker.inspect_container(id, None)));
            let early = join_all(early);
            let lookup = events.lookup(&docker, scope, requested_at);
            tokio::pin!(early, lookup);
            let mut early_done = None;
            let lookup = loop {
                tokio::select! {
                    lookup = &mut lookup => break lookup,
                    inspected = &mut early, if early_done.is_none() => early_done = Some(inspected),
                }
            };
            if let Some(lookup) = lookup? {
                self.metrics.docker_lookup("event_index");
                let early = match early_done {
                    Some(inspected) => inspected,
                    None => early.await,
                };
                let early = early_ids.iter().cloned().zip(early).collect();
                return self
                    .indexed_records(&docker, events, scope, lookup, early)
                    .await;
            }
            // When the index cannot answer, the list path does not wait for these, but they
            // finish beside it: a call dropped half-way would give its turn back while the
            // daemon still works on it.
            let (listed, _) = tokio::join!(self.listed_records(&docker, scope), async {
                if early_done.is_none() {
                    early.await;
                }
            });
            return listed;
        }
        self.listed_records(&docker, scope).await
    }

    /// The list path: the pods' containers listed by label, then every one inspected.
    async fn listed_records(
        &self,
        docker: &Docker,
        scope: Scope<'_>,
    ) -> Result<BTreeMap<PodRef, PodRecord>, RuntimeFailure> {
        self.metrics.docker_lookup("list");
        let inspected = self.inspect_pods(docker, scope).await?;
        Ok(inspected
            .into_iter()
            .map(|(pod, inspected)| (pod, convert::pod_record(&inspected)))
            .collect())
    }

    /// The records of the pods in scope from what the index says: cached records of exited
    /// containers, live inspects of the others (and of the images they run, unless cached).
    async fn indexed_records(
        &self,
        docker: &Docker,
        events: &EventIndex,
        scope: Scope<'_>,
        lookup: Lookup,
        mut early: HashMap<String, Result<ContainerInspectResponse, RuntimeFailure>>,
    ) -> Result<BTreeMap<PodRef, PodRecord>, RuntimeFailure> {
        // Members the catch-up added (or whose cached record it dropped) are inspected now.
        let inspects = lookup.live.iter().map(|id| {
            let early = early.remove(id);
            async move {
                match early {
                    Some(inspected) => inspected,
                    None => self.bounded(docker.inspect_container(id, None)).await,
                }
            }
        });
        let mut live = Vec::with_capacity(lookup.live.len());
        for (id, inspected) in lookup.live.iter().zip(join_all(inspects).await) {
            match inspected {
                Ok(container) => live.push((id, container)),
                // Removed: skipped until its `destroy` event takes it out of the index.
                Err(RuntimeFailure::Api { status: 404, .. }) => {
                    log::debug!("container {id} vanished between lookup and inspect");
                }
                Err(failure) => return Err(failure),
            }
        }
        let wanted: BTreeSet<String> = live
            .iter()
            .filter_map(|(_, container)| container.image.clone())
            .collect();
        let images = self
            .cached_images(docker, events, wanted, lookup.image_epoch)
            .await?;

        let mut pieces: Vec<(&str, PodRef, PodRecord)> = lookup
            .cached
            .iter()
            .map(|(id, pod, record)| (id.as_str(), pod.clone(), record.clone()))
            .collect();
        let mut exited = Vec::new();
        for (id, container) in &live {
            // The labels are read again from the inspect: the index may be a moment old.
            let Some(pod) = pod_of(container).filter(|pod| scope.contains(pod)) else {
                continue;
            };
            let image = container
                .image
                .as_deref()
                .and_then(|image| images.get(image))
                .map(|image| &**image);
            let mut piece = PodRecord::default();
            convert::add_container(&mut piece, container, image);
            if has_exited(container) {
                exited.push((id.as_str(), piece.clone()));
            }
            pieces.push((id.as_str(), pod, piece));
        }
        if !exited.is_empty() {
            let mut state = events.state.lock().await;
            for (id, piece) in exited {
                state.index.remember_exited(id, piece, &lookup);
            }
        }
        pieces.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let mut records: BTreeMap<PodRef, PodRecord> = BTreeMap::new();
        for (_, pod, piece) in pieces {
            let record = records.entry(pod).or_default();
            record.sandboxes.extend(piece.sandboxes);
            record.containers.extend(piece.containers);
        }
        Ok(records)
    }

    /// Image inspects, from the index's cache where it has them.
    async fn cached_images(
        &self,
        docker: &Docker,
        events: &EventIndex,
        ids: BTreeSet<String>,
        image_epoch: u64,
    ) -> Result<HashMap<String, Arc<ImageInspect>>, RuntimeFailure> {
        let mut images = HashMap::with_capacity(ids.len());
        let mut wanted = Vec::new();
        {
            let state = events.state.lock().await;
            for id in ids {
                match state.index.image(&id) {
                    Some(image) => {
                        images.insert(id, image.clone());
                    }
                    None => wanted.push(id),
                }
            }
        }
        if wanted.is_empty() {
            return Ok(images);
        }
        let inspected = self
            .inspect_images(docker, wanted.into_iter().collect())
            .await?;
        let mut state = events.state.lock().await;
        for (id, image) in inspected {
            let image = Arc::new(image);
            state.index.remember_image(&id, image.clone(), image_epoch);
            images.insert(id, image);
        }
        Ok(images)
    }

    /// Every container (any state) the kubelet made for the pods in scope, from a list call,
    /// inspected, with the images they run, sorted into pods. A container removed between
    /// listing and inspecting is skipped. Nothing cached is used.
    async fn inspect_pods(
        &self,
        docker: &Docker,
        scope: Scope<'_>,
    ) -> Result<BTreeMap<PodRef, Inspected>, RuntimeFailure> {
        let members = self.listed_members(docker, scope).await?;

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
            self.inspect_images(docker, listed_images)
        );
        let mut images = images?;

        let mut records: BTreeMap<PodRef, Inspected> = BTreeMap::new();
        for (member, inspected) in members.iter().zip(inspected) {
            let container = match inspected {
                Ok(container) => container,
                Err(RuntimeFailure::Api { status: 404, .. }) => {
                    log::debug!("container {} vanished between list and inspect", member.id);
                    continue;
                }
                Err(failure) => return Err(failure),
            };
            // The labels are read again from the inspect: the list may be a moment old.
            if let Some(pod) = pod_of(&container).filter(|pod| scope.contains(pod)) {
                records.entry(pod).or_default().containers.push(container);
            }
        }

        // Images the list did not name.
        let unseen: BTreeSet<String> = records
            .values()
            .flat_map(|record| &record.containers)
            .filter_map(|container| container.image.clone())
            .filter(|id| !images.contains_key(id))
            .collect();
        if !unseen.is_empty() {
            images.extend(self.inspect_images(docker, unseen).await?);
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

    /// Inspects each image once. A missing image is left out (the rebuild falls back to the
    /// image ID).
    async fn inspect_images(
        &self,
        docker: &Docker,
        ids: BTreeSet<String>,
    ) -> Result<HashMap<String, ImageInspect>, RuntimeFailure> {
        let ids: Vec<String> = ids.into_iter().collect();
        let inspects = ids.iter().map(|id| self.bounded(docker.inspect_image(id)));
        let inspected = join_all(inspects).await;
        let mut images = HashMap::with_capacity(ids.len());
        for (id, inspected) in ids.into_iter().zip(inspected) {
            match inspected {
                Ok(image) => {
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

/// The clock is re-read once drift may have widened what is known of it past this.
const RECALIBRATE_WIDTH: i64 = 1_000_000;
/// A catch-up waits for the daemon's clock to pass the request's time, at most as long as the
/// clock is uncertain: past this, requests use the list until the clock is read again.
const MAX_CLOCK_WIDTH: i64 = 10_000_000;
/// A catch-up that takes this much longer than its wait lags: the list answers instead.
const EVENTS_LAG: Duration = Duration::from_millis(250);
/// After the events API failed, requests use the list for this long before trying again.
const PAUSE: Duration = Duration::from_secs(30);
/// When the daemon cannot tell its time (no `Date` header), for this long.
const LONG_PAUSE: Duration = Duration::from_secs(300);

/// The event index and what keeps it exact: the daemon's clock (`clock`), and one connection
/// kept open to the daemon for the event reads and lists (`wire`; when it closes, the daemon
/// may have restarted and lost its event log, so the index is rebuilt).
struct EventIndex {
    state: Mutex<IndexState>,
    clock: Arc<DaemonClock>,
    wire: Wire,
    /// The connection the clock is read on (pings run beside event reads).
    pinger: Mutex<Option<Conn>>,
    calibrating: AtomicBool,
    /// Until when the list answers because the events API failed.
    paused_until: std::sync::Mutex<Option<std::time::Instant>>,
    timeout: Duration,
    calls: Arc<Semaphore>,
    metrics: Arc<Metrics>,
    runtime: String,
}

#[derive(Default)]
struct IndexState {
    index: PodIndex,
    /// The connection the index is kept on.
    conn: Option<Conn>,
}

/// Why the index did not answer.
enum Miss {
    /// The list answers instead; the reason, for the metrics.
    Fallback(&'static str),
    /// The daemon did not answer in time: the list would not either.
    Failed(RuntimeFailure),
}

impl From<&'static str> for Miss {
    fn from(reason: &'static str) -> Self {
        Miss::Fallback(reason)
    }
}

/// A call on the index's own connection that failed.
#[derive(Debug)]
enum CallError {
    Timeout,
    Failed(String),
}

impl From<String> for CallError {
    fn from(text: String) -> Self {
        CallError::Failed(text)
    }
}

impl From<&str> for CallError {
    fn from(text: &str) -> Self {
        CallError::Failed(text.to_string())
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Timeout => f.write_str("no answer in time"),
            CallError::Failed(text) => f.write_str(text),
        }
    }
}

impl EventIndex {
    /// The members in scope the index would inspect as it is now; none while it is not
    /// built, or while a catch-up holds it.
    fn live_members(&self, scope: &Scope<'_>) -> Vec<String> {
        match self.state.try_lock() {
            Ok(state) if state.index.is_built() && !self.paused() => {
                state.index.live_members(scope)
            }
            _ => Vec::new(),
        }
    }

    /// The members of the pods in scope, once the index has seen every event the daemon
    /// logged before the request arrived (local time `requested_at`); `None` when it cannot
    /// tell, and the list must answer.
    async fn lookup(
        self: &Arc<Self>,
        docker: &Docker,
        scope: Scope<'_>,
        requested_at: i64,
    ) -> Result<Option<Lookup>, RuntimeFailure> {
        if self.paused() {
            self.metrics.event_index_fallback("paused");
            return Ok(None);
        }
        // A catch-up holds the index for a fraction of a millisecond; one that takes long
        // (a sick daemon) must not hold up every request behind it.
        let Ok(mut state) = tokio::time::timeout(EVENTS_LAG, self.state.lock()).await else {
            self.metrics.event_index_fallback("events_lag");
            return Ok(None);
        };
        let version = docker.client_version().to_string();
        let outcome = self.current(&mut state, &version, requested_at).await;
        match outcome {
            Ok(()) => Ok(Some(state.index.lookup(&scope))),
            Err(Miss::Fallback(reason)) => {
                self.metrics.event_index_fallback(reason);
                Ok(None)
            }
            Err(Miss::Failed(failure)) => {
                self.metrics.runtime_error(&failure);
                Err(failure)
            }
        }
    }

    /// Brings the index up to `requested_at`.
    async fn current(
        self: &Arc<Self>,
        state: &mut IndexState,
        version: &str,
        requested_at: i64,
    ) -> Result<(), Miss> {
        // The index is only as good as the connection it was kept on.
        if state.conn.as_ref().is_none_or(Conn::is_closed) {
            if state.index.is_built() {
                log::info!(
                    "the connection to the {} closed: rebuilding the event index",
                    self.runtime
                );
                self.metrics.event_index_rebuild("reconnect");
            }
            state.index.invalidate();
            state.conn = None;
            match self.call(self.wire.connect()).await {
                Ok(conn) => state.conn = Some(conn),
                Err(err) => return Err(self.failed(Duration::from_secs(5), err)),
            }
        }
        if !state.index.is_built() {
            return self.build(state, version).await.map_err(|err| {
                state.conn = None;
                self.failed(PAUSE, err)
            });
        }
        if state.index.covers(requested_at) {
            return Ok(());
        }
        self.catch_up(state, version).await
    }

    /// After a call on the index's connection failed: lists for a while. A timeout is the
    /// request's answer (a list would wait as long again).
    fn failed(&self, pause: Duration, err: CallError) -> Miss {
        self.pause(pause, &err.to_string());
        match err {
            CallError::Timeout => Miss::Failed(RuntimeFailure::Timeout {
                runtime: self.runtime.clone(),
                timeout: self.timeout,
            }),
            CallError::Failed(_) => Miss::Fallback("events_failed"),
        }
    }

    /// Reads the events logged since the index was last current, up to the latest the
    /// daemon's clock can read now, and applies them.
    async fn catch_up(self: &Arc<Self>, state: &mut IndexState, version: &str) -> Result<(), Miss> {
        let sent = self.clock.local();
        let Some(bounds) = self.clock.bounds() else {
            self.calibrate();
            return Err("clock_unknown".into());
        };
        if bounds.width() > RECALIBRATE_WIDTH {
            self.calibrate();
        }
        if bounds.width() > MAX_CLOCK_WIDTH {
            return Err("clock_unknown".into());
        }
        // Every event logged before the request arrived is stamped at most this, by the
        // daemon's clock; Docker answers once its clock has passed it.
        let until = sent + bounds.hi;
        let since = state
            .index
            .catch_up_since()
            .unwrap_or(until - OVERLAP_NANOS)
            .min(until - 1);
        let path = format!(
            "/v{version}/events?since={}&until={}",
            docker_timestamp(since),
            docker_timestamp(until)
        );
        let Some(conn) = state.conn.as_mut() else {
            return Err("events_failed".into());
        };
        let budget = Duration::from_nanos(bounds.width().unsigned_abs()) + EVENTS_LAG;
        let answer = {
            let _turn = self.calls.acquire().await;
            tokio::time::timeout(budget, conn.get(&path)).await
        };
        let answer = match answer {
            Ok(Ok(answer)) => answer,
            Ok(Err(err)) => {
                // The connection is gone: the daemon may have restarted.
                log::info!("reading docker events failed ({err}): listing containers");
                state.conn = None;
                state.index.invalidate();
                return Err("events_failed".into());
            }
            Err(_) => {
                log::warn!(
                    "the {} took over {} ms to return its events: listing containers, and \
                     reading its clock again",
                    self.runtime,
                    budget.as_millis()
                );
                state.conn = None;
                state.index.invalidate();
                self.clock.forget();
                self.calibrate();
                return Err("events_lag".into());
            }
        };
        let received = self.clock.local();
        if answer.status != 200 {
            let message = String::from_utf8_lossy(&answer.body);
            self.pause(
                PAUSE,
                &format!("GET /events answered {}: {}", answer.status, message.trim()),
            );
            return Err("events_failed".into());
        }
        let Some(date) = answer.date else {
            self.pause(LONG_PAUSE, "its answers carry no Date header");
            return Err("events_failed".into());
        };
        let events = match parse_events(&answer.body) {
            Ok(events) => events,
            Err(err) => {
                self.pause(PAUSE, &format!("its events could not be read: {err}"));
                return Err("events_failed".into());
            }
        };
        // The daemon's own stamps on the answer must agree with what is known of its clock;
        // if not, it was stepped, and the window may have missed events.
        let stepped = self.clock.observe_date(date, sent, received) == Observed::Stepped
            || events.iter().any(|event| {
                self.clock.observe_event(event.time_nano, received) == Observed::Stepped
            });
        if stepped {
            log::warn!(
                "the {}'s clock moved: rebuilding the event index, and reading its clock again",
                self.runtime
            );
            self.metrics.event_index_rebuild("clock_step");
            state.index.invalidate();
            self.calibrate();
            return Err("clock_step".into());
        }
        match state.index.apply(&events, sent, until) {
            CatchUp::Applied => Ok(()),
            CatchUp::Overflowed => {
                log::info!(
                    "{} docker events in one window: Docker may have dropped some, listing \
                     containers again",
                    events.len()
                );
                self.metrics.event_index_rebuild("overflow");
                self.build(state, version).await.map_err(|err| {
                    state.conn = None;
                    self.failed(PAUSE, err)
                })
            }
        }
    }

    /// Builds the index from a node-wide list, read straight into what the index keeps.
    async fn build(
        self: &Arc<Self>,
        state: &mut IndexState,
        version: &str,
    ) -> Result<(), CallError> {
        if state.conn.is_none() {
            return Err("no connection".into());
        }
        // The list goes over a connection of its own, opened after the index's: a connection
        // keeps a read buffer as large as the largest answer it read (a node-wide list is
        // the largest by far), and the index's stays open for as long as the daemon runs.
        let mut lister = self.call(self.wire.connect()).await?;
        let filters = wire::query_value(&format!(r#"{{"label":["{POD_NAMESPACE_LABEL}"]}}"#));
        let path = format!("/v{version}/containers/json?all=1&filters={filters}");
        let sent = self.clock.local();
        let answer = self.call(lister.get(&path)).await?;
        drop(lister);
        let received = self.clock.local();
        if answer.status != 200 {
            return Err(format!(
                "GET /containers/json answered {}: {}",
                answer.status,
                String::from_utf8_lossy(&answer.body).trim()
            )
            .into());
        }
        let date = answer.date.ok_or("its answers carry no Date header")?;
        self.clock.observe_date(date, sent, received);
        let seen_until = self
            .clock
            .earliest(sent)
            .ok_or("the daemon's clock is unknown")?;
        let listed: Vec<Listed> = serde_json::from_slice(&answer.body)
            .map_err(|err| format!("its container list could not be read: {err}"))?;
        drop(answer);
        let count = listed.len();
        state.index.reset(
            listed
                .into_iter()
                .filter_map(|listed| Some((listed.id, listed.labels.pod()?))),
            sent,
            seen_until,
        );
        log::info!("event index built from a list of {count} kubelet containers");
        self.metrics.event_index_rebuild("list");
        if self
            .clock
            .bounds()
            .is_none_or(|bounds| bounds.width() > RECALIBRATE_WIDTH)
        {
            self.calibrate();
        }
        Ok(())
    }

    /// Starts reading the daemon's clock unless it is known closely enough.
    fn warm(self: &Arc<Self>) {
        if self
            .clock
            .bounds()
            .is_none_or(|bounds| bounds.width() > RECALIBRATE_WIDTH)
        {
            self.calibrate();
        }
    }

    /// Reads the daemon's clock in the background (one to three of its seconds), unless that
    /// is under way. The reading stops when the collector does.
    fn calibrate(self: &Arc<Self>) {
        if self.paused() || self.calibrating.swap(true, Ordering::SeqCst) {
            return;
        }
        let clock = self.clock.clone();
        let index = Arc::downgrade(self);
        tokio::spawn(async move {
            let ping = || {
                let index = index.clone();
                async move {
                    match index.upgrade() {
                        Some(index) => index.ping().await,
                        None => Err(CallError::Failed("the collector stopped".into())),
                    }
                }
            };
            let outcome = clock.calibrate(ping).await;
            let Some(this) = index.upgrade() else {
                return;
            };
            match outcome {
                Ok(bounds) => log::debug!(
                    "{}: clock read to within {} µs",
                    this.runtime,
                    bounds.width() / 1000
                ),
                Err(CalibrationError::NoDate) => {
                    this.pause(LONG_PAUSE, "its answers carry no Date header")
                }
                Err(err) => this.pause(PAUSE, &format!("its clock could not be read: {err}")),
            }
            this.calibrating.store(false, Ordering::SeqCst);
        });
    }

    /// `GET /_ping`: the `Date` header's Unix seconds.
    async fn ping(&self) -> Result<Option<i64>, CallError> {
        let mut pinger = self.pinger.lock().await;
        if pinger.as_ref().is_none_or(Conn::is_closed) {
            *pinger = Some(self.call(self.wire.connect()).await?);
        }
        let Some(conn) = pinger.as_mut() else {
            return Err("no connection".into());
        };
        match self.call(conn.get("/_ping")).await {
            Ok(answer) if answer.status == 200 => Ok(answer.date),
            Ok(answer) => Err(format!("GET /_ping answered {}", answer.status).into()),
            Err(err) => {
                *pinger = None;
                Err(err)
            }
        }
    }

    /// One call within the runtime timeout, counted against `--runtime-concurrency`.
    async fn call<T>(&self, call: impl Future<Output = Result<T, String>>) -> Result<T, CallError> {
        let _turn = self.calls.acquire().await;
        match tokio::time::timeout(self.timeout, call).await {
            Ok(outcome) => outcome.map_err(CallError::Failed),
            Err(_) => Err(CallError::Timeout),
        }
    }

    fn paused(&self) -> bool {
        let until = *self
            .paused_until
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        until.is_some_and(|until| until > std::time::Instant::now())
    }

    /// Answers from lists for a while, saying why once.
    fn pause(&self, duration: Duration, reason: &str) {
        let now = std::time::Instant::now();
        let mut until = self
            .paused_until
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if until.is_none_or(|until| until <= now) {
            log::warn!(
                "event index: the {} cannot be followed ({reason}); answering from container \
                 lists for {}s",
                self.runtime,
                duration.as_secs()
            );
        }
        *until = Some(now + duration);
    }
}

/// Whether a container has exited for good: only an event can change it again.
fn has_exited(container: &ContainerInspectResponse) -> bool {
    container.state.as_ref().is_some_and(|state| {
        state.status == Some(ContainerStateStatusEnum::EXITED) && state.running != Some(true)
    })
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
