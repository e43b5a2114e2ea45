//! The measured clients, each a method of [`crate::measure::Bench`] that measures one point:
//!
//! - `floor.rs`: the Docker API calls the answer needs, made by a bare bollard client
//!   (`floor`, `floor_seq`, `list_only`);
//! - `cli.rs`: the docker command line, as a person on the node would type it (`cli`);
//! - `cri_floor.rs`: the CRI calls the answer needs, made by a bare CRI client on the same
//!   socket (`cri_floor`, `cri_list_only`);
//! - `collector.rs`: the collector process, asked over HTTP (`collector`), on either runtime.

mod cli;
mod collector;
mod cri_floor;
mod floor;
