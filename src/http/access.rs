//! Who may ask: decided here, once per request, before routing and before any runtime call.
//!
//! - `/healthz`, `/readyz` and `/metrics` are open: the kubelet probes from the node anyway, and
//!   Prometheus usually scrapes from elsewhere; none of them holds pod data (metrics are counts by
//!   a fixed set of routes, codes and reasons).
//! - Everything else needs a caller on this node (loopback or one of the node's own addresses,
//!   which is where the KubeDiag agent calls from) or in a network of `--allow-from`, unless
//!   `--allow-from any`; then, with `--token-file`, the token (`?token=` or
//!   `Authorization: Bearer`).
//!
//! The node's addresses are read from its interfaces (`getifaddrs`: on the host network these
//! are the node's), again every [`REFRESH`], and at once (at most every [`MISS_REFRESH`]) when a
//! caller is not among them, so an address the node just gained is allowed on its first request.

use std::fmt;
use std::net::IpAddr;
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use warp::http::{HeaderMap, Uri, header};

use super::token::{self, TokenFile};
use crate::error::Result;

/// How often the node's addresses are read again when nothing asks for it.
pub const REFRESH: Duration = Duration::from_secs(30);
/// How often an unknown caller may make them be read again.
pub const MISS_REFRESH: Duration = Duration::from_secs(1);

/// Paths that answer anyone: probes and metrics.
pub const OPEN_PATHS: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

pub use crate::allow_from::{AllowFrom, Cidr};

/// Why a request was refused before anything else was done for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The caller's address is not allowed.
    Address { peer: IpAddr },
    /// A token is required and none was sent.
    TokenMissing,
    /// The token sent is not the one in the token file.
    TokenWrong,
    /// The request body did not arrive within the read timeout.
    BodyTimeout { timeout: Duration },
}

impl Refusal {
    /// The `reason` label of the refused-requests metric.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::Address { .. } => "address",
            Refusal::TokenMissing => "token_missing",
            Refusal::TokenWrong => "token_wrong",
            Refusal::BodyTimeout { .. } => "body_timeout",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Address { peer } => write!(
                f,
                "callers from {peer} are not allowed: this collector answers its own node only \
                 (loopback and the node's addresses, where the KubeDiag agent calls from); to \
                 allow this caller, start it with --allow-from {} (PDC_ALLOW_FROM)",
                Cidr::host(*peer)
            ),
            Refusal::TokenMissing => f.write_str(
                "a token is required: add ?token=<token> to the path (the KubeDiag Operation's \
                 path keeps its query string) or send Authorization: Bearer <token>",
            ),
            Refusal::TokenWrong => f.write_str("the token is not valid"),
            Refusal::BodyTimeout { timeout } => write!(
                f,
                "the request body did not arrive within {}s",
                timeout.as_secs_f32()
            ),
        }
    }
}

/// The access policy of a running server.
pub struct Access {
    allow: AllowFrom,
    node: NodeAddresses,
    token: Option<TokenFile>,
}

impl Access {
    pub fn new(allow: AllowFrom, token_file: Option<&std::path::Path>) -> Result<Self> {
        let token = token_file.map(TokenFile::load).transpose()?;
        Ok(Access {
            allow,
            node: NodeAddresses::read(),
            token,
        })
    }

    /// Whether `path` answers anyone.
    pub fn is_open(path: &str) -> bool {
        OPEN_PATHS.contains(&path)
    }

    pub fn requires_token(&self) -> bool {
        self.token.is_some()
    }

    /// What the log says at start.
    pub fn describe(&self) -> String {
        let token = match &self.token {
            Some(file) => format!("a token from {}", file.path().display()),
            None => "no token".to_string(),
        };
        format!(
            "access: processors answer {}, with {token}; /healthz, /readyz and /metrics answer anyone",
            self.allow
        )
    }

    pub fn allows_any_address(&self) -> bool {
        self.allow.any
    }

    /// Decides a request: the caller's address first, then the token.
    pub fn check(&self, peer: IpAddr, uri: &Uri, headers: &HeaderMap) -> Result<(), Refusal> {
        if !self.allow.any && !self.address_allowed(peer) {
            return Err(Refusal::Address {
                peer: peer.to_canonical(),
            });
        }
        if let Some(expected) = &self.token {
            let presented = presented_token(uri, headers).ok_or(Refusal::TokenMissing)?;
            if !expected.matches(&presented) {
                return Err(Refusal::TokenWrong);
            }
        }
        Ok(())
    }

    fn address_allowed(&self, peer: IpAddr) -> bool {
        let peer = peer.to_canonical();
        peer.is_loopback()
            || self.allow.networks.iter().any(|n| n.contains(peer))
            || self.node.contains(peer)
    }
}

/// The token a request carries: `?token=` (percent-decoded) or `Authorization: Bearer`.
fn presented_token(uri: &Uri, headers: &HeaderMap) -> Option<Vec<u8>> {
    let from_query = uri.query().and_then(|query| {
        query
            .split('&')
            .find_map(|pair| pair.strip_prefix("token="))
            .map(token::percent_decode)
    });
    let from_header = || {
        let value = headers.get(header::AUTHORIZATION)?.as_bytes();
        let (scheme, credential) = value.split_at_checked(7)?;
        scheme
            .eq_ignore_ascii_case(b"bearer ")
            .then(|| credential.trim_ascii().to_vec())
    };
    from_query.or_else(from_header).filter(|t| !t.is_empty())
}

/// The URI without its `token` query parameter, so that nothing after the access check (routes,
/// logs) ever holds the token.
pub fn without_token(uri: &Uri) -> Uri {
    let Some(query) = uri.query() else {
        return uri.clone();
    };
    if !query.split('&').any(|pair| pair.starts_with("token=")) {
        return uri.clone();
    }
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| !pair.starts_with("token=") && !pair.is_empty())
        .collect();
    let path_and_query = if kept.is_empty() {
        uri.path().to_string()
    } else {
        format!("{}?{}", uri.path(), kept.join("&"))
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = path_and_query.parse().ok();
    Uri::from_parts(parts).unwrap_or_else(|_| Uri::from_static("/"))
}

/// The node's own addresses, re-read from its interfaces.
struct NodeAddresses {
    state: RwLock<(Instant, Vec<IpAddr>)>,
}

impl NodeAddresses {
    fn read() -> Self {
        let addresses = interface_addresses();
        log::info!(
            "node addresses allowed to call: {}",
            addresses
                .iter()
                .map(IpAddr::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        );
        NodeAddresses {
            state: RwLock::new((Instant::now(), addresses)),
        }
    }

    fn contains(&self, ip: IpAddr) -> bool {
        let (age, found) = match self.state.read() {
            Ok(state) => (state.0.elapsed(), state.1.contains(&ip)),
            Err(_) => (Duration::MAX, false),
        };
        if age < REFRESH && (found || age < MISS_REFRESH) {
            return found;
        }
        let addresses = interface_addresses();
        let found = addresses.contains(&ip);
        if let Ok(mut state) = self.state.write() {
            if state.1 != addresses {
                log::info!(
                    "node addresses changed: {}",
                    addresses
                        .iter()
                        .map(IpAddr::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            *state = (Instant::now(), addresses);
        }
        found
    }
}

/// Every address of every interface of this network namespace (`getifaddrs`).
pub fn interface_addresses() -> Vec<IpAddr> {
    let mut found = Vec::new();
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list` with a linked list that stays valid until freeifaddrs;
    // every pointer is checked for null before it is read, and each `ifa_addr` is read as the
    // sockaddr type its `sa_family` names.
    unsafe {
        if libc::getifaddrs(&mut list) != 0 {
            log::warn!(
                "cannot read the node's addresses (getifaddrs: {}): only loopback and \
                 --allow-from are allowed",
                std::io::Error::last_os_error()
            );
            return found;
        }
        let mut entry = list;
        while !entry.is_null() {
            let address = (*entry).ifa_addr;
            if !address.is_null() {
                let ip = match i32::from((*address).sa_family) {
                    libc::AF_INET => {
                        let v4 = &*(address as *const libc::sockaddr_in);
                        Some(IpAddr::from(u32::from_be(v4.sin_addr.s_addr).to_be_bytes()))
                    }
                    libc::AF_INET6 => {
                        let v6 = &*(address as *const libc::sockaddr_in6);
                        Some(IpAddr::from(v6.sin6_addr.s6_addr))
                    }
                    _ => None,
                };
                if let Some(ip) = ip.filter(|ip| !found.contains(ip)) {
                    found.push(ip);
                }
            }
            entry = (*entry).ifa_next;
        }
        libc::freeifaddrs(list);
    }
    found
}

/// At most a few log lines per window about refused requests, so that a scanner cannot flood
/// the log; the rest are counted and summed up in the next line.
pub struct LogLimiter {
    state: Mutex<(Instant, u32, u64)>,
}

const LOG_WINDOW: Duration = Duration::from_secs(60);
const LOG_LINES_PER_WINDOW: u32 = 20;

impl Default for LogLimiter {
    fn default() -> Self {
        LogLimiter {
            state: Mutex::new((Instant::now(), 0, 0)),
        }
    }
}

impl LogLimiter {
    /// `Some(n)` when a line may be written (`n` lines were left out before it).
    pub fn admit(&self) -> Option<u64> {
        let Ok(mut state) = self.state.lock() else {
            return None;
        };
        let (window, lines, suppressed) = &mut *state;
        if window.elapsed() >= LOG_WINDOW {
            *window = Instant::now();
            *lines = 0;
        }
        if *lines < LOG_LINES_PER_WINDOW {
            *lines += 1;
            Some(std::mem::take(suppressed))
        } else {
            *suppressed += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(text: &str) -> Cidr {
        text.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn networks_contain_their_addresses() {
        assert!(cidr("10.0.0.0/8").contains(ip("10.255.1.2")));
        assert!(!cidr("10.0.0.0/8").contains(ip("11.0.0.1")));
        assert!(cidr("192.0.2.7").contains(ip("192.0.2.7")));
        assert!(!cidr("192.0.2.7").contains(ip("192.0.2.8")));
        assert!(cidr("0.0.0.0/0").contains(ip("203.0.113.9")));
        assert!(cidr("fd00::/8").contains(ip("fd12::1")));
        assert!(!cidr("fd00::/8").contains(ip("fe80::1")));
        assert!(cidr("::/0").contains(ip("2001:db8::1")));
        // An IPv4 client on a dual-stack socket arrives as ::ffff:a.b.c.d.
        assert!(cidr("198.51.100.0/24").contains(ip("::ffff:198.51.100.20")));
        assert!(!cidr("198.51.100.0/24").contains(ip("2001:db8::1")));
        for bad in [
            "",
            "x",
            "10.0.0.0/33",
            "10.0.0.0/-1",
            "fd00::/129",
            "10.0.0.0/8/8",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn allow_from_is_any_or_a_list() {
        assert_eq!("".parse::<AllowFrom>(), Ok(AllowFrom::default()));
        let allow: AllowFrom = "any".parse().unwrap_or_default();
        assert!(allow.any);
        let allow: AllowFrom = " 10.0.0.0/8, 192.0.2.7 ,".parse().unwrap_or_default();
        assert_eq!(allow.networks, [cidr("10.0.0.0/8"), cidr("192.0.2.7/32")]);
        assert!("10.0.0.0/8,nope".parse::<AllowFrom>().is_err());
        assert_eq!(
            allow.to_string(),
            "this node (loopback and its own addresses), 10.0.0.0/8, 192.0.2.7/32"
        );
    }

    #[test]
    fn loopback_and_own_addresses_are_the_node() {
        let access = Access::new(AllowFrom::default(), None).unwrap_or_else(|e| panic!("{e}"));
        let uri = Uri::from_static("/processor/podDetailCollector");
        let headers = HeaderMap::new();
        for allowed in ["127.0.0.1", "127.8.9.1", "::1", "::ffff:127.0.0.1"] {
            assert_eq!(
                access.check(ip(allowed), &uri, &headers),
                Ok(()),
                "{allowed}"
            );
        }
        for own in interface_addresses() {
            assert_eq!(access.check(own, &uri, &headers), Ok(()), "{own}");
        }
        let refused = access.check(ip("203.0.113.9"), &uri, &headers);
        assert_eq!(
            refused,
            Err(Refusal::Address {
                peer: ip("203.0.113.9")
            })
        );
        let text = refused.err().map(|r| r.to_string()).unwrap_or_default();
        assert!(text.contains("--allow-from 203.0.113.9/32"), "{text}");
    }

    #[test]
    fn tokens_come_from_the_query_or_the_bearer_header() {
        let uri = |text: &str| text.parse::<Uri>().unwrap_or_default();
        let none = HeaderMap::new();
        assert_eq!(
            presented_token(&uri("/p?token=abc"), &none),
            Some(b"abc".to_vec())
        );
        assert_eq!(
            presented_token(&uri("/p?x=1&token=a%2Bb%3D"), &none),
            Some(b"a+b=".to_vec())
        );
        assert_eq!(presented_token(&uri("/p?token="), &none), None);
        assert_eq!(presented_token(&uri("/p?tokens=abc"), &none), None);
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            header::HeaderValue::from_static("bearer  xyz "),
        );
        assert_eq!(presented_token(&uri("/p"), &headers), Some(b"xyz".to_vec()));
        headers.insert(
            header::AUTHORIZATION,
            header::HeaderValue::from_static("Basic eHl6"),
        );
        assert_eq!(presented_token(&uri("/p"), &headers), None);
    }

    #[test]
    fn the_token_leaves_the_uri() {
        let strip =
            |text: &str| without_token(&text.parse::<Uri>().unwrap_or_default()).to_string();
        assert_eq!(strip("/p?token=abc"), "/p");
        assert_eq!(strip("/p?a=1&token=abc&b=2"), "/p?a=1&b=2");
        assert_eq!(strip("/p?a=1"), "/p?a=1");
        assert_eq!(strip("/p"), "/p");
    }

    #[test]
    fn the_log_limiter_sums_up_what_it_left_out() {
        let limiter = LogLimiter::default();
        for _ in 0..LOG_LINES_PER_WINDOW {
            assert_eq!(limiter.admit(), Some(0));
        }
        assert_eq!(limiter.admit(), None);
        assert_eq!(limiter.admit(), None);
        if let Ok(mut state) = limiter.state.lock()
            && let Some(earlier) = state.0.checked_sub(LOG_WINDOW)
        {
            state.0 = earlier;
        }
        assert_eq!(limiter.admit(), Some(2));
    }
}
