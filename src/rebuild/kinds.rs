//! Which containers are init containers. Upstream kubelets write no container type (only some
//! forks write `io.kubernetes.container.type`), so the kubelet's own ordering is the evidence
//! (SPEC §4): in one sandbox it runs the init containers one at a time, each to a successful
//! exit, before it creates the next, and creates the regular containers only after the last
//! init container succeeded. Ordering a sandbox's containers by the creation of their first
//! instance there, the leading ones whose newest instance exited 0 before the next one's first
//! instance was created are init containers, in that order; the first that fails the test and
//! all after it are regular. A static pod's manifest, or the type annotation where a kubelet
//! wrote it, says it outright and wins.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::PodSpec;
use k8s_openapi::jiff::Timestamp;

use crate::kubelet::{self, ContainerKind};
use crate::record::{Instance, PodView, State};

/// The kind of every container of the pod, and the init containers' order.
#[derive(Debug, Default)]
pub(super) struct Kinds {
    by_name: BTreeMap<String, ContainerKind>,
    /// The init containers in the order the kubelet ran them.
    init_order: Vec<String>,
    /// Told by the order alone, not by the kubelet or a manifest.
    pub inferred: bool,
}

impl Kinds {
    pub fn of(&self, name: &str) -> ContainerKind {
        self.by_name
            .get(name)
            .copied()
            .unwrap_or(ContainerKind::App)
    }

    /// Where an init container stands in the order the kubelet ran them.
    pub fn init_position(&self, name: &str) -> usize {
        self.init_order
            .iter()
            .position(|init| init == name)
            .unwrap_or(usize::MAX)
    }

    pub fn has_init(&self) -> bool {
        !self.init_order.is_empty()
    }
}

pub(super) fn kinds(view: &PodView, manifest: Option<&PodSpec>) -> Kinds {
    if let Some(manifest) = manifest {
        return from_manifest(view, manifest);
    }
    let annotated = view
        .containers
        .values()
        .flatten()
        .any(|instance| instance.annotation(kubelet::CONTAINER_TYPE).is_some());
    if annotated {
        return from_annotations(view);
    }
    inferred(view)
}

/// A static pod: its manifest lists the init containers, in order.
fn from_manifest(view: &PodView, manifest: &PodSpec) -> Kinds {
    let init_order: Vec<String> = manifest
        .init_containers
        .iter()
        .flatten()
        .map(|c| c.name.clone())
        .collect();
    let mut by_name = BTreeMap::new();
    for name in view.containers.keys() {
        let kind = if init_order.iter().any(|init| init == name) {
            ContainerKind::Init
        } else if manifest.containers.iter().any(|c| c.name == *name) {
            ContainerKind::App
        } else {
            newest_kind(view, name)
        };
        by_name.insert(name.to_string(), kind);
    }
    Kinds {
        by_name,
        init_order,
        inferred: false,
    }
}

fn newest_kind(view: &PodView, name: &str) -> ContainerKind {
    view.containers
        .get(name)
        .and_then(|history| history.first())
        .map_or(ContainerKind::App, |instance| instance.kind())
}

/// A kubelet that writes the type: init containers in the order they were first created.
fn from_annotations(view: &PodView) -> Kinds {
    let by_name: BTreeMap<String, ContainerKind> = view
        .containers
        .keys()
        .map(|name| (name.to_string(), newest_kind(view, name)))
        .collect();
    let mut init: Vec<(Option<Timestamp>, &str)> = view
        .containers
        .iter()
        .filter(|(name, _)| by_name.get(**name) == Some(&ContainerKind::Init))
        .map(|(name, history)| (history.iter().filter_map(|i| i.created).min(), *name))
        .collect();
    init.sort();
    Kinds {
        by_name,
        init_order: init.into_iter().map(|(_, name)| name.to_string()).collect(),
        inferred: false,
    }
}

/// No type anywhere: the order in each sandbox tells. A container is judged in the newest
/// sandbox that holds an instance of it; without any sandbox nothing can be told.
fn inferred(view: &PodView) -> Kinds {
    let mut kinds = Kinds {
        inferred: true,
        ..Kinds::default()
    };
    // Newest sandbox first, each one's instances oldest first: the init containers come in
    // the order the kubelet ran them.
    for sandbox in &view.sandboxes {
        let instances = view.instances_in(sandbox);
        let init = init_containers(&instances);
        for instance in &instances {
            if kinds.by_name.contains_key(&instance.name) {
                continue;
            }
            let kind = if init.contains(&instance.name.as_str()) {
                ContainerKind::Init
            } else {
                ContainerKind::App
            };
            kinds.by_name.insert(instance.name.clone(), kind);
            if kind == ContainerKind::Init {
                kinds.init_order.push(instance.name.clone());
            }
        }
    }
    kinds
}

/// The init containers of one sandbox, in order, from its instances.
pub(super) fn init_containers<'a>(instances: &[&'a Instance]) -> Vec<&'a str> {
    // Per container: the creation of its first instance and its newest instance.
    let mut containers: BTreeMap<&str, (Option<Timestamp>, &Instance)> = BTreeMap::new();
    for instance in instances {
        let entry = containers
            .entry(instance.name.as_str())
            .or_insert((instance.created, instance));
        entry.0 = entry.0.min(instance.created);
        if (instance.created, instance.attempt) > (entry.1.created, entry.1.attempt) {
            entry.1 = instance;
        }
    }
    let mut order: Vec<(Option<Timestamp>, &str, &Instance)> = containers
        .into_iter()
        .map(|(name, (first, newest))| (first, name, newest))
        .collect();
    order.sort_by_key(|(first, name, _)| (*first, *name));

    let mut init = Vec::new();
    for pair in order.windows(2) {
        let [(_, name, newest), (next_created, _, _)] = pair else {
            break;
        };
        let finished = match newest.state {
            State::Exited {
                exit_code: 0,
                finished,
                ..
            } if !newest.oom_killed => finished,
            _ => None,
        };
        match (finished, next_created) {
            (Some(finished), Some(next_created)) if finished < *next_created => init.push(*name),
            _ => break,
        }
    }
    init
}
