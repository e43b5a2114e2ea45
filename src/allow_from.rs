//! `--allow-from`: which callers the operator allows besides the node itself, as parsed from
//! the command line. A plain value of the settings; the HTTP layer (`http::access`) applies it.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// A network: an address and a prefix length (`10.0.0.0/8`, `fd00::/8`, `192.0.2.7`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// The one address.
    pub fn host(ip: IpAddr) -> Self {
        let network = ip.to_canonical();
        let prefix = if network.is_ipv4() { 32 } else { 128 };
        Cidr { network, prefix }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = address
            .parse()
            .map_err(|_| format!("{text:?} is not an IP address or CIDR (10.0.0.0/8, fd00::/8)"))?;
        let network = network.to_canonical();
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{text:?}: the prefix length must be 0 to {max}"))?,
        };
        Ok(Cidr { network, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// `--allow-from`: who may call besides the node itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowFrom {
    /// Anyone who reaches the port (the behaviour before access control).
    pub any: bool,
    /// Networks allowed besides loopback and the node's own addresses.
    pub networks: Vec<Cidr>,
}

impl FromStr for AllowFrom {
    type Err = String;

    /// `any`, or CIDRs and addresses separated by commas; empty is the node only.
    fn from_str(text: &str) -> Result<Self, String> {
        let mut allow = AllowFrom::default();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if part.eq_ignore_ascii_case("any") {
                allow.any = true;
            } else {
                allow.networks.push(part.parse()?);
            }
        }
        Ok(allow)
    }
}

impl fmt::Display for AllowFrom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.any {
            return f.write_str("any address");
        }
        f.write_str("this node (loopback and its own addresses)")?;
        for network in &self.networks {
            write!(f, ", {network}")?;
        }
        Ok(())
    }
}
