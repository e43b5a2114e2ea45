//! pod-detail-collector: a KubeDiag processor that tells what a pod looks like on this node,
//! straight from the container runtime, without asking the API server.
//!
//! The data flows one way:
//! `http` (route, parse) → `collector` → `runtime::docker` (the only code that talks to the
//! runtime, turning its answers into a `record`) → `host` (what the node's files add) →
//! `rebuild` (pure: record in, `v1.Pod` out) → `http` (reply).
//!
//! Below all of them: `record` (the runtime-neutral shape of a pod), `kubelet` (the kubelet's
//! label and annotation keys), `pod_ref`, `error` and `metrics`, which import nothing above.

pub mod allow_from;
pub mod cli;
pub mod collector;
pub mod cri_api;
pub mod docker_context;
mod error;
pub mod host;
pub mod http;
pub mod kubelet;
pub mod memory;
pub mod metrics;
pub mod pod_ref;
pub mod printer;
pub mod rebuild;
pub mod record;
pub mod redact;
pub mod runtime;
pub mod server;
mod settings;

pub use error::{Error, Result, RuntimeFailure};
pub use pod_ref::PodRef;
pub use settings::Settings;
