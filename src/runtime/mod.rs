//! The runtime backends: the only code that talks to a container runtime. Each one reads (and
//! never writes) and turns its runtime's answers into the neutral `record`, so nothing after it
//! knows which runtime spoke.

pub mod docker;

use crate::pod_ref::PodRef;

/// Which pods a request is about.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    Pod(&'a PodRef),
    Namespace(&'a str),
    Node,
}

impl Scope<'_> {
    pub fn contains(&self, pod: &PodRef) -> bool {
        match self {
            Scope::Pod(wanted) => *wanted == pod,
            Scope::Namespace(namespace) => pod.namespace == *namespace,
            Scope::Node => true,
        }
    }
}
