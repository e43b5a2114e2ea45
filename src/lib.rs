//! pod-detail-collector: a KubeDiag processor that tells what a pod looks like on this node,
//! straight from the Docker runtime, without asking the API server.
//!
//! The data flows one way:
//! `http` (request in) → `collector` → `runtime` (the only code that talks to Docker)
//! → `rebuild` (pure: inspected containers in, `v1.Pod` out) → `http` (reply out).

pub mod cli;
pub mod collector;
mod error;
pub mod host;
pub mod http;
pub mod memory;
pub mod metrics;
pub mod rebuild;
pub mod redact;
pub mod runtime;
pub mod server;
mod settings;

pub use error::{Error, PodRef, Result, RuntimeFailure};
pub use settings::Settings;
