//! Playing the CNI plugin for a Docker sandbox: dockershim leaves the network to a CNI plugin,
//! so a pod that asks for an address ([`Pod::pod_ip`](crate::support::Pod::pod_ip),
//! [`Pod::cni_veth`](crate::support::Pod::cni_veth)) gets it here, with `nsenter` and `ip`
//! (util-linux, iproute2) in the network namespace of the sandbox's pid.

use crate::support::scenario::CniAddresses;

/// Adds `eth0` with this address inside the network namespace of `pid`, as a CNI plugin
/// would (with `nsenter` and `ip` from util-linux and iproute2). Nothing leaves the namespace:
/// both ends of the veth stay inside it.
pub(super) fn cni_add(pid: i64, cidr: &str) {
    let pid = pid.to_string();
    let steps: [&[&str]; 4] = [
        &[
            "link", "add", "eth0", "type", "veth", "peer", "name", "cni-peer",
        ],
        &["addr", "add", cidr, "dev", "eth0"],
        &["link", "set", "cni-peer", "up"],
        &["link", "set", "eth0", "up"],
    ];
    for args in steps {
        let out = std::process::Command::new("nsenter")
            .args(["-t", &pid, "-n", "ip"])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("run nsenter/ip (util-linux, iproute2): {e}"));
        assert!(
            out.status.success(),
            "ip {args:?} in the sandbox's network namespace: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Runs `ip` in the host's network namespace, or in the one of `pid`.
fn ip_in(pid: Option<&str>, args: &[&str]) -> std::process::Output {
    let mut cmd = match pid {
        Some(pid) => {
            let mut c = std::process::Command::new("nsenter");
            c.args(["-t", pid, "-n", "ip"]);
            c
        }
        None => std::process::Command::new("ip"),
    };
    cmd.args(args)
        .output()
        .unwrap_or_else(|e| panic!("run ip (iproute2) / nsenter (util-linux): {e}"))
}

fn must_ip(pid: Option<&str>, args: &[&str]) {
    let out = ip_in(pid, args);
    assert!(
        out.status.success(),
        "ip {args:?} (network namespace of {}): {}",
        pid.unwrap_or("the host"),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The CNI bridge/ptp plugins' way: a veth pair made in the host namespace, the peer moved into
/// the sandbox's namespace and renamed `eth0`, addresses added there. The host end stays down.
/// Returns the addresses added, without prefix length.
pub(super) fn cni_veth(pid: i64, host_end: &str, cni: &CniAddresses) -> Vec<String> {
    let pid = pid.to_string();
    let peer = format!("{host_end}p");
    must_ip(
        None,
        &[
            "link", "add", host_end, "type", "veth", "peer", "name", &peer,
        ],
    );
    must_ip(None, &["link", "set", &peer, "netns", &pid]);
    must_ip(Some(&pid), &["link", "set", &peer, "name", "eth0"]);
    must_ip(Some(&pid), &["addr", "add", &cni.ipv4, "dev", "eth0"]);
    must_ip(Some(&pid), &["link", "set", "eth0", "up"]);
    let bare = |cidr: &str| cidr.split('/').next().unwrap_or(cidr).to_string();
    let mut ips = vec![bare(&cni.ipv4)];
    if let Some(v6) = &cni.ipv6 {
        // A new namespace may start with IPv6 off on new links; a CNI plugin turns it on.
        let enabled = std::process::Command::new("nsenter")
            .args(["-t", &pid, "-n", "sh", "-c"])
            .arg("echo 0 > /proc/sys/net/ipv6/conf/eth0/disable_ipv6")
            .output()
            .is_ok_and(|o| o.status.success());
        if enabled
            && ip_in(
                Some(&pid),
                &["-6", "addr", "add", v6, "dev", "eth0", "nodad"],
            )
            .status
            .success()
        {
            ips.push(bare(v6));
        } else {
            eprintln!("IPv6 cannot be enabled in the sandbox's network namespace: IPv4 only");
        }
    }
    ips
}

/// Deletes the host end of a [`cni_veth`] pair when it is still there. Best effort.
pub(super) fn delete_host_end(veth: &str) {
    if ip_in(None, &["link", "show", veth]).status.success() {
        let _ = ip_in(None, &["link", "del", veth]);
    }
}
