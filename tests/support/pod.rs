//! Accessors and checks for the rebuilt `v1.Pod` (as `serde_json::Value`).

use std::collections::BTreeMap;

use serde_json::Value;

/// `spec.containers[name]`.
pub fn container<'a>(pod: &'a Value, name: &str) -> &'a Value {
    by_name(&pod["spec"]["containers"], name)
        .unwrap_or_else(|| panic!("spec.containers has no {name:?}: {}", pod["spec"]))
}

/// `status.containerStatuses[name]`.
pub fn status<'a>(pod: &'a Value, name: &str) -> &'a Value {
    by_name(&pod["status"]["containerStatuses"], name).unwrap_or_else(|| {
        panic!(
            "status.containerStatuses has no {name:?}: {}",
            pod["status"]
        )
    })
}

/// The element of a list whose `name` is `name`.
pub fn by_name<'a>(list: &'a Value, name: &str) -> Option<&'a Value> {
    list.as_array()?.iter().find(|v| v["name"] == name)
}

/// The `name`s of a list, in order (empty when the list is absent).
pub fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// `status.conditions[type]`.
pub fn condition<'a>(pod: &'a Value, kind: &str) -> Option<&'a Value> {
    pod["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
}

/// A JSON object of strings as a sorted map (empty when absent).
pub fn string_map(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| {
                    let s = v
                        .as_str()
                        .unwrap_or_else(|| panic!("{k} is not a string: {v}"));
                    (k.clone(), s.to_string())
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Builds a sorted string map from pairs.
pub fn map_of(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Absent, `null`, `{}` or `[]`: how Kubernetes leaves out an empty field.
pub fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(o) => o.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// Checks a Kubernetes timestamp (`metav1.Time`, RFC 3339 UTC) is the same second as a
/// Docker timestamp (RFC 3339 with nanoseconds, UTC).
pub fn assert_same_second(k8s: &Value, docker: &str, what: &str) {
    let k = k8s
        .as_str()
        .unwrap_or_else(|| panic!("{what}: expected a timestamp, got {k8s}"));
    assert!(
        k.len() >= 20 && k.ends_with('Z'),
        "{what}: {k:?} is not an RFC 3339 UTC time"
    );
    assert_eq!(
        &k[..19],
        &docker[..19],
        "{what}: {k} should be the runtime's {docker}"
    );
}

/// `docker://<id>`.
pub fn docker_id(id: &str) -> String {
    format!("docker://{id}")
}
