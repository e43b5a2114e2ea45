//! Which pod a request is about, and what makes a valid one. Shared by the HTTP layer and the
//! command line, and checked before any runtime call: the names end up in label selectors.

use std::fmt;

use crate::error::{Error, Result};

/// A pod as `namespace/name`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for PodRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

impl PodRef {
    /// A pod reference whose parts are valid Kubernetes names; `namespace_field` and
    /// `name_field` say where each part came from, for the error.
    pub fn new(
        (namespace_field, namespace): (&str, &str),
        (name_field, name): (&str, &str),
    ) -> Result<Self> {
        check_namespace(namespace_field, namespace)?;
        check_name(name_field, name, 253, true)?;
        Ok(PodRef {
            namespace: namespace.to_string(),
            name: name.to_string(),
        })
    }

    /// `NAMESPACE/NAME`, as people write it.
    pub fn parse(text: &str) -> Result<Self> {
        let Some((namespace, name)) = text.split_once('/') else {
            return Err(Error::BadRequest(format!("{text:?} is not NAMESPACE/NAME")));
        };
        PodRef::new(("namespace", namespace), ("name", name))
    }
}

/// A namespace is an RFC 1123 label.
pub fn check_namespace(field: &str, value: &str) -> Result<()> {
    check_name(field, value, 63, false)
}

/// Kubernetes names: RFC 1123 labels for namespaces, DNS subdomains (labels joined by dots)
/// for pods.
fn check_name(field: &str, value: &str, max_len: usize, dots: bool) -> Result<()> {
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    let ok = value.len() <= max_len
        && if dots {
            value.split('.').all(label_ok)
        } else {
            label_ok(value)
        };
    if ok {
        return Ok(());
    }
    let what = if dots {
        "a DNS subdomain"
    } else {
        "an RFC 1123 label"
    };
    let shown: String = value.chars().take(80).collect();
    Err(Error::BadRequest(format!(
        "\"{field}\" {shown:?} is not a valid Kubernetes name (expected {what}: lowercase letters, digits and '-', at most {max_len} characters)"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_namespace_slash_name() {
        assert_eq!(
            PodRef::parse("kube-system/etcd-node.1").ok(),
            Some(PodRef {
                namespace: "kube-system".into(),
                name: "etcd-node.1".into()
            })
        );
        for bad in ["etcd", "a.b/x", "A/x", "a/-x", "a/", "/x", "a/x,y=1"] {
            assert!(
                matches!(PodRef::parse(bad), Err(Error::BadRequest(_))),
                "{bad}"
            );
        }
    }
}
