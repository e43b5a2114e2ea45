//! The measured clients, each a method of [`crate::measure::Bench`] that measures one point:
//!
//! - `floor.rs`: the Docker API calls the answer needs, made by a bare bollard client
//!   (`floor`, `floor_seq`, `list_only`);
//! - `cli.rs`: the docker command line, as a person on the node would type it (`cli`);
//! - `collector.rs`: the collector process, asked over HTTP (`collector`).

mod cli;
mod collector;
mod floor;
