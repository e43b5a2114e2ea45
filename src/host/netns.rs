//! Addresses of a network namespace, read from `/proc/<pid>/net/`. Docker does not know the IPs a
//! CNI plugin gave a pod, but the kernel does; reading files needs no `setns` and no netlink.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

/// The global addresses of `interface` (IPv4 first), from a `/proc/<pid>/net` directory.
pub fn interface_addresses(net_dir: &Path, interface: &str) -> Vec<IpAddr> {
    let read = |file: &str| std::fs::read_to_string(net_dir.join(file)).unwrap_or_default();
    let locals = local_ipv4(&read("fib_trie"));
    let routes = ipv4_routes(&read("route"));
    let on_interface: Vec<Ipv4Addr> = locals
        .iter()
        .copied()
        .filter(|ip| {
            routes
                .iter()
                .any(|r| r.interface == interface && r.mask != 0 && r.contains(*ip))
        })
        .collect();
    // Point-to-point setups (Calico: a /32 on eth0 and a link route to 169.254.1.1) and links
    // that are down route no subnet that holds the address; in a pod's namespace every
    // non-loopback address is then the pod's.
    let has_interface = read("dev").lines().any(|line| {
        line.trim_start()
            .strip_prefix(interface)
            .is_some_and(|rest| rest.starts_with(':'))
    });
    let ipv4 = if on_interface.is_empty() && has_interface {
        locals
    } else {
        on_interface
    };
    ipv4.into_iter()
        .map(IpAddr::V4)
        .chain(
            global_ipv6(&read("if_inet6"), interface)
                .into_iter()
                .map(IpAddr::V6),
        )
        .collect()
}

/// The interface of the default route in a `/proc/<pid>/net` directory.
pub fn default_route_interface(net_dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(net_dir.join("route")).ok()?;
    ipv4_routes(&text)
        .into_iter()
        .find(|route| route.destination == 0 && route.mask == 0)
        .map(|route| route.interface)
}

#[derive(Debug, PartialEq, Eq)]
struct Route {
    interface: String,
    destination: u32,
    mask: u32,
}

impl Route {
    fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask == self.destination & self.mask
    }
}

/// `/proc/net/route`: addresses are the network-order bytes printed as a native (little-endian)
/// number.
fn ipv4_routes(text: &str) -> Vec<Route> {
    let hex = |field: &str| {
        u32::from_str_radix(field, 16)
            .ok()
            .map(|value| u32::from_be_bytes(value.to_le_bytes()))
    };
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            Some(Route {
                interface: fields.first()?.to_string(),
                destination: hex(fields.get(1)?)?,
                mask: hex(fields.get(7)?)?,
            })
        })
        .collect()
}

/// Addresses the kernel holds as local (`/32 host LOCAL` leaves of `fib_trie`), loopback left out.
fn local_ipv4(fib_trie: &str) -> Vec<Ipv4Addr> {
    let mut found = Vec::new();
    let mut current: Option<Ipv4Addr> = None;
    for line in fib_trie.lines() {
        let line = line.trim();
        if let Some(address) = line.strip_prefix("|-- ") {
            current = address.parse().ok();
        } else if line.starts_with("/32 host LOCAL")
            && let Some(ip) = current
            && !ip.is_loopback()
            && !found.contains(&ip)
        {
            found.push(ip);
        }
    }
    found
}

/// `if_inet6`: address, index, prefix length, scope, flags, name; scope 00 is global.
fn global_ipv6(if_inet6: &str, interface: &str) -> Vec<Ipv6Addr> {
    if_inet6
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 6 || fields[5] != interface || fields[3] != "00" {
                return None;
            }
            u128::from_str_radix(fields[0], 16).ok().map(Ipv6Addr::from)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTE: &str = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
        eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
        eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n";
    const FIB_TRIE: &str = "Local:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 127.0.0.1\n        /32 host LOCAL\n\
        |-- 192.0.2.0\n           /24 link UNICAST\n        |-- 192.0.2.2\n           /32 host LOCAL\n\
        |-- 192.0.2.255\n           /32 link BROADCAST\n";
    const IF_INET6: &str = "00000000000000000000000000000001 01 80 10 80       lo\n\
        fd000000000000000000000000000002 04 40 00 82     eth0\n\
        fe8000000000000000fc00fffe000001 04 40 20 80     eth0\n";

    #[test]
    fn routes_are_read_in_kernel_byte_order() {
        let routes = ipv4_routes(ROUTE);
        assert_eq!(routes.len(), 2);
        assert_eq!(
            Ipv4Addr::from(routes[1].destination),
            Ipv4Addr::new(192, 0, 2, 0)
        );
        assert_eq!(
            Ipv4Addr::from(routes[1].mask),
            Ipv4Addr::new(255, 255, 255, 0)
        );
        assert!(routes[1].contains(Ipv4Addr::new(192, 0, 2, 2)));
    }

    #[test]
    fn local_addresses_and_global_ipv6() {
        assert_eq!(local_ipv4(FIB_TRIE), vec![Ipv4Addr::new(192, 0, 2, 2)]);
        assert_eq!(
            global_ipv6(IF_INET6, "eth0"),
            vec!["fd00::2".parse::<Ipv6Addr>().expect("literal")]
        );
    }

    #[test]
    fn reads_a_net_directory() {
        let dir = std::env::temp_dir().join(format!("pdc-netns-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        std::fs::write(dir.join("route"), ROUTE).expect("write");
        std::fs::write(dir.join("fib_trie"), FIB_TRIE).expect("write");
        std::fs::write(dir.join("if_inet6"), IF_INET6).expect("write");
        std::fs::write(dir.join("dev"), "Inter-|\n face |\n    lo: 0\n  eth0: 0\n").expect("write");
        assert_eq!(default_route_interface(&dir).as_deref(), Some("eth0"));
        let addresses: Vec<String> = interface_addresses(&dir, "eth0")
            .iter()
            .map(IpAddr::to_string)
            .collect();
        assert_eq!(addresses, ["192.0.2.2", "fd00::2"]);
        assert!(interface_addresses(&dir, "eth1").is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
