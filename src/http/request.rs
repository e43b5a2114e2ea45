//! Reading a KubeDiag processor request: a JSON object of context, of which the collector needs
//! `pod.namespace` and `pod.name`.

use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::pod_ref::{self, PodRef};

pub const POD_NAMESPACE_KEY: &str = "pod.namespace";
pub const POD_NAME_KEY: &str = "pod.name";

pub const CONTAINER_ALL_KEY: &str = "container.all";

/// The diagnosis context the agent sends: a JSON object (a flat string map, in practice).
pub fn context(body: &[u8]) -> Result<Map<String, Value>> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|err| Error::BadRequest(format!("the body is not valid JSON ({err})")))?;
    match value {
        Value::Object(context) => Ok(context),
        other => Err(Error::BadRequest(format!(
            "the body must be a JSON object such as {{\"pod.namespace\":\"default\",\"pod.name\":\"web-0\"}}, not {}",
            json_type(&other)
        ))),
    }
}

/// The pod a request names. Other keys (the agent sends node, diagnosis and task context) are
/// ignored whatever their type.
pub fn pod_ref(context: &Map<String, Value>) -> Result<PodRef> {
    let namespace = required(context, POD_NAMESPACE_KEY)?;
    let name = required(context, POD_NAME_KEY)?;
    PodRef::new((POD_NAMESPACE_KEY, namespace), (POD_NAME_KEY, name))
}

/// `pod.namespace` when the request narrows to one namespace; absent or empty means all.
pub fn optional_namespace(context: &Map<String, Value>) -> Result<Option<&str>> {
    if matches!(context.get(POD_NAMESPACE_KEY), None | Some(Value::Null)) {
        return Ok(None);
    }
    if context.get(POD_NAMESPACE_KEY) == Some(&Value::String(String::new())) {
        return Ok(None);
    }
    let namespace = required(context, POD_NAMESPACE_KEY)?;
    pod_ref::check_namespace(POD_NAMESPACE_KEY, namespace)?;
    Ok(Some(namespace))
}

/// A yes/no option: the agent sends strings (`"true"`), people may send booleans.
pub fn flag(context: &Map<String, Value>, key: &str) -> Result<bool> {
    match context.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(value)) => Ok(*value),
        Some(Value::String(text)) => match text.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Ok(true),
            "false" | "0" | "no" | "" => Ok(false),
            _ => Err(Error::BadRequest(format!(
                "\"{key}\" must be \"true\" or \"false\", not {text:?}"
            ))),
        },
        Some(other) => Err(Error::BadRequest(format!(
            "\"{key}\" must be \"true\" or \"false\", not {}",
            json_type(other)
        ))),
    }
}

fn required<'a>(context: &'a Map<String, Value>, key: &str) -> Result<&'a str> {
    match context.get(key) {
        Some(Value::String(value)) if !value.is_empty() => Ok(value),
        Some(Value::String(_)) => Err(Error::BadRequest(format!("\"{key}\" is empty"))),
        Some(other) => Err(Error::BadRequest(format!(
            "\"{key}\" must be a string, not {}",
            json_type(other)
        ))),
        None => Err(Error::BadRequest(format!("\"{key}\" is missing"))),
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<PodRef> {
        pod_ref(&context(body.as_bytes())?)
    }

    #[test]
    fn namespace_and_flags_are_optional() {
        let ctx = |body: &str| context(body.as_bytes()).unwrap_or_default();
        assert_eq!(optional_namespace(&ctx("{}")).ok(), Some(None));
        assert_eq!(
            optional_namespace(&ctx(r#"{"pod.namespace":""}"#)).ok(),
            Some(None)
        );
        assert_eq!(
            optional_namespace(&ctx(r#"{"pod.namespace":"kube-system"}"#)).ok(),
            Some(Some("kube-system"))
        );
        assert!(optional_namespace(&ctx(r#"{"pod.namespace":"a=b"}"#)).is_err());
        assert!(optional_namespace(&ctx(r#"{"pod.namespace":3}"#)).is_err());
        assert_eq!(
            flag(&ctx(r#"{"container.all":"true"}"#), CONTAINER_ALL_KEY).ok(),
            Some(true)
        );
        assert_eq!(
            flag(&ctx(r#"{"container.all":false}"#), CONTAINER_ALL_KEY).ok(),
            Some(false)
        );
        assert_eq!(flag(&ctx("{}"), CONTAINER_ALL_KEY).ok(), Some(false));
        assert!(flag(&ctx(r#"{"container.all":"maybe"}"#), CONTAINER_ALL_KEY).is_err());
    }

    #[test]
    fn reads_the_pod_and_ignores_other_context() {
        let pod = parse(
            r#"{"pod.namespace":"kube-system","pod.name":"etcd-node.1","node":"n","task.x":{"a":1},"n":3}"#,
        );
        assert_eq!(
            pod.ok(),
            Some(PodRef {
                namespace: "kube-system".into(),
                name: "etcd-node.1".into()
            })
        );
    }

    #[test]
    fn rejects_what_is_not_a_pod_reference() {
        for body in [
            "",
            "not json",
            "[]",
            "\"x\"",
            "{}",
            r#"{"pod.namespace":"a"}"#,
            r#"{"pod.namespace":"a","pod.name":""}"#,
            r#"{"pod.namespace":"a","pod.name":7}"#,
            r#"{"pod.namespace":"a","pod.name":"x,io.kubernetes.pod.uid=1"}"#,
            r#"{"pod.namespace":"a.b","pod.name":"x"}"#,
            r#"{"pod.namespace":"A","pod.name":"x"}"#,
            r#"{"pod.namespace":"a","pod.name":"x\ny"}"#,
            r#"{"pod.namespace":"a","pod.name":"-x"}"#,
        ] {
            assert!(
                matches!(parse(body), Err(Error::BadRequest(_))),
                "accepted {body:?}"
            );
        }
    }
}
