//! Which containers belong to which pod, kept from Docker's event log instead of a container
//! list call per request (`--event-index`).
//!
//! Before answering, the index catches up with the events logged since it was last current,
//! up to the moment the request arrived. Docker keeps its last 256 events in memory and
//! answers a bounded `since`/`until` query from them, so the catch-up is one small call whose
//! cost does not grow with the number of containers, where a list call walks every container.
//! When the window may hold more events than Docker kept, the index is rebuilt from a list.
//! Container *states* are never taken from the index: every answer still inspects each
//! container, so an index entry can at worst name a container that is gone (skipped).

use std::collections::HashMap;

use bollard::models::{EventMessage, EventMessageTypeEnum, ImageInspect};

use crate::kubelet::{POD_NAME_LABEL, POD_NAMESPACE_LABEL};
use crate::pod_ref::PodRef;
use crate::runtime::Scope;

/// Docker's in-memory event log holds this many events; a window that returns as many may
/// have lost older ones.
pub const DOCKER_EVENT_BUFFER: usize = 256;

/// Events are timestamped before they are appended to Docker's log, so one may land just
/// behind a window that was already read. Each catch-up re-reads this much of the past;
/// applying an event twice changes nothing.
pub const OVERLAP_NANOS: i64 = 1_000_000_000;

#[derive(Debug, Default)]
pub struct PodIndex {
    /// Every event logged up to this time (Unix nanoseconds) is applied; `None` until the first
    /// list.
    current_until: Option<i64>,
    containers: HashMap<String, PodRef>,
    /// Image inspects by image ID. The content of an ID never changes; its tags and digests do,
    /// so any image event empties the cache.
    images: HashMap<String, ImageInspect>,
}

/// What a catch-up found.
#[derive(Debug, PartialEq, Eq)]
pub enum CatchUp {
    Applied,
    /// Docker may have dropped events of the window: rebuild from a list.
    Overflowed,
}

impl PodIndex {
    /// Whether the index already reflects everything logged up to `time`.
    pub fn current_at(&self, time: i64) -> bool {
        self.current_until.is_some_and(|until| until >= time)
    }

    /// Where the next catch-up starts reading, `None` when a list is needed first.
    pub fn catch_up_since(&self) -> Option<i64> {
        self.current_until.map(|until| until - OVERLAP_NANOS)
    }

    /// Replaces the index with a fresh list taken at `as_of` (read before the list call, so
    /// that the next catch-up covers whatever happened during it).
    pub fn reset(&mut self, listed: impl IntoIterator<Item = (String, PodRef)>, as_of: i64) {
        self.containers = listed.into_iter().collect();
        self.images.clear();
        self.current_until = Some(as_of);
    }

    /// Applies the events of the window `[since, until]`, in the order Docker logged them.
    pub fn apply(&mut self, events: &[EventMessage], until: i64) -> CatchUp {
        if events.len() >= DOCKER_EVENT_BUFFER {
            self.current_until = None;
            return CatchUp::Overflowed;
        }
        for event in events {
            match event.typ {
                Some(EventMessageTypeEnum::CONTAINER) => self.apply_container_event(event),
                Some(EventMessageTypeEnum::IMAGE) => self.images.clear(),
                _ => {}
            }
        }
        self.current_until = Some(until);
        CatchUp::Applied
    }

    fn apply_container_event(&mut self, event: &EventMessage) {
        let Some(actor) = &event.actor else { return };
        let Some(id) = actor.id.clone() else { return };
        match event.action.as_deref() {
            Some("create") => {
                // The kubelet's labels travel with the event: no inspect needed.
                let attributes = actor.attributes.as_ref();
                let label = |key| attributes.and_then(|a| a.get(key)).cloned();
                if let (Some(namespace), Some(name)) =
                    (label(POD_NAMESPACE_LABEL), label(POD_NAME_LABEL))
                {
                    self.containers.insert(id, PodRef { namespace, name });
                }
            }
            Some("destroy") => {
                self.containers.remove(&id);
            }
            _ => {}
        }
    }

    /// The IDs of the containers in scope, sorted.
    pub fn container_ids(&self, scope: &Scope) -> Vec<String> {
        let mut ids: Vec<String> = self
            .containers
            .iter()
            .filter(|(_, pod)| scope.contains(pod))
            .map(|(id, _)| id.clone())
            .collect();
        ids.sort();
        ids
    }

    /// A container that inspect no longer finds.
    pub fn forget(&mut self, id: &str) {
        self.containers.remove(id);
    }

    pub fn image(&self, id: &str) -> Option<&ImageInspect> {
        self.images.get(id)
    }

    pub fn remember_image(&mut self, id: &str, image: ImageInspect) {
        self.images.insert(id.to_string(), image);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::EventActor;

    fn pod(namespace: &str, name: &str) -> PodRef {
        PodRef {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    fn container_event(action: &str, id: &str, labels: Option<(&str, &str)>) -> EventMessage {
        let attributes = labels.map(|(namespace, name)| {
            HashMap::from([
                (POD_NAMESPACE_LABEL.to_string(), namespace.to_string()),
                (POD_NAME_LABEL.to_string(), name.to_string()),
            ])
        });
        EventMessage {
            typ: Some(EventMessageTypeEnum::CONTAINER),
            action: Some(action.into()),
            actor: Some(EventActor {
                id: Some(id.into()),
                attributes,
            }),
            ..EventMessage::default()
        }
    }

    #[test]
    fn follows_creates_and_destroys_in_order() {
        let mut index = PodIndex::default();
        assert_eq!(index.catch_up_since(), None);
        index.reset([("a".to_string(), pod("ns", "web"))], 100);
        assert!(index.current_at(100) && !index.current_at(101));
        let events = [
            container_event("create", "b", Some(("ns", "web"))),
            container_event("create", "plain", None),
            container_event("die", "a", Some(("ns", "web"))),
            container_event("destroy", "a", Some(("ns", "web"))),
            container_event("create", "c", Some(("other", "web"))),
        ];
        assert_eq!(index.apply(&events, 200), CatchUp::Applied);
        // Applying the overlap again changes nothing.
        assert_eq!(index.apply(&events, 250), CatchUp::Applied);
        assert_eq!(index.container_ids(&Scope::Pod(&pod("ns", "web"))), ["b"]);
        assert_eq!(index.container_ids(&Scope::Namespace("other")), ["c"]);
        assert_eq!(index.container_ids(&Scope::Node), ["b", "c"]);
        assert!(index.current_at(250));
        assert_eq!(index.catch_up_since(), Some(250 - OVERLAP_NANOS));
    }

    #[test]
    fn a_full_event_buffer_forces_a_list() {
        let mut index = PodIndex::default();
        index.reset([], 1);
        let events = vec![container_event("start", "x", None); DOCKER_EVENT_BUFFER];
        assert_eq!(index.apply(&events, 2), CatchUp::Overflowed);
        assert_eq!(index.catch_up_since(), None);
    }

    #[test]
    fn image_events_empty_the_image_cache() {
        let mut index = PodIndex::default();
        index.reset([], 1);
        index.remember_image("sha256:1", ImageInspect::default());
        let untag = EventMessage {
            typ: Some(EventMessageTypeEnum::IMAGE),
            action: Some("untag".into()),
            ..EventMessage::default()
        };
        index.apply(&[untag], 2);
        assert!(index.image("sha256:1").is_none());
    }
}
