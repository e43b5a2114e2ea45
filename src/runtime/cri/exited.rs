//! The records of exited containers, kept between requests.
//!
//! A CRI container that has exited never changes again: the kubelet never restarts one (it
//! creates a new container, with a new ID), and a runtime does nothing more to an exited
//! container than remove it. So once converted, its instance is kept by ID and served for as
//! long as `ListContainers` lists that ID as exited; the status of running and created
//! containers, and of every sandbox, is asked on each request. A list drops the entries of the
//! pods it covers that it no longer shows, and entries no request has listed for ten minutes
//! are dropped too: the cache holds only what the node holds.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use crate::pod_ref::PodRef;
use crate::record::{Instance, PodRecord, Shelf};
use crate::runtime::Scope;

/// An entry no list has shown for this long is dropped.
const UNSEEN_FOR: Duration = Duration::from_secs(600);
/// How often entries are checked for that.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Kept instances by container ID, filed under their pod (`namespace/name`: a namespace
/// holds no `/`), with when a list last showed each.
#[derive(Debug)]
pub struct Exited {
    shelf: Shelf<Instant>,
    swept: Instant,
}

impl Exited {
    pub fn new(now: Instant) -> Self {
        Exited {
            shelf: Shelf::default(),
            swept: now,
        }
    }

    /// The kept instance of a container a list shows as exited now.
    pub fn get(&mut self, id: &str, now: Instant) -> Option<Instance> {
        *self.shelf.meta_mut(id)? = now;
        self.shelf.record(id)?.containers.pop()
    }

    /// Keeps an instance whose status, asked after a list showed it exited, was converted.
    pub fn keep(&mut self, pod: &PodRef, instance: &Instance, now: Instant) {
        let record = PodRecord {
            sandboxes: Vec::new(),
            containers: vec![instance.clone()],
        };
        let tag = format!("{}/{}", pod.namespace, pod.name);
        self.shelf
            .insert(&instance.id.id, tag.as_bytes(), now, &record);
        if now.saturating_duration_since(self.swept) >= SWEEP_EVERY {
            self.shelf
                .retain(|_, _, seen| now.saturating_duration_since(*seen) < UNSEEN_FOR);
            self.swept = now;
        }
    }

    /// After a list of `scope`: the entries of pods in it that the list no longer shows were
    /// removed from the node.
    pub fn forget_unlisted(&mut self, scope: &Scope, listed: &HashSet<&str>) {
        self.shelf.retain(|id, pod, _| {
            !in_scope(scope, pod) || std::str::from_utf8(id).is_ok_and(|id| listed.contains(id))
        });
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.shelf.len()
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.shelf.is_empty()
    }
}

/// Whether the pod an entry is filed under (`namespace/name`) is in `scope`.
fn in_scope(scope: &Scope, pod: &[u8]) -> bool {
    let (namespace, name) = match pod.iter().position(|&byte| byte == b'/') {
        Some(at) => (&pod[..at], &pod[at + 1..]),
        None => (pod, &[][..]),
    };
    match scope {
        Scope::Pod(wanted) => {
            namespace == wanted.namespace.as_bytes() && name == wanted.name.as_bytes()
        }
        Scope::Namespace(wanted) => namespace == wanted.as_bytes(),
        Scope::Node => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{ContainerId, State};

    fn pod(name: &str) -> PodRef {
        PodRef {
            namespace: "shop".into(),
            name: name.into(),
        }
    }

    fn exited(id: &str, exit_code: i32) -> Instance {
        Instance {
            id: ContainerId {
                runtime: "containerd".into(),
                id: id.into(),
            },
            name: "app".into(),
            state: State::Exited {
                exit_code,
                reason: Some("Error".into()),
                message: None,
                started: None,
                finished: None,
            },
            ..Instance::default()
        }
    }

    #[test]
    fn a_kept_instance_comes_back_until_a_list_no_longer_shows_it() {
        let now = Instant::now();
        let mut cache = Exited::new(now);
        cache.keep(&pod("a"), &exited("1", 2), now);
        cache.keep(&pod("b"), &exited("2", 3), now);
        let back = cache.get("1", now).expect("kept");
        assert_eq!(back.id.id, "1");
        assert!(matches!(back.state, State::Exited { exit_code: 2, .. }));
        assert!(cache.get("3", now).is_none());

        // Pod a's list shows nothing any more: its entry goes, pod b's stays.
        let a = pod("a");
        cache.forget_unlisted(&Scope::Pod(&a), &HashSet::new());
        assert!(cache.get("1", now).is_none());
        assert!(cache.get("2", now).is_some());

        // A list of another namespace leaves it be.
        cache.forget_unlisted(&Scope::Namespace("other"), &HashSet::new());
        assert!(cache.get("2", now).is_some());

        // A node-wide list without it drops it too.
        cache.forget_unlisted(&Scope::Node, &HashSet::from(["9"]));
        assert!(cache.is_empty());
    }

    #[test]
    fn entries_no_list_showed_for_ten_minutes_are_dropped() {
        let start = Instant::now();
        let mut cache = Exited::new(start);
        cache.keep(&pod("a"), &exited("1", 0), start);
        cache.keep(&pod("b"), &exited("2", 0), start);
        let later = start + Duration::from_secs(400);
        assert!(cache.get("2", later).is_some());
        // Another keep, past the sweep interval and past ten minutes of "1" unseen.
        cache.keep(&pod("c"), &exited("3", 0), start + UNSEEN_FOR);
        assert!(cache.get("1", start + UNSEEN_FOR).is_none());
        assert_eq!(cache.len(), 2);
    }
}
