//! The Kubernetes CRI API (`runtime.v1`): the gRPC client and messages the kubelet uses to
//! talk to a container runtime (containerd, CRI-O) over its unix socket.
//!
//! `runtime.v1.rs` is generated from `proto/cri-api/v1.proto` by `tools/cri-codegen` (run
//! `scripts/gen-cri-api`) and committed, so the build needs neither `protoc` nor a network.
//! Only the client side is generated. Every message also derives serde's `Serialize` and
//! `Deserialize` with `#[serde(default)]`: recorded answers can be kept as JSON fixtures and
//! read back even when fields are missing. Enum fields are `i32` on the wire and in JSON.
//!
//! ```ignore
//! let channel = cri_api::connect(Path::new("/run/containerd/containerd.sock")).await?;
//! let mut rt = cri_api::runtime_service_client::RuntimeServiceClient::new(channel);
//! let version = rt.version(cri_api::VersionRequest::default()).await?.into_inner();
//! ```

use std::path::Path;

use tonic::transport::{Channel, Endpoint, Uri};

#[allow(clippy::all, rustdoc::all)]
#[path = "runtime.v1.rs"]
pub mod v1;

pub use v1::*;

/// Connects to a CRI runtime's unix socket (e.g. `/run/containerd/containerd.sock`). The
/// connection is made before this returns; bound the wait with a timeout around the call.
pub async fn connect(socket: &Path) -> Result<Channel, tonic::transport::Error> {
    let socket = socket.to_path_buf();
    // gRPC needs a URI; over a unix socket its host is never resolved.
    Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(socket).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
            }
        }))
        .await
}
