//! The record sorted out the way the kubelet reads it: the newest sandbox and, per container
//! name, the instances newest first. Built once per pod, read by `host` and by the rebuild.

use std::collections::BTreeMap;

use k8s_openapi::jiff::Timestamp;

use super::{Instance, PodRecord, Sandbox, State};
use crate::kubelet::{self, ContainerKind};

pub struct PodView<'a> {
    /// The newest sandbox: older ones are history.
    pub sandbox: Option<&'a Sandbox>,
    /// Every sandbox, newest first.
    pub sandboxes: Vec<&'a Sandbox>,
    pub uid: &'a str,
    /// By container name, newest instance first. Instances of another pod with the same name
    /// (an older UID) are left out.
    pub containers: BTreeMap<&'a str, Vec<&'a Instance>>,
}

impl<'a> PodView<'a> {
    /// `None` when the record holds nothing the kubelet made.
    pub fn new(record: &'a PodRecord) -> Option<Self> {
        // Newest first; the attempt breaks ties between those created in the same instant.
        let mut sandboxes: Vec<&Sandbox> = record.sandboxes.iter().collect();
        sandboxes.sort_by_key(|s| std::cmp::Reverse((s.created, s.attempt)));
        let sandbox = sandboxes.first().copied();
        let mut instances: Vec<&Instance> = record.containers.iter().collect();
        instances.sort_by_key(|i| std::cmp::Reverse((i.created, i.attempt)));

        let uid = match sandbox {
            Some(sandbox) => pod_uid(&sandbox.labels)?,
            None => pod_uid(&instances.first()?.labels)?,
        };
        let mut containers: BTreeMap<&str, Vec<&Instance>> = BTreeMap::new();
        for instance in instances {
            if pod_uid(&instance.labels) == Some(uid) {
                containers
                    .entry(instance.name.as_str())
                    .or_default()
                    .push(instance);
            }
        }
        Some(PodView {
            sandbox,
            sandboxes,
            uid,
            containers,
        })
    }

    /// The newest instance of every container.
    pub fn newest(&self) -> impl Iterator<Item = &'a Instance> + '_ {
        self.containers
            .values()
            .filter_map(|history| history.first().copied())
    }

    /// Where the pod's identity is read: the sandbox's labels, else its newest container's.
    pub fn identity_labels(&self) -> Option<&'a BTreeMap<String, String>> {
        match self.sandbox {
            Some(sandbox) => Some(&sandbox.labels),
            None => self.newest().next().map(|instance| &instance.labels),
        }
    }

    /// The instances that ran in this sandbox, oldest first: those the runtime says belong to
    /// it, and, where it does not say, those created after it and before the next one.
    pub fn instances_in(&self, sandbox: &Sandbox) -> Vec<&'a Instance> {
        let next = self
            .sandboxes
            .iter()
            .filter(|other| (other.created, other.attempt) > (sandbox.created, sandbox.attempt))
            .filter_map(|other| other.created)
            .min();
        let mut instances: Vec<&Instance> = self
            .containers
            .values()
            .flatten()
            .copied()
            .filter(|instance| match &instance.sandbox_id {
                Some(id) => *id == sandbox.id,
                None => {
                    instance.created >= sandbox.created
                        && next.is_none_or(|next| instance.created < Some(next))
                }
            })
            .collect();
        instances.sort_by_key(|i| (i.created, i.attempt));
        instances
    }

    /// A pod annotation (they are kept on the sandbox).
    pub fn pod_annotation(&self, key: &str) -> Option<&'a str> {
        self.sandbox?.annotations.get(key).map(String::as_str)
    }
}

fn pod_uid(labels: &BTreeMap<String, String>) -> Option<&str> {
    labels.get(kubelet::POD_UID_LABEL).map(String::as_str)
}

/// What the rebuild reads of an instance, in the kubelet's terms.
impl Instance {
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.get(key).map(String::as_str)
    }

    /// The annotation parsed, or `None` with a debug log when it is missing or malformed.
    pub fn parsed_annotation<T: std::str::FromStr>(&self, key: &str) -> Option<T> {
        let raw = self.annotation(key)?;
        match raw.trim().parse() {
            Ok(value) => Some(value),
            Err(_) => {
                log::debug!("container {}: ignoring malformed {key}={raw:?}", self.id);
                None
            }
        }
    }

    pub fn kind(&self) -> ContainerKind {
        ContainerKind::from_annotation(self.annotation(kubelet::CONTAINER_TYPE))
    }

    /// The kubelet's restart count for this instance: the annotation, else the attempt.
    pub fn restart_count(&self) -> Option<i32> {
        self.parsed_annotation(kubelet::RESTART_COUNT)
            .or_else(|| self.attempt.and_then(|attempt| i32::try_from(attempt).ok()))
    }

    pub fn is_running(&self) -> bool {
        matches!(self.state, State::Running { .. })
    }

    pub fn has_exited(&self) -> bool {
        matches!(self.state, State::Exited { .. })
    }

    /// Exited with code 0.
    pub fn succeeded(&self) -> bool {
        matches!(self.state, State::Exited { exit_code: 0, .. })
    }

    pub fn started_at(&self) -> Option<Timestamp> {
        match self.state {
            State::Running { started } | State::Exited { started, .. } => started,
            State::Created => None,
        }
    }

    /// Whether the kubelet takes this instance's message from its log when the
    /// termination-message file is empty (`FallbackToLogsOnError`): it failed, and it ran (one
    /// that could not even start has no log).
    pub fn falls_back_to_logs(&self) -> bool {
        let State::Exited {
            exit_code, reason, ..
        } = &self.state
        else {
            return false;
        };
        self.annotation(kubelet::TERMINATION_MESSAGE_POLICY)
            == Some(kubelet::FALLBACK_TO_LOGS_ON_ERROR)
            && *exit_code != 0
            && reason.as_deref() != Some(kubelet::CONTAINER_CANNOT_RUN)
    }

    /// Whether this instance ever ran.
    pub fn ever_started(&self) -> bool {
        self.started_at().is_some()
    }
}
