//! Creates pods on the real Docker daemon exactly the way the kubelet's dockershim /
//! cri-dockerd lays them out (SPEC §3): a pause sandbox plus one Docker container per
//! container instance, with the kubelet's names, labels, annotations-as-labels, cgroup
//! parents, resources, namespaces and bind mounts. The pods are described with the builders
//! of [`super::scenario`], the same ones [`super::cri`] lays out over CRI.
//!
//! ```ignore
//! let node = Node::new().await;
//! let pod = node
//!     .run(
//!         Pod::new(node.ns("kube-system"), "kube-scheduler-test-node")
//!             .host_network()
//!             .static_pod()
//!             .label("component", "kube-scheduler")
//!             .container(
//!                 Container::new("kube-scheduler")
//!                     .cpu_request(100)
//!                     .first_attempt(30)
//!                     .instance(Instance::Exit(2))
//!                     .instance(Instance::Running),
//!             ),
//!     )
//!     .await;
//! let old = pod.instance("kube-scheduler", 30);
//! ```
//!
//! - this file: [`Node`], and [`Node::run`]'s steps in the kubelet's order (prepare the pod's
//!   directory and volumes, create the sandbox, wire its network, create each container's
//!   instances in order, stop a finished pod's sandbox), plus the clean-up on drop;
//! - [`config`]: the names and `ContainerCreateBody`s dockershim sends;
//! - [`calls`]: the Docker calls and the waits after them (settling an instance);
//! - [`cni`]: playing the CNI plugin in the sandbox's network namespace.
//!
//! This is test code: the product itself never creates containers.

mod calls;
mod cni;
mod config;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use bollard::Docker;
use bollard::models::{ContainerCreateBody, ContainerStateStatusEnum, HostConfig};

use super::kubelet::{self, PodSetup};
use super::scenario::{Container, CreatedInstance, CreatedPod, Instance, Pod};
use super::util;

/// Longest a container may take to reach the state asked for.
const WAIT: Duration = Duration::from_secs(60);

/// One test's view of the node: a Docker connection, a private kubelet root directory and
/// unique namespaces. Dropping it force-removes every container of its namespaces and the
/// directory (best effort).
pub struct Node {
    pub docker: Docker,
    pub suffix: String,
    /// Temporary directory of this test; holds `kubelet/` and `host/`.
    pub dir: PathBuf,
    /// The kubelet root (`--root-dir`) the pods are laid out under.
    pub kubelet_root: PathBuf,
    /// The kubelet's pod log directory (`/var/log/pods` on a node): each started instance's
    /// `<ns>_<name>_<uid>/<container>/<restart>.log` links to Docker's json-file log, as
    /// cri-dockerd and dockershim make it.
    pub pod_logs_dir: PathBuf,
    namespaces: Mutex<Vec<String>>,
    /// Containers made outside the kubelet's layout ([`Node::run_plain`]), removed on drop.
    plain_containers: Mutex<Vec<String>>,
    /// Host ends of CNI veth pairs, deleted on drop.
    host_veths: Mutex<Vec<String>>,
}

/// A pod's sandbox, started.
struct Sandbox {
    id: String,
    name: String,
    /// The pause process, whose network namespace CNI works in.
    pid: Option<i64>,
    /// The pod's cgroup, which every container of the pod joins too.
    cgroup_parent: String,
}

/// A pod being laid out: its description, what the kubelet made for it on the node, and its
/// sandbox.
struct PodLayout<'a> {
    pod: &'a Pod,
    setup: &'a PodSetup,
    sandbox: &'a Sandbox,
}

/// A container's image as the kubelet resolved it: Docker runs it by ID; the spec hash is
/// taken over the reference the spec names.
struct ContainerImage {
    id: String,
    hash: String,
}

impl Node {
    /// Connects to the daemon (panics if none answers) and makes a fresh kubelet root.
    pub async fn new() -> Self {
        let docker = util::connect_docker().await;
        let suffix = util::random_hex(8);
        let dir = std::env::temp_dir().join(format!("pdc-test-{suffix}"));
        let kubelet_root = dir.join("kubelet");
        let pod_logs_dir = dir.join("pods-logs");
        std::fs::create_dir_all(kubelet_root.join("pods")).expect("create kubelet root");
        std::fs::create_dir_all(&pod_logs_dir).expect("create pod log dir");
        std::fs::create_dir_all(dir.join("host")).expect("create host dir");
        Self {
            docker,
            suffix,
            dir,
            kubelet_root,
            pod_logs_dir,
            namespaces: Mutex::new(Vec::new()),
            plain_containers: Mutex::new(Vec::new()),
            host_veths: Mutex::new(Vec::new()),
        }
    }

    /// A namespace unique to this test: `<base>-<random suffix>`; cleaned up on drop.
    pub fn ns(&self, base: &str) -> String {
        let ns = format!("{base}-{}", self.suffix);
        self.remember_namespace(&ns);
        ns
    }

    fn remember_namespace(&self, ns: &str) {
        let mut list = self.namespaces.lock().unwrap();
        if !list.iter().any(|n| n == ns) {
            list.push(ns.to_string());
        }
    }

    /// A directory for hostPath volumes, outside the kubelet root.
    pub fn host_dir(&self) -> PathBuf {
        self.dir.join("host")
    }

    /// Creates the pod's sandbox and container instances like the kubelet, waiting for each
    /// instance to settle (running, exited, or just created).
    pub async fn run(&self, pod: Pod) -> CreatedPod {
        self.remember_namespace(&pod.namespace);
        let setup = PodSetup::prepare(&pod, &self.kubelet_root, &self.suffix);
        let sandbox = self.create_sandbox(&pod, &setup).await;
        let (cni_ips, host_veth) = self.wire_cni(&pod, &sandbox);
        let layout = PodLayout {
            pod: &pod,
            setup: &setup,
            sandbox: &sandbox,
        };
        let mut containers = Vec::new();
        if pod.created_together {
            // The kubelet's regular containers: created back to back, then started, and
            // only then waited for.
            let mut started = Vec::new();
            for c in &pod.containers {
                let instances = c.instances_or_default();
                let [inst] = instances.as_slice() else {
                    panic!(
                        "containers created together have one instance each: {}",
                        c.name
                    );
                };
                let inst = inst.clone();
                let image = self.resolve_image(c).await;
                let container_dir = setup.container_dir(c);
                let (created, name) = self
                    .create_unsettled(&layout, c, &image, &container_dir, c.first_attempt, inst)
                    .await;
                started.push((c, created, name));
            }
            for (_, created, name) in &started {
                calls::start(&self.docker, &created.id, name, &created.instance).await;
            }
            for (c, created, name) in started {
                calls::wait_settled(&self.docker, &created.id, &name, &created.instance).await;
                self.link_log(&layout, c, &created).await;
                containers.push((c.name.clone(), vec![created]));
            }
        } else {
            for c in &pod.containers {
                let instances = self.create_instances(&layout, c).await;
                containers.push((c.name.clone(), instances));
            }
        }
        if pod.finished {
            // The kubelet stops the sandbox of a finished pod.
            let what = format!("sandbox {}", sandbox.name);
            calls::stop_and_wait(&self.docker, &sandbox.id, &what).await;
        }
        CreatedPod {
            namespace: pod.namespace.clone(),
            name: pod.name.clone(),
            uid: setup.uid,
            sandbox_id: sandbox.id,
            containers,
            annotations: setup.annotations.into_iter().collect(),
            cni_ips,
            host_veth,
            pod,
        }
    }

    /// Creates and starts the pod's sandbox in the pod's cgroup, and waits until it runs.
    async fn create_sandbox(&self, pod: &Pod, setup: &PodSetup) -> Sandbox {
        let cgroup_parent = pod.cgroup_parent(&setup.uid);
        let name = config::sandbox_name(pod, &setup.uid);
        let body = config::sandbox_body(pod, setup, &cgroup_parent);
        let id = calls::create(&self.docker, &name, body).await;
        self.docker
            .start_container(&id, None)
            .await
            .unwrap_or_else(|e| panic!("start sandbox {name}: {e}"));
        let running = util::wait_status(
            &self.docker,
            &id,
            &[ContainerStateStatusEnum::RUNNING],
            WAIT,
        )
        .await;
        Sandbox {
            pid: running.state.as_ref().and_then(|s| s.pid),
            id,
            name,
            cgroup_parent,
        }
    }

    /// Plays the CNI plugin for a pod that asks for an address ([`Pod::pod_ip`],
    /// [`Pod::cni_veth`]); the addresses `cni_veth` added and its host end.
    fn wire_cni(&self, pod: &Pod, sandbox: &Sandbox) -> (Vec<String>, Option<String>) {
        if let Some(cidr) = &pod.pod_ip {
            assert!(!pod.host_network, "a hostNetwork pod gets no CNI address");
            cni::cni_add(sandbox.pid.expect("sandbox pid"), cidr);
        }
        let Some(addresses) = &pod.cni else {
            return (Vec::new(), None);
        };
        assert!(!pod.host_network, "a hostNetwork pod gets no CNI address");
        let pid = sandbox.pid.expect("sandbox pid");
        let host_end = format!("pdc{}", util::random_hex(8));
        self.host_veths.lock().unwrap().push(host_end.clone());
        let ips = cni::cni_veth(pid, &host_end, addresses);
        (ips, Some(host_end))
    }

    /// Creates the container's instances in order (attempts counting up from its first one),
    /// each once the previous one has settled.
    async fn create_instances(
        &self,
        layout: &PodLayout<'_>,
        c: &Container,
    ) -> Vec<CreatedInstance> {
        let image = self.resolve_image(c).await;
        let container_dir = layout.setup.container_dir(c);
        let mut instances = Vec::new();
        for (i, inst) in c.instances_or_default().into_iter().enumerate() {
            let attempt = c.first_attempt + i as u32;
            let created = self
                .create_instance(layout, c, &image, &container_dir, attempt, inst)
                .await;
            instances.push(created);
        }
        instances
    }

    /// The container's image (default: the test app image), which must be there already.
    async fn resolve_image(&self, c: &Container) -> ContainerImage {
        let image_ref = c.image.clone().unwrap_or_else(util::app_image);
        let id = self
            .docker
            .inspect_image(&image_ref)
            .await
            .unwrap_or_else(|e| {
                panic!("test image {image_ref} is missing ({e}); run scripts/test to build it")
            })
            .id
            .expect("image id");
        ContainerImage {
            id,
            hash: c.spec_hash(&image_ref),
        }
    }

    /// Creates one instance of the container with its own termination-log file, and settles
    /// it as the instance asks.
    async fn create_instance(
        &self,
        layout: &PodLayout<'_>,
        c: &Container,
        image: &ContainerImage,
        container_dir: &Path,
        attempt: u32,
        inst: Instance,
    ) -> CreatedInstance {
        let (created, name) = self
            .create_unsettled(layout, c, image, container_dir, attempt, inst)
            .await;
        calls::settle(&self.docker, &created.id, &name, &created.instance).await;
        self.link_log(layout, c, &created).await;
        created
    }

    /// Creates one instance of the container with its own termination-log file, not started;
    /// the instance and its Docker name.
    async fn create_unsettled(
        &self,
        layout: &PodLayout<'_>,
        c: &Container,
        image: &ContainerImage,
        container_dir: &Path,
        attempt: u32,
        inst: Instance,
    ) -> (CreatedInstance, String) {
        let setup = layout.setup;
        // The kubelet makes a new termination-log file per instance.
        let termination_log = kubelet::new_termination_log(container_dir);
        let mounts = kubelet::container_mounts(
            layout.pod,
            c,
            &self.kubelet_root,
            &setup.uid,
            &setup.etc_hosts,
            &termination_log,
        );
        let body = config::container_body(layout, c, &inst, attempt, image, mounts);
        let name = config::container_name(layout.pod, c, &setup.uid, attempt);
        let id = calls::create(&self.docker, &name, body).await;
        let created = CreatedInstance {
            attempt,
            id,
            instance: inst,
            termination_log,
        };
        (created, name)
    }

    /// Links `<pod logs>/<ns>_<name>_<uid>/<container>/<restart>.log` to Docker's json-file
    /// log of a started instance, as cri-dockerd does.
    async fn link_log(&self, layout: &PodLayout<'_>, c: &Container, created: &CreatedInstance) {
        let inspect = util::inspect(&self.docker, &created.id).await;
        let Some(log) = inspect.log_path.filter(|path| !path.is_empty()) else {
            return;
        };
        let pod = layout.pod;
        let dir = self
            .pod_logs_dir
            .join(format!(
                "{}_{}_{}",
                pod.namespace, pod.name, layout.setup.uid
            ))
            .join(&c.name);
        std::fs::create_dir_all(&dir).expect("container log dir");
        let link = dir.join(format!("{}.log", created.attempt));
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&log, &link)
            .unwrap_or_else(|e| panic!("link {} to {log}: {e}", link.display()));
    }

    /// Runs a container that is not the kubelet's (no pod layout; only the labels given), from
    /// the test app image with `--network none`: running (`exit_code` `None`, the image's
    /// `sleep`) or exited with that code. Removed when the node is dropped. Returns its ID.
    pub async fn run_plain(
        &self,
        name: &str,
        labels: &[(&str, &str)],
        exit_code: Option<i64>,
    ) -> String {
        let name = format!("{name}-{}", self.suffix);
        let body = ContainerCreateBody {
            image: Some(util::app_image()),
            entrypoint: exit_code
                .map(|code| vec!["sh".into(), "-c".into(), format!("exit {code}")]),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            host_config: Some(HostConfig {
                network_mode: Some("none".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let id = calls::create(&self.docker, &name, body).await;
        self.plain_containers.lock().unwrap().push(id.clone());
        self.docker
            .start_container(&id, None)
            .await
            .unwrap_or_else(|e| panic!("start container {name}: {e}"));
        let wanted = if exit_code.is_some() {
            ContainerStateStatusEnum::EXITED
        } else {
            ContainerStateStatusEnum::RUNNING
        };
        util::wait_status(&self.docker, &id, &[wanted], WAIT).await;
        id
    }

    /// Stops a running container (e.g. a sandbox) and waits until it has exited.
    pub async fn stop(&self, id: &str) {
        calls::stop_and_wait(&self.docker, id, id).await;
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let take = |m: &Mutex<Vec<String>>| m.lock().map(|l| l.clone()).unwrap_or_default();
        let namespaces = take(&self.namespaces);
        let plain = take(&self.plain_containers);
        let veths = take(&self.host_veths);
        let dir = self.dir.clone();
        if std::env::var_os("PDC_TEST_KEEP").is_some() {
            eprintln!(
                "PDC_TEST_KEEP set: leaving namespaces {namespaces:?} and {}",
                dir.display()
            );
            return;
        }
        // Drop cannot await, and may run inside the test's runtime: clean up on a thread with
        // its own runtime and connection.
        let _ = std::thread::spawn(move || clean_up(&namespaces, &plain, &veths, &dir)).join();
    }
}

/// Removes what a node left: the containers of its namespaces and its plain ones, the host ends
/// of its veth pairs, its directory. Best effort; blocks on a runtime of its own.
fn clean_up(namespaces: &[String], plain: &[String], veths: &[String], dir: &Path) {
    if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        rt.block_on(async {
            let host = util::docker_host();
            if let Ok(d) = Docker::connect_with_host(&host)
                && let Ok(d) = d.negotiate_version().await
            {
                calls::remove_namespaces(&d, namespaces).await;
                for id in plain {
                    calls::force_remove(&d, id).await;
                }
            }
        });
    }
    // Removing the sandbox removes its namespace and with it the pair; a host end
    // whose sandbox is kept somehow goes here.
    for veth in veths {
        cni::delete_host_end(veth);
    }
    let _ = std::fs::remove_dir_all(dir);
}
