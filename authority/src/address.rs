//! Where a request comes from: the peer address, or the entry our own
//! proxies appended to `X-Forwarded-For`.
//!
//! Behind `TRUSTED_PROXY_HOPS` proxies of our own, each appends the address
//! it saw, so the client is the entry that many places from the end;
//! anything before it was written by the client and proves nothing. An
//! entry that is missing or not an address makes the client
//! [`ClientAddress::Unknown`]: never the proxy's own address, which an
//! allow-list may admit and which every client would share.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use http::HeaderMap;
use ipnet::IpNet;

/// The peer address of a connection, in request extensions: the server
/// inserts it, [`crate::routes`] reads it for per-address throttling.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

/// The address a request is attributed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAddress {
    /// A known address (IPv4-mapped IPv6 addresses as IPv4).
    Ip(IpAddr),
    /// `X-Forwarded-For` was trusted but its entry was missing or not an
    /// address: no address-based permission, and one throttling bucket of
    /// its own.
    Unknown,
}

impl ClientAddress {
    /// The address, if known.
    #[must_use]
    pub fn ip(self) -> Option<IpAddr> {
        match self {
            Self::Ip(ip) => Some(ip),
            Self::Unknown => None,
        }
    }

    /// The network throttled as one: an IPv4 address, or the IPv6 network
    /// of `ipv6_prefix` bits around it; `None` when unknown.
    #[must_use]
    pub fn throttle_network(self, ipv6_prefix: u8) -> Option<IpNet> {
        match self {
            Self::Ip(IpAddr::V4(v4)) => Some(IpNet::from(IpAddr::V4(v4))),
            Self::Ip(IpAddr::V6(v6)) => IpNet::new(IpAddr::V6(v6), ipv6_prefix.min(128))
                .ok()
                .map(|network| network.trunc()),
            Self::Unknown => None,
        }
    }
}

impl fmt::Display for ClientAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ip(ip) => ip.fmt(f),
            Self::Unknown => f.write_str("unknown"),
        }
    }
}

/// The client address of a request from `peer` with `headers`. With
/// `trusted_hops` (`TRUST_FORWARDED_FOR`), a request carrying
/// `X-Forwarded-For` is attributed to the entry `trusted_hops` places from
/// the end; one without it came straight to us and is the peer.
#[must_use]
pub fn client_address(
    peer: Option<SocketAddr>,
    headers: &HeaderMap,
    trusted_hops: Option<usize>,
) -> ClientAddress {
    let canonical = |ip: IpAddr| ClientAddress::Ip(ip.to_canonical());
    let peer = peer.map_or(ClientAddress::Unknown, |peer| canonical(peer.ip()));
    let Some(hops) = trusted_hops else {
        return peer;
    };
    let mut values = headers.get_all("x-forwarded-for").iter().peekable();
    if values.peek().is_none() {
        return peer;
    }
    let mut entries = Vec::new();
    for value in values {
        let Ok(text) = value.to_str() else {
            return ClientAddress::Unknown;
        };
        entries.extend(text.split(',').map(str::trim));
    }
    let Some(index) = entries.len().checked_sub(hops.max(1)) else {
        return ClientAddress::Unknown;
    };
    entries
        .get(index)
        .and_then(|entry| parse_entry(entry))
        .map_or(ClientAddress::Unknown, canonical)
}

/// An address, also in `ip:port` and `[v6]:port` form.
fn parse_entry(entry: &str) -> Option<IpAddr> {
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|socket| socket.ip()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forwarded(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append("x-forwarded-for", value.parse().expect("header"));
        }
        headers
    }

    fn peer() -> Option<SocketAddr> {
        Some(SocketAddr::from(([10, 0, 0, 1], 40_000)))
    }

    fn ip(text: &str) -> ClientAddress {
        ClientAddress::Ip(text.parse().expect("ip"))
    }

    /// Untrusted headers are ignored; the peer is the client.
    #[test]
    fn untrusted_forwarded_for_is_ignored() {
        assert_eq!(
            client_address(peer(), &forwarded(&["203.0.113.7"]), None),
            ip("10.0.0.1")
        );
        assert_eq!(
            client_address(None, &HeaderMap::new(), None),
            ClientAddress::Unknown
        );
    }

    /// The entry `hops` places from the end, across repeated headers.
    #[test]
    fn trusted_hops_pick_their_entry() {
        let headers = forwarded(&["198.51.100.1, 203.0.113.7", "192.0.2.9"]);
        assert_eq!(client_address(peer(), &headers, Some(1)), ip("192.0.2.9"));
        assert_eq!(client_address(peer(), &headers, Some(2)), ip("203.0.113.7"));
        assert_eq!(
            client_address(peer(), &headers, Some(3)),
            ip("198.51.100.1")
        );
        assert_eq!(
            client_address(peer(), &headers, Some(4)),
            ClientAddress::Unknown,
            "fewer entries than proxies"
        );
        assert_eq!(
            client_address(
                peer(),
                &forwarded(&["[2001:db8::1]:443", "192.0.2.1:80"]),
                Some(2)
            ),
            ip("2001:db8::1")
        );
        assert_eq!(
            client_address(peer(), &forwarded(&["::ffff:192.0.2.1"]), Some(1)),
            ip("192.0.2.1"),
            "IPv4-mapped addresses are IPv4"
        );
        assert_eq!(
            client_address(peer(), &HeaderMap::new(), Some(1)),
            ip("10.0.0.1"),
            "no header: the request came straight to us"
        );
    }

    /// An unparseable entry is unknown, never the proxy's own address.
    #[test]
    fn unparseable_entries_are_unknown_not_the_proxy() {
        for garbage in [
            "unknown",
            "",
            "203.0.113.7 evil",
            "_hidden",
            "1.2.3.4, nonsense",
        ] {
            assert_eq!(
                client_address(peer(), &forwarded(&[garbage]), Some(1)),
                ClientAddress::Unknown,
                "{garbage:?}"
            );
        }
        // An entry the client wrote before ours does not matter.
        assert_eq!(
            client_address(peer(), &forwarded(&["nonsense, 203.0.113.7"]), Some(1)),
            ip("203.0.113.7")
        );
    }

    /// IPv6 clients are bucketed by their /64 (or the configured prefix);
    /// IPv4 by the address.
    #[test]
    fn ipv6_is_throttled_per_network() {
        let a = ip("2001:db8:1:2:aaaa::1").throttle_network(64);
        let b = ip("2001:db8:1:2:ffff:1:2:3").throttle_network(64);
        let other = ip("2001:db8:1:3::1").throttle_network(64);
        assert_eq!(a, b);
        assert_ne!(a, other);
        assert_eq!(
            a.map(|net| net.to_string()).as_deref(),
            Some("2001:db8:1:2::/64")
        );
        assert_eq!(
            ip("2001:db8:1:2::1").throttle_network(48),
            ip("2001:db8:1:3::1").throttle_network(48)
        );
        assert_ne!(
            ip("2001:db8::1").throttle_network(128),
            ip("2001:db8::2").throttle_network(128)
        );
        assert_eq!(
            ip("192.0.2.1")
                .throttle_network(64)
                .map(|net| net.to_string())
                .as_deref(),
            Some("192.0.2.1/32")
        );
        assert_eq!(ClientAddress::Unknown.throttle_network(64), None);
    }
}
