//! Test support for pod-detail-collector's integration tests.
//!
//! Laying pods out on a node, by job:
//! - [`scenario`]: the runtime-neutral pod descriptions the tests write ([`Pod`], [`Container`],
//!   [`Instance`], [`Volume`], ports, mounts) and what laying one out gave back
//!   ([`CreatedPod`]).
//! - [`kubelet`]: the kubelet's rules both layouts apply to a description: QoS class, cgroup
//!   parent, OOM score, CPU shares and quota, the ports annotation, the pod's UID and directory
//!   under the kubelet root (`etc-hosts`, volumes, termination-log files), the sandbox and
//!   container annotations, identity labels and mounts.
//! - [`docker`]: [`Node`] creates pods on the real Docker daemon exactly as the kubelet's
//!   dockershim does (sandbox + container instances, labels, cgroups, resources, mounts, CNI),
//!   and cleans up.
//! - [`cri`]: its twin over CRI (containerd): lays the same descriptions out exactly as the
//!   kubelet's kuberuntime does, reads them back with the CRI read calls, and cleans up.
//!
//! Talking to the collector and checking what it answers:
//! - [`service`]: runs the collector in-process and talks HTTP to it.
//! - [`pod`]: small accessors for the rebuilt `v1.Pod` JSON.
//! - [`checks`]: field-by-field assertions shared by the tests.
//! - [`util`]: daemon address, test image names, randomness, waiting.
//!
//! Environment: `DOCKER_HOST` (default `unix:///var/run/docker.sock`), `PDC_TEST_PAUSE_IMAGE`
//! (default `pdc-test/pause:1`), `PDC_TEST_APP_IMAGE` (default `pdc-test/app:1`),
//! `PDC_TEST_KEEP` (leave the containers and directories behind for a look); for CRI,
//! `CONTAINER_RUNTIME_ENDPOINT`, `PDC_TEST_CRI_PAUSE_IMAGE`, `PDC_TEST_CRI_APP_IMAGE` and
//! `PDC_TEST_CRI_NETNS` (see [`cri`]).
//! `scripts/test` starts private daemons (dockerd, containerd), builds the images and sets all
//! of these.

#![allow(dead_code)]

pub mod checks;
pub mod cri;
pub mod docker;
pub mod kubelet;
pub mod pod;
pub mod scenario;
pub mod service;
pub mod util;

// Not every test crate that includes this module uses every name.
#[allow(unused_imports)]
pub use docker::Node;
#[allow(unused_imports)]
pub use scenario::{Container, CreatedPod, Instance, Pod, Volume};
#[allow(unused_imports)]
pub use service::{Collector, HOST_IP, NODE_NAME, PROCESSOR_PATH};
