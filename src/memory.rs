//! Gives memory freed after a burst of requests back to the node.
//!
//! glibc's allocator keeps freed memory in its arenas for reuse, so after a burst of
//! diagnoses the resident size stays at its peak on every node of the cluster. Asking it to
//! trim now and then returns what is free; when nothing is free the call is cheap.

use std::time::Duration;

#[cfg(all(target_os = "linux", target_env = "gnu"))]
unsafe extern "C" {
    /// glibc: releases free memory at the top of every arena and in whole free pages.
    safe fn malloc_trim(pad: usize) -> std::ffi::c_int;
}

const TRIM_EVERY: Duration = Duration::from_secs(5);

/// Runs until the process ends.
pub async fn trim_periodically() {
    let mut ticks = tokio::time::interval(TRIM_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        trim();
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() {
    malloc_trim(0);
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}
