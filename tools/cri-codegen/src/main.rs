//! Regenerates `src/cri_api/runtime.v1.rs`, the CRI `runtime.v1` client and messages, from
//! `proto/cri-api/v1.proto`. Run through `scripts/gen-cri-api` (it installs `protoc`).
//!
//! The output is committed: the product builds offline and without `protoc`.
//! Only the client is generated (the product only calls a runtime). Every message derives
//! serde's `Serialize`/`Deserialize` with `#[serde(default)]`, so recorded runtime answers can
//! be stored as JSON fixtures and read back even when fields are missing.

use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()?;
    let proto_dir = repo.join("proto/cri-api");
    let out_dir = repo.join("src/cri_api");
    tonic_prost_build::configure()
        .build_server(false)
        .build_client(true)
        // No generated `connect()`: the product dials the unix socket itself
        // (`cri_api::connect`), so tonic's TCP transport is not needed.
        .build_transport(false)
        .emit_rerun_if_changed(false)
        .out_dir(&out_dir)
        .type_attribute(".", "#[derive(serde::Serialize, serde::Deserialize)]")
        .message_attribute(".", "#[serde(default)]")
        .compile_protos(&[proto_dir.join("v1.proto")], &[proto_dir])?;
    println!("wrote {}", out_dir.join("runtime.v1.rs").display());
    Ok(())
}
