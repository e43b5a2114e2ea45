//! Requests and limits as the kubelet allocated them (its `allocated_pods_state` checkpoint),
//! and the QoS class the API computes from them (`pkg/apis/core/v1/helper/qos`).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::kinds::Kinds;
use crate::kubelet::ContainerKind;
use crate::record::Allocation;

/// The resources the API looks at for the QoS class.
const QOS_RESOURCES: [&str; 2] = ["cpu", "memory"];

/// A container's allocated resources; `None` when it has none, which the kubelet's entry says
/// as much as one with values.
pub(super) fn allocated(
    allocation: &Allocation,
    name: &str,
) -> Option<Option<ResourceRequirements>> {
    let resources = allocation.containers.get(name)?;
    let empty =
        |list: &Option<BTreeMap<String, Quantity>>| list.as_ref().is_none_or(BTreeMap::is_empty);
    if empty(&resources.requests) && empty(&resources.limits) {
        return Some(None);
    }
    Some(Some(resources.clone()))
}

/// `ComputePodQOS`: pod-level resources where the pod has them, else the init and regular
/// containers' (ephemeral ones cannot have resources).
pub(super) fn qos_class(allocation: &Allocation, kinds: &Kinds) -> &'static str {
    let mut requests: BTreeMap<&str, i128> = BTreeMap::new();
    let mut limits: BTreeMap<&str, i128> = BTreeMap::new();
    let mut guaranteed = true;
    let lists: Vec<&ResourceRequirements> = match &allocation.pod {
        Some(pod) => vec![pod],
        None => allocation
            .containers
            .iter()
            .filter(|(name, _)| kinds.of(name) != ContainerKind::Ephemeral)
            .map(|(_, resources)| resources)
            .collect(),
    };
    for resources in lists {
        for (name, quantity) in positive(resources.requests.as_ref()) {
            *requests.entry(name).or_default() += quantity;
        }
        let mut limited = Vec::new();
        for (name, quantity) in positive(resources.limits.as_ref()) {
            *limits.entry(name).or_default() += quantity;
            limited.push(name);
        }
        if !QOS_RESOURCES.iter().all(|name| limited.contains(name)) {
            guaranteed = false;
        }
    }
    if requests.is_empty() && limits.is_empty() {
        return "BestEffort";
    }
    let matching = requests
        .iter()
        .all(|(name, request)| limits.get(name) == Some(request));
    if guaranteed && matching && requests.len() == limits.len() {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// The cpu and memory quantities above zero, in nano units.
fn positive(list: Option<&BTreeMap<String, Quantity>>) -> impl Iterator<Item = (&str, i128)> {
    list.into_iter()
        .flatten()
        .filter(|(name, _)| QOS_RESOURCES.contains(&name.as_str()))
        .filter_map(|(name, quantity)| {
            let value = nanos(&quantity.0);
            if value.is_none() {
                log::debug!("ignoring malformed quantity {name}={:?}", quantity.0);
            }
            Some((name.as_str(), value?))
        })
        .filter(|(_, value)| *value > 0)
}

/// A Kubernetes quantity (`100m`, `1.5`, `128Mi`, `1e3`, `2G`) in nano units, rounded up as
/// Kubernetes rounds to its smallest scale.
pub(super) fn nanos(text: &str) -> Option<i128> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let (negative, digits) = match number.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, number.strip_prefix('+').unwrap_or(number)),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty() && fraction.is_empty() {
        return None;
    }
    if !(whole.bytes().all(|b| b.is_ascii_digit()) && fraction.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    let (binary, decimal): (u32, i32) = match suffix {
        "" => (0, 0),
        "n" => (0, -9),
        "u" => (0, -6),
        "m" => (0, -3),
        "k" => (0, 3),
        "M" => (0, 6),
        "G" => (0, 9),
        "T" => (0, 12),
        "P" => (0, 15),
        "E" => (0, 18),
        "Ki" => (10, 0),
        "Mi" => (20, 0),
        "Gi" => (30, 0),
        "Ti" => (40, 0),
        "Pi" => (50, 0),
        "Ei" => (60, 0),
        exponent => {
            let power = exponent.strip_prefix(['e', 'E'])?;
            (0, power.parse().ok().filter(|p: &i32| p.abs() <= 30)?)
        }
    };
    let mantissa: i128 = format!("{whole}{fraction}").parse().ok()?;
    // mantissa × 10^(decimal + 9 − fraction digits) × 2^binary
    let scale = decimal + 9 - i32::try_from(fraction.len()).ok()?;
    let mut value = mantissa.checked_mul(1i128.checked_shl(binary)?)?;
    if scale >= 0 {
        value = value.checked_mul(10i128.checked_pow(scale.unsigned_abs())?)?;
    } else {
        let divisor = 10i128.checked_pow(scale.unsigned_abs())?;
        value = (value + divisor - 1) / divisor;
    }
    Some(if negative { -value } else { value })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_in_every_notation() {
        let cases = [
            ("100m", Some(100_000_000)),
            ("1", Some(1_000_000_000)),
            ("1.5", Some(1_500_000_000)),
            ("128Mi", Some(128 * (1 << 20) * 1_000_000_000)),
            ("2G", Some(2_000_000_000 * 1_000_000_000)),
            ("1e3", Some(1000 * 1_000_000_000)),
            ("250000k", Some(250_000_000 * 1_000_000_000)),
            ("0", Some(0)),
            ("1n", Some(1)),
            ("Mi", None),
            ("12Qi", None),
            ("", None),
        ];
        for (text, want) in cases {
            assert_eq!(nanos(text), want, "{text}");
        }
        // The same amount written two ways is equal.
        assert_eq!(nanos("1Gi"), nanos("1024Mi"));
        assert_eq!(nanos("0.5"), nanos("500m"));
    }
}
