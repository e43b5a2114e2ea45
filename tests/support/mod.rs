//! Test support for pod-detail-collector's integration tests.
//!
//! - [`kubelet`]: creates pods on the real Docker daemon exactly as the kubelet's dockershim
//!   does (sandbox + container instances, labels, cgroups, resources, mounts), and cleans up.
//! - [`cri`]: lays the same pod descriptions out over CRI (containerd) exactly as the
//!   kubelet's kuberuntime does, reads them back with the CRI read calls, and cleans up.
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
pub mod kubelet;
pub mod pod;
pub mod service;
pub mod util;

// Not every test crate that includes this module uses every name.
#[allow(unused_imports)]
pub use kubelet::{Container, CreatedPod, Instance, Node, Pod, Volume};
#[allow(unused_imports)]
pub use service::{Collector, HOST_IP, NODE_NAME, PROCESSOR_PATH};
