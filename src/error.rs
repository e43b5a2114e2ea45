//! The one error type of the service. Each variant maps to exactly one HTTP status in
//! `http::reply`, so the message is written for the operator who reads it in the agent's log.

use std::fmt;
use std::time::Duration;

use crate::pod_ref::PodRef;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The service was started with a setting it cannot use.
    #[error("configuration: {0}")]
    Config(String),

    /// An answer could not be written as JSON.
    #[error("{subject} could not be serialized: {cause}")]
    Encoding { subject: String, cause: String },

    /// The request body is not what a KubeDiag processor accepts.
    #[error("bad request: {0}")]
    BadRequest(String),

    #[error("request body is larger than the limit of {limit} bytes")]
    BodyTooLarge { limit: usize },

    #[error("pod {pod} has no container on node {node}")]
    PodNotFound { pod: PodRef, node: String },

    /// The runtime could not be reached, did not answer in time, or answered an error.
    #[error("{context}: {cause}")]
    Runtime {
        context: String,
        cause: RuntimeFailure,
    },

    /// The answer would be larger than the agent accepts.
    #[error(
        "{subject}: the answer is {size} bytes, over the {limit}-byte limit of the KubeDiag agent"
    )]
    ReplyTooLarge {
        subject: String,
        size: usize,
        limit: usize,
    },
}

/// Why a call to the runtime failed. `runtime` names it with its address, as in
/// `docker daemon at unix:///var/run/docker.sock` or `CRI runtime at unix:///run/containerd/containerd.sock`.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RuntimeFailure {
    #[error("{runtime} did not answer within {}s", .timeout.as_secs_f32())]
    Timeout { runtime: String, timeout: Duration },

    #[error("{runtime} is unreachable: {detail}")]
    Unreachable { runtime: String, detail: String },

    #[error("{runtime} answered {status}: {message}")]
    Api {
        runtime: String,
        status: u16,
        message: String,
    },

    #[error("{runtime} sent an answer that could not be read: {detail}")]
    BadAnswer { runtime: String, detail: String },

    /// The collector serves only what the node's runtime can answer.
    #[error("{runtime} does not answer this: {detail}")]
    Unsupported { runtime: String, detail: String },
}

impl Error {
    /// Puts a runtime failure in the context of the pod (or the check) it happened for.
    pub fn runtime(context: impl fmt::Display, cause: RuntimeFailure) -> Self {
        Error::Runtime {
            context: context.to_string(),
            cause,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
