//! Lays pods out over CRI (containerd) exactly the way the kubelet's kuberuntime does
//! (SPEC §6): `RunPodSandbox` with the kubelet's `PodSandboxConfig`, then, per container
//! instance, `CreateContainer` with its `ContainerConfig` and `StartContainer`, each attempt only
//! after the previous one has exited. The pods are described with the same builders as on
//! Docker ([`Pod`], [`Container`], [`Instance`], …), so one description can be laid out on either.
//!
//! ```ignore
//! let Some(node) = CriNode::new().await else { return }; // skipped only outside CI
//! let pod = node
//!     .run(
//!         Pod::new(node.ns("kube-system"), "kube-scheduler-cri-node")
//!             .host_network()
//!             .static_pod()
//!             .container(
//!                 Container::new("kube-scheduler")
//!                     .first_attempt(30)
//!                     .instance(Instance::Exit(2))
//!                     .instance(Instance::Running),
//!             ),
//!     )
//!     .await;
//! let status = node.container_status(pod.current("kube-scheduler"), true).await;
//! ```
//!
//! What the kubelet sends, from `pkg/kubelet/kuberuntime` (`generatePodSandboxConfig`,
//! `generateContainerConfig`, `labels.go`, `kuberuntime_container_linux.go`):
//! - sandbox: metadata (name, namespace, uid, attempt); hostname (not on the host network); the
//!   pod's log directory `<pod-logs>/<ns>_<name>_<uid>`; DNS config; one port mapping per
//!   container port; labels = the pod's plus `io.kubernetes.pod.{name,namespace,uid}`;
//!   annotations = the pod's verbatim (with `kubernetes.io/config.*`); linux: cgroup parent of
//!   the QoS class, pod-level resources, security context (namespace modes, `RuntimeDefault`
//!   seccomp, privileged when a container is).
//! - container: metadata (name, attempt = restart count); image = the image ID from
//!   `ImageStatus` plus the spec's spelling as `user_specified_image`; command, args, working
//!   dir, env; mounts (volumes, `/etc/hosts`, the termination-log file); labels =
//!   `io.kubernetes.pod.{name,namespace,uid}` + `io.kubernetes.container.name`; the kubelet's
//!   annotations (hash, restartCount, terminationMessagePath/Policy, terminationGracePeriod,
//!   ports); log path `<name>/<restart>.log`; linux resources (shares, quota, period, memory
//!   limit, the QoS oom_score_adj) and security context.
//!
//! Environment: `CONTAINER_RUNTIME_ENDPOINT` (`unix:///…/containerd.sock`), the images as
//! containerd names them in `PDC_TEST_CRI_PAUSE_IMAGE` / `PDC_TEST_CRI_APP_IMAGE` (default
//! `docker.io/pdc-test/{pause,app}:1`), `PDC_TEST_CRI_NETNS` (containerd's network namespace),
//! `PDC_TEST_KEEP` (leave the sandboxes and directories behind). `scripts/test` sets them.
//!
//! This is test code: the product itself only reads over CRI.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use pod_detail_collector::cri_api::{
    self as cri, ContainerState, NamespaceMode, PodSandboxState, Protocol,
    image_service_client::ImageServiceClient, runtime_service_client::RuntimeServiceClient,
    security_profile::ProfileType,
};
use serde::{Deserialize, Serialize};
use tonic::transport::Channel;

use super::kubelet::{self, CPU_PERIOD, HostMount, PodSetup};
use super::scenario::{Container, CreatedInstance, CreatedPod, Instance, Pod};
use super::util;

/// Longest any one CRI call may take (creating a sandbox runs the CNI plugin).
const CALL: Duration = Duration::from_secs(60);
/// Longest a container may take to reach the state its instance asks for.
const WAIT: Duration = Duration::from_secs(60);

/// The kubelet's default masked and read-only paths (`securitycontext.ConvertToRuntimeMaskedPaths`
/// / `ConvertToRuntimeReadonlyPaths` for the default proc mount).
const MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];
const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// `CONTAINER_RUNTIME_ENDPOINT`, when set and not empty.
pub fn endpoint() -> Option<String> {
    match std::env::var("CONTAINER_RUNTIME_ENDPOINT") {
        Ok(e) if !e.trim().is_empty() => Some(e.trim().to_string()),
        _ => None,
    }
}

/// The socket path of a `unix://` endpoint (a bare path is taken as is).
pub fn socket_path(endpoint: &str) -> PathBuf {
    PathBuf::from(endpoint.strip_prefix("unix://").unwrap_or(endpoint))
}

/// The app image as containerd names it (what `status.image.image` shows).
pub fn cri_app_image() -> String {
    env_or("PDC_TEST_CRI_APP_IMAGE", "docker.io/pdc-test/app:1")
}

/// The sandbox (pause) image as containerd names it (its `sandbox_image`).
pub fn cri_pause_image() -> String {
    env_or("PDC_TEST_CRI_PAUSE_IMAGE", "docker.io/pdc-test/pause:1")
}

/// The network namespace containerd and its CNI bridge run in.
pub fn cri_netns() -> Option<String> {
    std::env::var("PDC_TEST_CRI_NETNS")
        .ok()
        .filter(|s| !s.trim().is_empty())
}

fn env_or(key: &str, default: &str) -> String {
    match std::env::var(key) {
        Ok(v) if !v.trim().is_empty() => v.trim().to_string(),
        _ => default.to_string(),
    }
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Awaits a CRI call with the [`CALL`] bound; panics naming the call on an error.
pub async fn call<T>(
    what: &str,
    fut: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> T {
    match try_call(fut).await {
        Ok(v) => v,
        Err(s) => panic!("CRI {what}: {:?}: {}", s.code(), s.message()),
    }
}

/// Awaits a CRI call with the [`CALL`] bound; a timeout is `DEADLINE_EXCEEDED`.
pub async fn try_call<T>(
    fut: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, tonic::Status> {
    match tokio::time::timeout(CALL, fut).await {
        Ok(r) => r.map(tonic::Response::into_inner),
        Err(_) => Err(tonic::Status::deadline_exceeded(format!(
            "no answer within {CALL:?}"
        ))),
    }
}

/// Connects to the CRI socket and asks its version. `Err` says why not.
pub async fn connect(endpoint: &str) -> Result<(Channel, cri::VersionResponse), String> {
    let socket = socket_path(endpoint);
    let channel = match tokio::time::timeout(CALL, cri::connect(&socket)).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return Err(format!("cannot connect to {endpoint}: {e}")),
        Err(_) => return Err(format!("{endpoint} did not accept within {CALL:?}")),
    };
    let version = try_call(RuntimeServiceClient::new(channel.clone()).version(
        cri::VersionRequest {
            version: "v1".into(),
        },
    ))
    .await
    .map_err(|s| format!("{endpoint} did not answer Version: {}", s.message()))?;
    Ok((channel, version))
}

/// One pod laid out over CRI: what [`CreatedPod`] holds (IDs, uid, instances; `cni_ips` = the
/// addresses CNI gave the sandbox) plus the configs sent.
#[derive(Clone, Debug)]
pub struct CriPod {
    pub created: CreatedPod,
    /// The `PodSandboxConfig` sent with `RunPodSandbox`.
    pub sandbox_config: cri::PodSandboxConfig,
    /// The `ContainerConfig` sent for each container instance, by container ID.
    pub container_configs: HashMap<String, cri::ContainerConfig>,
    /// The image reference each container's spec names (what the kubelet asks `ImageStatus`
    /// about), by container name.
    pub spec_images: HashMap<String, String>,
}

impl Deref for CriPod {
    type Target = CreatedPod;
    fn deref(&self) -> &CreatedPod {
        &self.created
    }
}

/// One test's view of a CRI node: a connection to the runtime, a private kubelet root and pod
/// log directory, and unique namespaces. Dropping it stops and removes every sandbox it made
/// (with their containers) and the directories, unless `PDC_TEST_KEEP` is set.
pub struct CriNode {
    pub runtime: RuntimeServiceClient<Channel>,
    pub images: ImageServiceClient<Channel>,
    pub endpoint: String,
    pub version: cri::VersionResponse,
    pub suffix: String,
    /// Temporary directory of this test; holds `kubelet/`, `pods-logs/` and `host/`.
    pub dir: PathBuf,
    /// The kubelet root (`--root-dir`) the pods are laid out under.
    pub kubelet_root: PathBuf,
    /// The kubelet's pod log directory (`/var/log/pods` on a node).
    pub pod_logs_dir: PathBuf,
    namespaces: Mutex<Vec<String>>,
    sandboxes: Mutex<Vec<String>>,
    cgroup_parents: Mutex<Vec<String>>,
}

impl CriNode {
    /// Connects to `CONTAINER_RUNTIME_ENDPOINT` and makes a fresh kubelet root. When that is
    /// unset outside CI, says so and returns `None` (the test is skipped); when it is unset
    /// under `CI=true`, or set but not answering, the test fails.
    pub async fn new() -> Option<Self> {
        let Some(endpoint) = endpoint() else {
            if in_ci() {
                panic!(
                    "CONTAINER_RUNTIME_ENDPOINT is not set; the CRI tests need a containerd: \
                     run scripts/test, which starts a private one"
                );
            }
            eprintln!(
                "CONTAINER_RUNTIME_ENDPOINT is not set: skipping this CRI test \
                 (scripts/test starts a private containerd; under CI=true this fails)"
            );
            return None;
        };
        let (channel, version) = connect(&endpoint).await.unwrap_or_else(|e| {
            panic!("{e}; the CRI tests need a containerd: run scripts/test, which starts one")
        });
        let suffix = util::random_hex(8);
        let dir = std::env::temp_dir().join(format!("pdc-cri-test-{suffix}"));
        let kubelet_root = dir.join("kubelet");
        let pod_logs_dir = dir.join("pods-logs");
        std::fs::create_dir_all(kubelet_root.join("pods")).expect("create kubelet root");
        std::fs::create_dir_all(&pod_logs_dir).expect("create pod log dir");
        std::fs::create_dir_all(dir.join("host")).expect("create host dir");
        Some(Self {
            runtime: RuntimeServiceClient::new(channel.clone()),
            images: ImageServiceClient::new(channel),
            endpoint,
            version,
            suffix,
            dir,
            kubelet_root,
            pod_logs_dir,
            namespaces: Mutex::new(Vec::new()),
            sandboxes: Mutex::new(Vec::new()),
            cgroup_parents: Mutex::new(Vec::new()),
        })
    }

    fn rt(&self) -> RuntimeServiceClient<Channel> {
        self.runtime.clone()
    }

    fn img(&self) -> ImageServiceClient<Channel> {
        self.images.clone()
    }

    /// A namespace unique to this test: `<base>-<random suffix>`.
    pub fn ns(&self, base: &str) -> String {
        let ns = format!("{base}-{}", self.suffix);
        let mut list = self.namespaces.lock().unwrap();
        if !list.contains(&ns) {
            list.push(ns.clone());
        }
        ns
    }

    /// A directory for hostPath volumes, outside the kubelet root.
    pub fn host_dir(&self) -> PathBuf {
        self.dir.join("host")
    }

    /// Lays the pod out like the kubelet: its sandbox, then each container's instances in
    /// order, each created once the previous one has exited, and waits for each instance to
    /// settle (running, exited, or just created). A finished pod's sandbox is stopped at the
    /// end, as the kubelet does.
    pub async fn run(&self, pod: Pod) -> CriPod {
        assert!(
            pod.pod_ip.is_none() && pod.cni.is_none(),
            "on CRI the runtime's CNI plugin gives the pod its address: no pod_ip/cni_veth"
        );
        assert!(
            pod.sandbox_image.is_none(),
            "on CRI the sandbox image is the runtime's (sandbox_image)"
        );
        {
            let mut list = self.namespaces.lock().unwrap();
            if !list.contains(&pod.namespace) {
                list.push(pod.namespace.clone());
            }
        }
        let (ns, pod_name) = (pod.namespace.clone(), pod.name.clone());
        let setup = PodSetup::prepare(&pod, &self.kubelet_root, &self.suffix);
        let uid = setup.uid.clone();
        // The sandbox gets the pod's annotations verbatim, with what the kubelet's config
        // layer adds to them.
        let annotations: HashMap<String, String> = setup.annotations.iter().cloned().collect();

        // --- sandbox ---------------------------------------------------------------------
        let sandbox_config = sandbox_config(&pod, &uid, &annotations, &self.pod_logs_dir);
        std::fs::create_dir_all(&sandbox_config.log_directory).expect("pod log dir");
        let cgroup_parent = pod.cgroup_parent(&uid);
        self.cgroup_parents.lock().unwrap().push(cgroup_parent);
        let sandbox_id = call(
            &format!("RunPodSandbox {ns}/{pod_name}"),
            self.rt().run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(sandbox_config.clone()),
                runtime_handler: String::new(),
            }),
        )
        .await
        .pod_sandbox_id;
        self.sandboxes.lock().unwrap().push(sandbox_id.clone());
        let status = self.sandbox_status(&sandbox_id, false).await;
        let cni_ips: Vec<String> = status
            .status
            .and_then(|s| s.network)
            .map(|n| {
                std::iter::once(n.ip)
                    .chain(n.additional_ips.into_iter().map(|i| i.ip))
                    .filter(|ip| !ip.is_empty())
                    .collect()
            })
            .unwrap_or_default();

        // --- containers ------------------------------------------------------------------
        let mut created = Vec::new();
        let mut unsettled = Vec::new();
        let mut container_configs = HashMap::new();
        let mut spec_images = HashMap::new();
        for c in &pod.containers {
            let spec_image = c.image.clone().unwrap_or_else(util::app_image);
            spec_images.insert(c.name.clone(), spec_image.clone());
            // EnsureImageExists: the kubelet runs the image by the ID ImageStatus gives.
            let image_id = self
                .image_status(&spec_image, false)
                .await
                .image
                .map(|i| i.id)
                .filter(|id| !id.is_empty())
                .unwrap_or_else(|| {
                    panic!(
                        "test image {spec_image} is not in containerd; run scripts/test to import it"
                    )
                });
            let hash = c.spec_hash(&spec_image);
            let container_dir = setup.container_dir(c);
            std::fs::create_dir_all(Path::new(&sandbox_config.log_directory).join(&c.name))
                .expect("container log dir");

            let mut instances = Vec::new();
            for (i, inst) in c.instances_or_default().into_iter().enumerate() {
                let attempt = c.first_attempt + i as u32;
                // The kubelet makes a new termination-log file per instance, mode 0666.
                let termination_log = kubelet::new_termination_log(&container_dir);
                let mounts = kubelet::container_mounts(
                    &pod,
                    c,
                    &self.kubelet_root,
                    &uid,
                    &setup.etc_hosts,
                    &termination_log,
                )
                .into_iter()
                .map(cri_mount)
                .collect();
                let config = container_config(
                    &pod,
                    c,
                    &inst,
                    &uid,
                    attempt,
                    &hash,
                    &image_id,
                    &spec_image,
                    mounts,
                );
                let what = format!("{ns}/{pod_name} container {} attempt {attempt}", c.name);
                let id = call(
                    &format!("CreateContainer {what}"),
                    self.rt().create_container(cri::CreateContainerRequest {
                        pod_sandbox_id: sandbox_id.clone(),
                        config: Some(config.clone()),
                        sandbox_config: Some(sandbox_config.clone()),
                    }),
                )
                .await
                .container_id;
                if pod.created_together {
                    // The kubelet's regular containers: created together, started and
                    // waited for once all are created.
                    assert_eq!(
                        c.instances_or_default().len(),
                        1,
                        "containers created together have one instance each: {}",
                        c.name
                    );
                    unsettled.push((id.clone(), what, inst.clone()));
                } else {
                    self.settle(&id, &what, &inst).await;
                }
                container_configs.insert(id.clone(), config);
                instances.push(CreatedInstance {
                    attempt,
                    id,
                    instance: inst,
                    termination_log,
                });
            }
            created.push((c.name.clone(), instances));
        }
        let mut started = Vec::new();
        for (id, what, inst) in unsettled {
            let outcome = self.start(&id, &inst).await;
            started.push((id, what, inst, outcome));
        }
        for (id, what, inst, outcome) in started {
            self.wait_settled(&id, &what, &inst, outcome).await;
        }

        if pod.finished {
            // The kubelet stops the sandbox of a finished pod.
            self.stop_sandbox(&sandbox_id).await;
        }

        CriPod {
            created: CreatedPod {
                namespace: ns,
                name: pod_name,
                uid,
                sandbox_id,
                pod,
                containers: created,
                annotations,
                cni_ips,
                host_veth: None,
            },
            sandbox_config,
            container_configs,
            spec_images,
        }
    }

    /// Starts the instance (unless it is `Created`) and waits until it is in its final state.
    async fn settle(&self, id: &str, what: &str, inst: &Instance) {
        let started = self.start(id, inst).await;
        self.wait_settled(id, what, inst, started).await;
    }

    /// `StartContainer`, unless the instance is `Created`: its outcome.
    async fn start(&self, id: &str, inst: &Instance) -> Option<Result<(), String>> {
        if *inst == Instance::Created {
            return None;
        }
        let started = try_call(self.rt().start_container(cri::StartContainerRequest {
            container_id: id.to_string(),
        }))
        .await;
        Some(started.map(drop).map_err(|e| e.message().to_string()))
    }

    /// Waits until a started instance is in its final state.
    async fn wait_settled(
        &self,
        id: &str,
        what: &str,
        inst: &Instance,
        started: Option<Result<(), String>>,
    ) {
        use ContainerState::{ContainerCreated, ContainerExited, ContainerRunning};
        let Some(started) = started else {
            self.wait_state(id, what, &[ContainerCreated]).await;
            return;
        };
        match inst {
            Instance::CannotRun => {
                assert!(started.is_err(), "{what} was meant to fail to start");
                let st = self.wait_state(id, what, &[ContainerExited]).await;
                assert_ne!(st.exit_code, 0, "{what}: {st:?}");
            }
            Instance::Running => {
                started.unwrap_or_else(|e| panic!("StartContainer {what}: {e}"));
                let st = self
                    .wait_state(id, what, &[ContainerRunning, ContainerExited])
                    .await;
                assert_eq!(
                    st.state, ContainerRunning as i32,
                    "{what} was meant to keep running but exited: {st:?}"
                );
            }
            Instance::Exit(code)
            | Instance::ExitWithMessage(code, _)
            | Instance::ExitWithLog(code, _) => {
                started.unwrap_or_else(|e| panic!("StartContainer {what}: {e}"));
                let st = self.wait_state(id, what, &[ContainerExited]).await;
                assert_eq!(i64::from(st.exit_code), *code, "{what} exit code: {st:?}");
            }
            Instance::OomKilled => {
                started.unwrap_or_else(|e| panic!("StartContainer {what}: {e}"));
                let mut st = self.wait_state(id, what, &[ContainerExited]).await;
                // containerd learns of the OOM kill from the shim's event, which may come just
                // after the exit: give the reason a moment.
                let deadline = Instant::now() + Duration::from_secs(10);
                while st.reason != "OOMKilled" && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    st = self.status_of(id, what).await;
                }
                assert_eq!(
                    st.reason, "OOMKilled",
                    "{what} was meant to be OOM-killed: {st:?}"
                );
            }
            Instance::Created => unreachable!(),
        }
    }

    async fn status_of(&self, id: &str, what: &str) -> cri::ContainerStatus {
        call(
            &format!("ContainerStatus {what}"),
            self.rt().container_status(cri::ContainerStatusRequest {
                container_id: id.to_string(),
                verbose: false,
            }),
        )
        .await
        .status
        .unwrap_or_else(|| panic!("ContainerStatus {what}: no status"))
    }

    /// Polls until the container's state is one of `wanted`; panics after [`WAIT`].
    async fn wait_state(
        &self,
        id: &str,
        what: &str,
        wanted: &[ContainerState],
    ) -> cri::ContainerStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            let st = self.status_of(id, what).await;
            if wanted.iter().any(|w| *w as i32 == st.state) {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "{what} did not reach {wanted:?} within {WAIT:?}: {st:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `StopPodSandbox`, then waits until the sandbox is `SANDBOX_NOTREADY`.
    pub async fn stop_sandbox(&self, id: &str) {
        call(
            &format!("StopPodSandbox {id}"),
            self.rt().stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: id.to_string(),
            }),
        )
        .await;
        let deadline = Instant::now() + WAIT;
        loop {
            let st = self
                .sandbox_status(id, false)
                .await
                .status
                .unwrap_or_default();
            if st.state == PodSandboxState::SandboxNotready as i32 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "sandbox {id} still ready {WAIT:?} after StopPodSandbox"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    // --- the read calls the product uses (SPEC §6) ----------------------------------------

    /// `ListPodSandbox` with a label selector.
    pub async fn list_sandboxes(&self, selector: &[(&str, &str)]) -> Vec<cri::PodSandbox> {
        call(
            "ListPodSandbox",
            self.rt().list_pod_sandbox(cri::ListPodSandboxRequest {
                filter: Some(cri::PodSandboxFilter {
                    label_selector: labels(selector),
                    ..Default::default()
                }),
            }),
        )
        .await
        .items
    }

    /// The sandboxes of a pod by namespace and name (the collector's own starting point).
    pub async fn sandboxes_of(&self, namespace: &str, name: &str) -> Vec<cri::PodSandbox> {
        self.list_sandboxes(&[
            ("io.kubernetes.pod.namespace", namespace),
            ("io.kubernetes.pod.name", name),
        ])
        .await
    }

    pub async fn sandbox_status(&self, id: &str, verbose: bool) -> cri::PodSandboxStatusResponse {
        call(
            &format!("PodSandboxStatus {id}"),
            self.rt().pod_sandbox_status(cri::PodSandboxStatusRequest {
                pod_sandbox_id: id.to_string(),
                verbose,
            }),
        )
        .await
    }

    /// `ListContainers` by the pod-UID label, as the kubelet lists a pod's containers.
    pub async fn containers_of(&self, uid: &str) -> Vec<cri::Container> {
        call(
            "ListContainers",
            self.rt().list_containers(cri::ListContainersRequest {
                filter: Some(cri::ContainerFilter {
                    label_selector: labels(&[("io.kubernetes.pod.uid", uid)]),
                    ..Default::default()
                }),
            }),
        )
        .await
        .containers
    }

    pub async fn container_status(&self, id: &str, verbose: bool) -> cri::ContainerStatusResponse {
        call(
            &format!("ContainerStatus {id}"),
            self.rt().container_status(cri::ContainerStatusRequest {
                container_id: id.to_string(),
                verbose,
            }),
        )
        .await
    }

    pub async fn image_status(&self, image: &str, verbose: bool) -> cri::ImageStatusResponse {
        call(
            &format!("ImageStatus {image}"),
            self.img().image_status(cri::ImageStatusRequest {
                image: Some(cri::ImageSpec {
                    image: image.to_string(),
                    ..Default::default()
                }),
                verbose,
            }),
        )
        .await
    }

    /// Everything the read calls of SPEC §6 answer about this pod, as the collector would ask:
    /// its sandboxes by namespace and name, their verbose status, its containers by UID, their
    /// verbose status, and the verbose status of every image they name (by `image.image` and
    /// by `image_ref`, as listed and as in the status).
    pub async fn record(&self, pod: &CriPod) -> CriRecord {
        let list_pod_sandbox = cri::ListPodSandboxResponse {
            items: self.sandboxes_of(&pod.namespace, &pod.name).await,
        };
        let mut pod_sandbox_status = BTreeMap::new();
        for s in &list_pod_sandbox.items {
            pod_sandbox_status.insert(s.id.clone(), self.sandbox_status(&s.id, true).await);
        }
        let list_containers = cri::ListContainersResponse {
            containers: self.containers_of(&pod.uid).await,
        };
        let mut container_status = BTreeMap::new();
        let mut image_status = BTreeMap::new();
        for c in &list_containers.containers {
            let st = self.container_status(&c.id, true).await;
            // ListContainers names the image by ID; the status by repo tag and repo digest.
            let mut names = vec![
                c.image.as_ref().map(|i| i.image.clone()),
                Some(c.image_ref.clone()),
            ];
            if let Some(s) = &st.status {
                names.push(s.image.as_ref().map(|i| i.image.clone()));
                names.push(Some(s.image_ref.clone()));
            }
            container_status.insert(c.id.clone(), st);
            for name in names.into_iter().flatten().filter(|n| !n.is_empty()) {
                if let std::collections::btree_map::Entry::Vacant(e) = image_status.entry(name) {
                    let st = self.image_status(e.key(), true).await;
                    e.insert(st);
                }
            }
        }
        CriRecord {
            version: self.version.clone(),
            list_pod_sandbox,
            pod_sandbox_status,
            list_containers,
            container_status,
            image_status,
        }
    }
}

/// What [`CriNode::record`] gathers about one pod: the answers of the CRI read calls, keyed by
/// the sandbox, container or image asked about. Serialized as the CRI fixtures
/// (`tests/fixtures/cri/*.json`); the verbose `info` maps hold JSON strings, as on the wire.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CriRecord {
    pub version: cri::VersionResponse,
    pub list_pod_sandbox: cri::ListPodSandboxResponse,
    pub pod_sandbox_status: BTreeMap<String, cri::PodSandboxStatusResponse>,
    pub list_containers: cri::ListContainersResponse,
    pub container_status: BTreeMap<String, cri::ContainerStatusResponse>,
    pub image_status: BTreeMap<String, cri::ImageStatusResponse>,
}

impl CriRecord {
    /// Pretty JSON with every map's keys sorted (stable fixtures).
    pub fn to_json(&self) -> String {
        let value = serde_json::to_value(self).expect("CRI record as JSON");
        let mut out = serde_json::to_string_pretty(&sorted(value)).expect("JSON text");
        out.push('\n');
        out
    }
}

fn sorted(v: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Object(m) => {
            let b: BTreeMap<String, Value> = m.into_iter().map(|(k, v)| (k, sorted(v))).collect();
            Value::Object(b.into_iter().collect())
        }
        Value::Array(a) => Value::Array(a.into_iter().map(sorted).collect()),
        other => other,
    }
}

fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The kubelet's namespace modes (`runtimeutil.NamespacesForPod`): the PID namespace is per
/// container unless hostPID (or shareProcessNamespace, not modelled here).
fn namespace_options(pod: &Pod) -> cri::NamespaceOption {
    let mode = |host: bool, otherwise: NamespaceMode| {
        if host {
            NamespaceMode::Node as i32
        } else {
            otherwise as i32
        }
    };
    cri::NamespaceOption {
        network: mode(pod.host_network, NamespaceMode::Pod),
        pid: mode(pod.host_pid, NamespaceMode::Container),
        ipc: mode(pod.host_ipc, NamespaceMode::Pod),
        target_id: String::new(),
        // hostUsers unset, user namespaces supported: the node's.
        userns_options: Some(cri::UserNamespace {
            mode: NamespaceMode::Node as i32,
            ..Default::default()
        }),
    }
}

/// The kubelet's `GetPodDNS` for dnsPolicy ClusterFirst with cluster DNS 10.96.0.10 and
/// domain cluster.local; a host-network pod falls back to the node's resolv.conf.
fn dns_config(pod: &Pod) -> cri::DnsConfig {
    let (mut servers, mut searches, mut options) = (Vec::new(), Vec::new(), Vec::new());
    let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    for line in host.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => servers.extend(words.map(str::to_string)),
            Some("search") => searches = words.map(str::to_string).collect(),
            Some("options") => options.extend(words.map(str::to_string)),
            _ => {}
        }
    }
    if pod.host_network {
        return cri::DnsConfig {
            servers,
            searches,
            options,
        };
    }
    let mut cluster_searches = vec![
        format!("{}.svc.cluster.local", pod.namespace),
        "svc.cluster.local".to_string(),
        "cluster.local".to_string(),
    ];
    cluster_searches.extend(searches);
    cri::DnsConfig {
        servers: vec!["10.96.0.10".to_string()],
        searches: cluster_searches,
        options: vec!["ndots:5".to_string()],
    }
}

/// `milliCPUToShares`.
fn shares(milli: i64) -> i64 {
    if milli == 0 {
        2
    } else {
        (milli * 1024 / 1000).clamp(2, 262_144)
    }
}

/// `milliCPUToQuota` (0 = no limit).
fn quota(milli: i64) -> i64 {
    if milli == 0 {
        0
    } else {
        (milli * CPU_PERIOD / 1000).max(1000)
    }
}

/// The kubelet's `PodSandboxConfig` for the pod.
fn sandbox_config(
    pod: &Pod,
    uid: &str,
    annotations: &HashMap<String, String>,
    pod_logs_dir: &Path,
) -> cri::PodSandboxConfig {
    let mut labels: HashMap<String, String> = pod.labels.iter().cloned().collect();
    kubelet::insert_pod_identity(&mut labels, pod, uid);

    let port_mappings = pod
        .containers
        .iter()
        .flat_map(|c| c.ports.iter())
        .map(|p| cri::PortMapping {
            protocol: match p.protocol.as_str() {
                "UDP" => Protocol::Udp,
                "SCTP" => Protocol::Sctp,
                _ => Protocol::Tcp,
            } as i32,
            container_port: i32::from(p.container_port),
            host_port: p.host_port.map(i32::from).unwrap_or(0),
            host_ip: String::new(),
        })
        .collect();

    // Pod-level resources (applySandboxResources): sums of the containers' requests and limits.
    let sum = |f: &dyn Fn(&Container) -> Option<i64>| -> Option<i64> {
        let v: Vec<i64> = pod.containers.iter().filter_map(f).collect();
        (!v.is_empty()).then(|| v.iter().sum())
    };
    let cpu_request = sum(&|c| c.effective_cpu_request());
    let cpu_limit = sum(&|c| c.cpu_limit_m).unwrap_or(0);
    let memory_limit = sum(&|c| c.memory_limit).unwrap_or(0);
    let resources = cri::LinuxContainerResources {
        cpu_period: CPU_PERIOD,
        cpu_quota: quota(cpu_limit),
        cpu_shares: shares(cpu_request.unwrap_or(cpu_limit)),
        memory_limit_in_bytes: memory_limit,
        ..Default::default()
    };

    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: pod.name.clone(),
            uid: uid.to_string(),
            namespace: pod.namespace.clone(),
            attempt: pod.sandbox_attempt,
        }),
        hostname: if pod.host_network {
            String::new()
        } else {
            pod.name.clone()
        },
        log_directory: pod_logs_dir
            .join(format!("{}_{}_{uid}", pod.namespace, pod.name))
            .to_string_lossy()
            .into_owned(),
        dns_config: Some(dns_config(pod)),
        port_mappings,
        labels,
        annotations: annotations.clone(),
        linux: Some(cri::LinuxPodSandboxConfig {
            cgroup_parent: pod.cgroup_parent(uid),
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(namespace_options(pod)),
                privileged: pod.containers.iter().any(|c| c.privileged),
                seccomp: Some(cri::SecurityProfile {
                    profile_type: ProfileType::RuntimeDefault as i32,
                    localhost_ref: String::new(),
                }),
                ..Default::default()
            }),
            sysctls: HashMap::new(),
            overhead: Some(cri::LinuxContainerResources::default()),
            resources: Some(resources),
        }),
        windows: None,
    }
}

/// A mount of the kubelet's ([`kubelet::container_mounts`]) as a CRI `Mount`.
fn cri_mount(m: HostMount) -> cri::Mount {
    cri::Mount {
        container_path: m.container_path,
        host_path: m.host_path.to_string_lossy().into_owned(),
        readonly: m.read_only,
        ..Default::default()
    }
}

/// The kubelet's `ContainerConfig` for one instance.
#[allow(clippy::too_many_arguments)]
fn container_config(
    pod: &Pod,
    c: &Container,
    inst: &Instance,
    uid: &str,
    attempt: u32,
    hash: &str,
    image_id: &str,
    spec_image: &str,
    mounts: Vec<cri::Mount>,
) -> cri::ContainerConfig {
    let mut labels = HashMap::new();
    kubelet::insert_pod_identity(&mut labels, pod, uid);
    labels.insert("io.kubernetes.container.name".into(), c.name.clone());
    let (command, args) = inst.process(c);
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: c.name.clone(),
            attempt,
        }),
        image: Some(cri::ImageSpec {
            image: image_id.to_string(),
            user_specified_image: spec_image.to_string(),
            ..Default::default()
        }),
        command: command.unwrap_or_default(),
        args: args.unwrap_or_default(),
        working_dir: c.working_dir.clone().unwrap_or_default(),
        envs: c
            .env
            .iter()
            .map(|(k, v)| cri::KeyValue {
                key: k.clone(),
                value: v.clone(),
            })
            .collect(),
        mounts,
        labels,
        annotations: kubelet::container_annotations(pod, c, attempt, hash)
            .into_iter()
            .collect(),
        log_path: format!("{}/{attempt}.log", c.name),
        linux: Some(cri::LinuxContainerConfig {
            resources: Some(cri::LinuxContainerResources {
                cpu_period: CPU_PERIOD,
                cpu_quota: c.cpu_quota(),
                cpu_shares: c.cpu_shares(),
                memory_limit_in_bytes: c.memory_limit.unwrap_or(0),
                oom_score_adj: pod.oom_score_adj(c),
                ..Default::default()
            }),
            security_context: Some(cri::LinuxContainerSecurityContext {
                privileged: c.privileged,
                namespace_options: Some(namespace_options(pod)),
                masked_paths: MASKED_PATHS.iter().map(|s| s.to_string()).collect(),
                readonly_paths: READONLY_PATHS.iter().map(|s| s.to_string()).collect(),
                // The kubelet's default without SeccompDefault.
                seccomp: Some(cri::SecurityProfile {
                    profile_type: ProfileType::Unconfined as i32,
                    localhost_ref: String::new(),
                }),
                ..Default::default()
            }),
        }),
        ..Default::default()
    }
}

/// Stops and removes these sandboxes (their containers go with them) and every other sandbox
/// of these namespaces. Best effort.
pub async fn remove_sandboxes(endpoint: &str, sandboxes: &[String], namespaces: &[String]) {
    let Ok((channel, _)) = connect(endpoint).await else {
        return;
    };
    let mut rt = RuntimeServiceClient::new(channel);
    let mut ids: Vec<String> = sandboxes.to_vec();
    for ns in namespaces {
        let req = cri::ListPodSandboxRequest {
            filter: Some(cri::PodSandboxFilter {
                label_selector: labels(&[("io.kubernetes.pod.namespace", ns)]),
                ..Default::default()
            }),
        };
        if let Ok(list) = try_call(rt.list_pod_sandbox(req)).await {
            ids.extend(list.items.into_iter().map(|s| s.id));
        }
    }
    ids.sort();
    ids.dedup();
    for id in ids {
        let _ = try_call(rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: id.clone(),
        }))
        .await;
        let _ =
            try_call(rt.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: id }))
                .await;
    }
}

impl Drop for CriNode {
    fn drop(&mut self) {
        let take = |m: &Mutex<Vec<String>>| m.lock().map(|l| l.clone()).unwrap_or_default();
        let (namespaces, sandboxes, cgroups) = (
            take(&self.namespaces),
            take(&self.sandboxes),
            take(&self.cgroup_parents),
        );
        let dir = self.dir.clone();
        if std::env::var_os("PDC_TEST_KEEP").is_some() {
            eprintln!(
                "PDC_TEST_KEEP set: leaving sandboxes {sandboxes:?} (namespaces {namespaces:?}) \
                 and {}",
                dir.display()
            );
            return;
        }
        let endpoint = self.endpoint.clone();
        // Drop cannot await, and may run inside the test's runtime: clean up on a thread with
        // its own runtime and connection.
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                rt.block_on(remove_sandboxes(&endpoint, &sandboxes, &namespaces));
            }
            // The kubelet removes a pod's cgroup once it is gone; they are empty by now
            // (cgroup v1: one per hierarchy; v2: one in the unified tree).
            let root = Path::new("/sys/fs/cgroup");
            let mut trees = vec![root.to_path_buf()];
            if let Ok(hierarchies) = std::fs::read_dir(root) {
                trees.extend(hierarchies.flatten().map(|h| h.path()));
            }
            for tree in &trees {
                for parent in &cgroups {
                    let _ = std::fs::remove_dir(tree.join(parent.trim_start_matches('/')));
                }
            }
            let _ = std::fs::remove_dir_all(&dir);
        })
        .join();
    }
}
