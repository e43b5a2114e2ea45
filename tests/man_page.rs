//! The man pages in `docs/man/` are the command line's own definitions (`src/cli.rs`) rendered
//! by clap_mangen: this test renders them again and fails when a committed page is stale.
//! `PDC_UPDATE_MAN=1 cargo test --test man_page` writes them. The binary carries no man page
//! generator: the pages are made here, at test time.
//!
//! Needs no daemon: part of the fast tier.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use clap::CommandFactory;
use pod_detail_collector::cli::Cli;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every page clap_mangen makes (the command and each subcommand), by file name.
fn rendered() -> BTreeMap<String, String> {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "pdc-man-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("temporary directory");
    clap_mangen::generate_to(Cli::command(), &dir).expect("render the man pages");
    let pages = read_pages(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    pages
}

fn read_pages(dir: &Path) -> BTreeMap<String, String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return BTreeMap::new();
    };
    entries
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "1"))
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&path).expect("read a page"))
        })
        .collect()
}

#[test]
fn committed_man_pages_are_the_command_lines_own() {
    let pages = rendered();
    let committed_dir = repo().join("docs/man");
    if std::env::var_os("PDC_UPDATE_MAN").is_some() {
        std::fs::create_dir_all(&committed_dir).expect("docs/man");
        for stale in read_pages(&committed_dir).keys() {
            std::fs::remove_file(committed_dir.join(stale)).expect("remove a stale page");
        }
        for (name, text) in &pages {
            std::fs::write(committed_dir.join(name), text).expect("write a page");
        }
    }
    let committed = read_pages(&committed_dir);
    assert_eq!(
        committed.keys().collect::<Vec<_>>(),
        pages.keys().collect::<Vec<_>>(),
        "docs/man holds other pages than the command line has: run \
         PDC_UPDATE_MAN=1 cargo test --test man_page"
    );
    for (name, text) in &pages {
        assert!(
            committed[name] == *text,
            "docs/man/{name} is stale: run PDC_UPDATE_MAN=1 cargo test --test man_page"
        );
    }
}

#[test]
fn the_pages_document_every_command_and_the_exit_codes() {
    let pages = rendered();
    for name in [
        "pod-detail-collector.1",
        "pod-detail-collector-serve.1",
        "pod-detail-collector-get.1",
        "pod-detail-collector-completions.1",
    ] {
        assert!(pages.contains_key(name), "no {name} in {:?}", pages.keys());
    }
    let get = &pages["pod-detail-collector-get.1"];
    for needle in [
        "all\\-namespaces",
        "DOCKER_HOST",
        "CONTAINER_RUNTIME_ENDPOINT",
        "Exit codes",
        "3 a pod named is not on this node",
    ] {
        assert!(
            get.contains(needle),
            "no {needle:?} in the get page:\n{get}"
        );
    }
}
