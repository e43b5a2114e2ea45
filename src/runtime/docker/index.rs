//! Which containers belong to which pod, kept from Docker's event log instead of a container
//! list call per request, and the answers that cannot change until an event says so.
//!
//! Before answering, the index catches up with the events logged since it was last current,
//! up to the daemon's own time at the request (see `clock`). Docker keeps its last 256
//! events in memory and answers a bounded `since`/`until` query from them, so the catch-up is
//! one small call whose cost does not grow with the number of containers, where a list call
//! walks every container. When the window may hold more events than Docker kept, the index is
//! rebuilt from a list.
//!
//! What is cached, and until when:
//! - membership (container ID → pod), from the list and then `create`/`destroy` events;
//! - the record of each **exited** member, as the last live inspect showed it (packed): an exited
//!   container never changes again unless Docker logs an event about it (the kubelet never
//!   restarts one, it creates a new one; a `start`, `rename`, `update`, network change or
//!   `destroy` is an event). Any event naming it drops the entry; running, created, paused
//!   or restarting containers are inspected live on every request;
//! - image inspects by image ID, until any image event (tags and digests move).
//!
//! Every cache holds members only, so all are bounded by the node's own containers.
//!
//! A record is learnt by an inspect made after the index was current up to daemon time `T`
//! (Docker answered the catch-up only once its clock had passed `T`, so the inspect came
//! later). Docker changes a container and logs the event about it under the container's
//! lock, and inspect takes that lock, so the inspect already shows every event stamped up to
//! `T`: re-reading one of those (the overlap) keeps the record. An event stamped later drops
//! it, and a record is not kept at all if such an event was applied while it was being
//! inspected (so a racing `start` cannot be papered over by an older inspect).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use bollard::models::ImageInspect;
use serde::Deserialize;
use serde::de::{self, IgnoredAny, MapAccess, Visitor};

use crate::kubelet::{POD_NAME_LABEL, POD_NAMESPACE_LABEL};
use crate::pod_ref::PodRef;
use crate::record::{PodRecord, Shelf};
use crate::runtime::Scope;

/// Docker's in-memory event log holds this many events.
pub const DOCKER_EVENT_BUFFER: usize = 256;

/// A window that returns this many events may have lost older ones to the log's limit (a few
/// of the log's events can lie after the window's end, so the check leaves room for them):
/// the index is rebuilt from a list.
pub const OVERFLOW_AT: usize = DOCKER_EVENT_BUFFER - 32;

/// Events are timestamped before they are appended to Docker's log, so one may land just
/// behind a window that was already read. Each catch-up re-reads this much of the past;
/// applying an event twice changes nothing.
pub const OVERLAP_NANOS: i64 = 1_000_000_000;

/// One event, reduced to what the index reads.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Event {
    #[serde(rename = "Type", default)]
    pub kind: String,
    #[serde(rename = "Action", default)]
    pub action: String,
    #[serde(rename = "Actor", default)]
    pub actor: Actor,
    /// When the daemon logged it, by its clock (Unix nanoseconds).
    #[serde(rename = "timeNano", default)]
    pub time_nano: i64,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Actor {
    #[serde(rename = "ID", default)]
    pub id: String,
    #[serde(rename = "Attributes", default)]
    pub attributes: Attributes,
}

/// The pod labels of a container (its event attributes or its labels in a list), and the
/// container a network or volume event is about. Every other key is skipped unread.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attributes {
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub container: Option<String>,
}

impl Attributes {
    pub fn pod(&self) -> Option<PodRef> {
        Some(PodRef {
            namespace: self.namespace.clone()?,
            name: self.name.clone()?,
        })
    }
}

impl<'de> Deserialize<'de> for Attributes {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Keys;
        impl<'de> Visitor<'de> for Keys {
            type Value = Attributes;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of labels")
            }
            fn visit_unit<E>(self) -> Result<Attributes, E> {
                Ok(Attributes::default())
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Attributes, A::Error> {
                let mut found = Attributes::default();
                while let Some(key) = map.next_key::<Key>()? {
                    match key {
                        Key::Namespace => found.namespace = map.next_value()?,
                        Key::Name => found.name = map.next_value()?,
                        Key::Container => found.container = map.next_value()?,
                        Key::Other => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(found)
            }
        }
        deserializer.deserialize_any(Keys)
    }
}

/// A label key, told without allocating.
enum Key {
    Namespace,
    Name,
    Container,
    Other,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a label key")
            }
            fn visit_str<E>(self, key: &str) -> Result<Key, E> {
                Ok(match key {
                    POD_NAMESPACE_LABEL => Key::Namespace,
                    POD_NAME_LABEL => Key::Name,
                    "container" => Key::Container,
                    _ => Key::Other,
                })
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// One container of a node-wide list, reduced to what the index keeps.
#[derive(Debug, Deserialize)]
pub struct Listed {
    #[serde(rename = "Id")]
    pub id: String,
    #[serde(rename = "Labels", default)]
    pub labels: Attributes,
}

/// The events of an answer to `GET /events` (one JSON object after another).
pub fn parse_events(body: &[u8]) -> Result<Vec<Event>, serde_json::Error> {
    serde_json::Deserializer::from_slice(body)
        .into_iter::<Event>()
        .collect()
}

#[derive(Debug)]
struct Member {
    pod: PodRef,
    /// The daemon's stamp on the latest event applied about it.
    touched: i64,
}

#[derive(Debug, Clone, Copy)]
struct Current {
    /// Requests that arrived up to this local time are answered by the index as it is.
    covers: i64,
    /// Every event the daemon logged up to this time (its clock) is applied.
    seen_until: i64,
}

#[derive(Debug, Default)]
pub struct PodIndex {
    /// `None` until the first list, and after anything that voids it.
    current: Option<Current>,
    members: HashMap<String, Member>,
    /// The records of exited members (one sandbox or one instance each), packed, with the
    /// daemon time up to which the inspect each came from shows every event.
    exited: Shelf<i64>,
    /// Image inspects by image ID.
    images: HashMap<String, Arc<ImageInspect>>,
    /// Bumped by every rebuild.
    generation: u64,
    /// Bumped by every image event and every rebuild.
    image_epoch: u64,
}

/// What a catch-up found.
#[derive(Debug, PartialEq, Eq)]
pub enum CatchUp {
    Applied,
    /// Docker may have dropped events of the window: rebuild from a list.
    Overflowed,
}

/// What the index says about the containers in a scope.
#[derive(Debug, Default)]
pub struct Lookup {
    /// The index as it was looked up (for [`PodIndex::remember_exited`] and
    /// [`PodIndex::remember_image`]): its generation, image epoch, and the daemon time up to
    /// which it had applied every event.
    pub generation: u64,
    pub image_epoch: u64,
    pub seen_until: i64,
    /// Members whose record is cached, with it, sorted by ID.
    pub cached: Vec<(String, PodRef, PodRecord)>,
    /// Members to inspect, sorted.
    pub live: Vec<String>,
}

impl PodIndex {
    pub fn is_built(&self) -> bool {
        self.current.is_some()
    }

    /// Whether a request that arrived at local time `local` is answered by the index as it is.
    pub fn covers(&self, local: i64) -> bool {
        self.current.is_some_and(|current| current.covers >= local)
    }

    /// Where the next catch-up starts reading (daemon time), `None` when a list is needed.
    pub fn catch_up_since(&self) -> Option<i64> {
        self.current
            .map(|current| current.seen_until - OVERLAP_NANOS)
    }

    /// Replaces the index with a fresh list. `covers`: local time the list was asked at;
    /// `seen_until`: the earliest the daemon's clock could read then, so that the next
    /// catch-up covers whatever happened during the list.
    pub fn reset(
        &mut self,
        listed: impl IntoIterator<Item = (String, PodRef)>,
        covers: i64,
        seen_until: i64,
    ) {
        self.generation += 1;
        self.image_epoch += 1;
        self.members = listed
            .into_iter()
            .map(|(id, pod)| {
                let touched = i64::MIN;
                (id, Member { pod, touched })
            })
            .collect();
        self.members.shrink_to_fit();
        self.exited.clear();
        self.images = HashMap::new();
        self.current = Some(Current { covers, seen_until });
    }

    /// Voids the index: the next request lists again. The caches go with it (events about
    /// their containers may be lost).
    pub fn invalidate(&mut self) {
        self.current = None;
        self.generation += 1;
        self.image_epoch += 1;
        self.members = HashMap::new();
        self.exited.clear();
        self.images = HashMap::new();
    }

    /// Applies the events of a window read up to `until` (daemon time), asked at local time
    /// `covers`, in the order Docker logged them.
    pub fn apply(&mut self, events: &[Event], covers: i64, until: i64) -> CatchUp {
        if events.len() >= OVERFLOW_AT {
            self.invalidate();
            return CatchUp::Overflowed;
        }
        for event in events {
            match event.kind.as_str() {
                "container" => self.container_event(event),
                // Networks and volumes connected to, or mounted in, a container change what
                // its inspect shows.
                "network" | "volume" => {
                    if let Some(id) = &event.actor.attributes.container {
                        self.touch(id, event.time_nano);
                    }
                }
                "image" => {
                    self.image_epoch += 1;
                    self.images.clear();
                    // Records hold the image's names.
                    self.exited.clear();
                }
                _ => {}
            }
        }
        if let Some(current) = &mut self.current {
            current.covers = current.covers.max(covers);
            current.seen_until = current.seen_until.max(until);
        }
        CatchUp::Applied
    }

    fn container_event(&mut self, event: &Event) {
        let id = &event.actor.id;
        match event.action.as_str() {
            "create" => {
                // The kubelet's labels travel with the event: no inspect needed. A create
                // read again (the overlap) changes nothing: IDs are never reused.
                if let Some(pod) = event.actor.attributes.pod()
                    && !self.members.contains_key(id)
                {
                    let touched = event.time_nano;
                    self.members.insert(id.clone(), Member { pod, touched });
                }
            }
            "destroy" => self.forget(id),
            _ => self.touch(id, event.time_nano),
        }
    }

    /// An event stamped `time` about a container: its record goes unless its inspect already
    /// showed that.
    fn touch(&mut self, id: &str, time: i64) {
        if self
            .exited
            .meta(id)
            .is_some_and(|valid_from| time > *valid_from)
        {
            self.exited.remove(id);
        }
        if let Some(member) = self.members.get_mut(id) {
            member.touched = member.touched.max(time);
        }
    }

    /// The members in scope: cached records, and the IDs to inspect.
    /// The members in scope with no cached record, as the index is now: what a lookup will
    /// most likely ask to inspect once the index has caught up.
    pub fn live_members(&self, scope: &Scope) -> Vec<String> {
        self.members
            .iter()
            .filter(|(id, member)| scope.contains(&member.pod) && !self.exited.contains(id))
            .map(|(id, _)| id.clone())
            .collect()
    }

    pub fn lookup(&self, scope: &Scope) -> Lookup {
        let mut ids: Vec<(&String, &PodRef)> = self
            .members
            .iter()
            .filter(|(_, member)| scope.contains(&member.pod))
            .map(|(id, member)| (id, &member.pod))
            .collect();
        ids.sort_unstable();
        let mut lookup = Lookup {
            generation: self.generation,
            image_epoch: self.image_epoch,
            seen_until: self.current.map_or(i64::MIN, |current| current.seen_until),
            ..Lookup::default()
        };
        for (id, pod) in ids {
            let cached = self.exited.record(id);
            match cached {
                Some(record) => lookup.cached.push((id.clone(), pod.clone(), record)),
                None => lookup.live.push(id.clone()),
            }
        }
        lookup
    }

    /// A container that inspect no longer finds.
    pub fn forget(&mut self, id: &str) {
        self.members.remove(id);
        self.exited.remove(id);
    }

    /// Keeps the record of an exited member, learnt by an inspect made after `lookup`,
    /// unless the index was rebuilt or an event about it stamped after the lookup's time was
    /// applied since.
    pub fn remember_exited(&mut self, id: &str, record: PodRecord, lookup: &Lookup) {
        let untouched = self
            .members
            .get(id)
            .is_some_and(|member| member.touched <= lookup.seen_until);
        if untouched
            && lookup.generation == self.generation
            && lookup.image_epoch == self.image_epoch
        {
            self.exited.insert(id, &[], lookup.seen_until, &record);
        }
    }

    pub fn image(&self, id: &str) -> Option<&Arc<ImageInspect>> {
        self.images.get(id)
    }

    /// Keeps an image inspect made after a lookup at `image_epoch`, unless an image event
    /// was applied since; never more images than members.
    pub fn remember_image(&mut self, id: &str, image: Arc<ImageInspect>, image_epoch: u64) {
        if image_epoch == self.image_epoch && self.images.len() < self.members.len() {
            self.images.insert(id.to_string(), image);
        }
    }

    /// Sizes, for logs and tests: members, cached records, cached images.
    pub fn sizes(&self) -> (usize, usize, usize) {
        (self.members.len(), self.exited.len(), self.images.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Instance;

    fn pod(namespace: &str, name: &str) -> PodRef {
        PodRef {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    fn event(kind: &str, action: &str, id: &str, labels: Option<(&str, &str)>) -> Event {
        Event {
            kind: kind.into(),
            action: action.into(),
            actor: Actor {
                id: id.into(),
                attributes: Attributes {
                    namespace: labels.map(|l| l.0.to_string()),
                    name: labels.map(|l| l.1.to_string()),
                    container: None,
                },
            },
            time_nano: 0,
        }
    }

    fn record() -> PodRecord {
        PodRecord {
            containers: vec![Instance::default()],
            ..PodRecord::default()
        }
    }

    #[test]
    fn reads_only_the_pod_labels_of_events_and_lists() {
        let body = br#"{"status":"create","id":"c1","Type":"container","Action":"create","Actor":{"ID":"c1","Attributes":{"image":"x","io.kubernetes.pod.name":"web","io.kubernetes.pod.namespace":"ns","annotation.x":"{\"a\":[1,2]}"}},"scope":"local","time":1,"timeNano":1000000001}
{"Type":"network","Action":"disconnect","Actor":{"ID":"n1","Attributes":{"container":"c1","name":"bridge","type":"bridge"}},"time":2,"timeNano":2000000000}
"#;
        let events = parse_events(body).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].actor.attributes.pod(), Some(pod("ns", "web")));
        assert_eq!(events[0].time_nano, 1_000_000_001);
        assert_eq!(events[1].actor.attributes.container.as_deref(), Some("c1"));
        assert_eq!(parse_events(b"").unwrap().len(), 0);
        let listed: Vec<Listed> = serde_json::from_slice(
            br#"[{"Id":"a","Names":["/k8s_x"],"Labels":{"io.kubernetes.pod.namespace":"ns","io.kubernetes.pod.name":"web","other":"1"},"Mounts":[]},{"Id":"b","Labels":null}]"#,
        )
        .unwrap();
        assert_eq!(listed[0].labels.pod(), Some(pod("ns", "web")));
        assert_eq!(listed[1].labels.pod(), None);
    }

    #[test]
    fn follows_creates_and_destroys_in_order() {
        let mut index = PodIndex::default();
        assert_eq!(index.catch_up_since(), None);
        index.reset([("a".to_string(), pod("ns", "web"))], 100, 5_000_000_000);
        assert!(index.covers(100) && !index.covers(101));
        let events = [
            event("container", "create", "b", Some(("ns", "web"))),
            event("container", "create", "plain", None),
            event("container", "die", "a", Some(("ns", "web"))),
            event("container", "destroy", "a", Some(("ns", "web"))),
            event("container", "create", "c", Some(("other", "web"))),
        ];
        assert_eq!(index.apply(&events, 200, 6_000_000_000), CatchUp::Applied);
        // Applying the overlap again changes nothing.
        assert_eq!(index.apply(&events, 250, 6_500_000_000), CatchUp::Applied);
        assert_eq!(index.lookup(&Scope::Pod(&pod("ns", "web"))).live, ["b"]);
        assert_eq!(index.lookup(&Scope::Namespace("other")).live, ["c"]);
        assert_eq!(index.lookup(&Scope::Node).live, ["b", "c"]);
        assert!(index.covers(250));
        assert_eq!(index.catch_up_since(), Some(6_500_000_000 - OVERLAP_NANOS));
    }

    #[test]
    fn a_full_event_buffer_forces_a_list() {
        let mut index = PodIndex::default();
        index.reset([], 1, 1);
        let events = vec![event("container", "start", "x", None); OVERFLOW_AT];
        assert_eq!(index.apply(&events, 2, 2), CatchUp::Overflowed);
        assert_eq!(index.catch_up_since(), None);
        assert!(!index.is_built());
    }

    fn at(mut event: Event, time: i64) -> Event {
        event.time_nano = time;
        event
    }

    #[test]
    fn exited_records_last_until_an_event_names_them() {
        let mut index = PodIndex::default();
        index.reset(
            [
                ("x".to_string(), pod("ns", "web")),
                ("y".to_string(), pod("ns", "web")),
            ],
            1,
            10,
        );
        let looked = index.lookup(&Scope::Node);
        assert_eq!(looked.live, ["x", "y"]);
        index.remember_exited("x", record(), &looked);
        index.remember_exited("y", record(), &looked);
        // A container that is not a member is never cached.
        index.remember_exited("z", record(), &looked);
        assert_eq!(index.sizes(), (2, 2, 0));
        let looked = index.lookup(&Scope::Node);
        assert_eq!(looked.cached.len(), 2);
        assert!(looked.live.is_empty());

        // The overlap reads again the `die` the inspect already showed: the record stays.
        index.apply(&[at(event("container", "die", "x", None), 9)], 2, 20);
        assert_eq!(index.lookup(&Scope::Node).cached.len(), 2);

        // Someone starts x again, and removes y: neither is served from the cache.
        index.apply(
            &[
                at(event("container", "start", "x", None), 21),
                at(event("container", "destroy", "y", None), 22),
            ],
            3,
            30,
        );
        let after = index.lookup(&Scope::Node);
        assert_eq!(after.live, ["x"]);
        assert!(after.cached.is_empty());
        // An inspect made before that event cannot put the old record back.
        index.remember_exited("x", record(), &looked);
        assert!(index.lookup(&Scope::Node).cached.is_empty());
        // Nor can one after a rebuild.
        let fresh = index.lookup(&Scope::Node);
        index.reset([("x".to_string(), pod("ns", "web"))], 4, 40);
        index.remember_exited("x", record(), &fresh);
        assert!(index.lookup(&Scope::Node).cached.is_empty());
        // A network change to x drops its record too.
        let fresh = index.lookup(&Scope::Node);
        index.remember_exited("x", record(), &fresh);
        assert_eq!(index.lookup(&Scope::Node).cached.len(), 1);
        let mut disconnect = at(event("network", "disconnect", "net", None), 41);
        disconnect.actor.attributes.container = Some("x".into());
        index.apply(&[disconnect], 5, 50);
        assert!(index.lookup(&Scope::Node).cached.is_empty());
    }

    #[test]
    fn image_events_empty_the_image_and_record_caches() {
        let mut index = PodIndex::default();
        index.reset([("x".to_string(), pod("ns", "web"))], 1, 1);
        let looked = index.lookup(&Scope::Node);
        index.remember_image(
            "sha256:1",
            Arc::new(ImageInspect::default()),
            looked.image_epoch,
        );
        index.remember_exited("x", record(), &looked);
        // Only as many images as members.
        index.remember_image(
            "sha256:2",
            Arc::new(ImageInspect::default()),
            looked.image_epoch,
        );
        assert_eq!(index.sizes(), (1, 1, 1));
        index.apply(&[event("image", "untag", "sha256:1", None)], 2, 2);
        assert!(index.image("sha256:1").is_none());
        assert_eq!(index.sizes(), (1, 0, 0));
        // An inspect from before the image event is not kept.
        index.remember_image(
            "sha256:1",
            Arc::new(ImageInspect::default()),
            looked.image_epoch,
        );
        assert!(index.image("sha256:1").is_none());
    }
}
