//! Resource quantities written the way Kubernetes writes them (`100m`, `1`, `128Mi`).

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

pub fn cpu_millis(millis: i64) -> Quantity {
    if millis % 1000 == 0 {
        Quantity((millis / 1000).to_string())
    } else {
        Quantity(format!("{millis}m"))
    }
}

/// Binary suffixes when the value is a whole number of KiB (how limits are usually written),
/// decimal ones when it is a whole number of kB, else plain bytes.
pub fn bytes(value: i64) -> Quantity {
    const BINARY: [&str; 6] = ["Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
    const DECIMAL: [&str; 6] = ["k", "M", "G", "T", "P", "E"];
    if value == 0 {
        return Quantity("0".to_string());
    }
    for (base, suffixes) in [(1024, BINARY), (1000, DECIMAL)] {
        let mut scaled = value;
        let mut exponent = 0;
        while scaled % base == 0 && exponent < suffixes.len() {
            scaled /= base;
            exponent += 1;
        }
        if exponent > 0 {
            return Quantity(format!("{scaled}{}", suffixes[exponent - 1]));
        }
    }
    Quantity(value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_is_written_in_cores_or_millicores() {
        assert_eq!(cpu_millis(100).0, "100m");
        assert_eq!(cpu_millis(1000).0, "1");
        assert_eq!(cpu_millis(2500).0, "2500m");
    }

    #[test]
    fn memory_prefers_binary_suffixes() {
        assert_eq!(bytes(128 * 1024 * 1024).0, "128Mi");
        assert_eq!(bytes(1024 * 1024 * 1024).0, "1Gi");
        assert_eq!(bytes(1536 * 1024 * 1024).0, "1536Mi");
        assert_eq!(bytes(1_000_000_000).0, "1G");
        assert_eq!(bytes(500_000).0, "500k");
        assert_eq!(bytes(1234567).0, "1234567");
    }
}
