//! Gives memory freed after a burst of requests back to the node.
//!
//! glibc's allocator keeps freed memory in its arenas for reuse, so after a burst of
//! diagnoses the resident size stays at its peak on every node of the cluster. Asking it to
//! trim now and then returns what is free; when nothing is free the call is cheap. At start,
//! [`configure`] keeps one arena (each holds freed memory of its own) and maps large
//! blocks (a node-wide list, a big answer) on their own, so that freeing one returns it at
//! once instead of leaving a hole under what the event index keeps. The image also turns
//! glibc's per-thread caches of freed blocks off (`GLIBC_TUNABLES` in `docker/Dockerfile`):
//! no trim reaches them.

use std::time::Duration;

#[cfg(all(target_os = "linux", target_env = "gnu"))]
unsafe extern "C" {
    /// glibc: releases free memory at the top of every arena and in whole free pages.
    safe fn malloc_trim(pad: usize) -> std::ffi::c_int;
}

const TRIM_EVERY: Duration = Duration::from_secs(5);

/// Blocks this large or larger are mapped on their own (glibc's initial threshold, kept fixed:
/// by default it grows with every large block freed).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: std::ffi::c_int = 128 * 1024;
/// One arena for every thread: each thread's cache of small blocks serves most allocations
/// without its lock, and every further arena keeps freed pages of its own after a burst,
/// pinned by the few blocks in it that outlive a request.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const ARENAS: std::ffi::c_int = 1;

/// Sets the allocator up; call once, first thing, before any thread starts.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn configure() {
    // SAFETY: mallopt only changes allocator parameters; called before any other thread.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, ARENAS);
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        libc::mallopt(libc::M_TRIM_THRESHOLD, MMAP_THRESHOLD);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn configure() {}

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
