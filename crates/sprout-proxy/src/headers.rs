//! Header rewriting between client and backend.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

pub(crate) const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub(crate) const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub(crate) const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub(crate) const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Hop-by-hop headers (RFC 9110 §7.6.1) plus the non-standard ones proxies conventionally drop.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// Longest client-supplied request id we pass on; longer ones are replaced.
const MAX_REQUEST_ID_LEN: usize = 200;

/// The `Upgrade` header's value when the request asks for a protocol upgrade
/// (`Connection: upgrade` + `Upgrade: x`), e.g. WebSocket.
pub(crate) fn upgrade_request(headers: &HeaderMap) -> Option<HeaderValue> {
    let wants = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    if wants {
        headers.get(header::UPGRADE).cloned()
    } else {
        None
    }
}

/// A client connection's address, with its IP already rendered for `X-Forwarded-For`
/// (once per connection rather than per request).
#[derive(Clone)]
pub(crate) struct Peer {
    pub(crate) addr: SocketAddr,
    pub(crate) ip: Option<HeaderValue>,
}

impl Peer {
    pub(crate) fn new(addr: SocketAddr) -> Peer {
        let ip = HeaderValue::try_from(addr.ip().to_canonical().to_string()).ok();
        Peer { addr, ip }
    }
}

fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(name) || name == header::UPGRADE
}

/// Removes hop-by-hop headers, including those the `Connection` header names.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Usually there are none: one pass over the few names present (standard names compare
    // as small integers) is cheaper than hashing nine names to remove.
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    if headers.contains_key(header::CONNECTION) {
        // Rare enough that collecting the listed names is fine.
        let listed: Vec<HeaderValue> = headers
            .get_all(header::CONNECTION)
            .iter()
            .cloned()
            .collect();
        for value in &listed {
            for name in value.to_str().unwrap_or("").split(',') {
                let name = name.trim();
                // Never let a client strip the header we route on.
                if !name.is_empty() && !name.eq_ignore_ascii_case("host") {
                    headers.remove(name);
                }
            }
        }
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    headers.remove(header::UPGRADE);
}

/// The client's request id if usable, else a fresh UUID v4.
pub(crate) fn request_id(headers: &HeaderMap) -> HeaderValue {
    if let Some(id) = headers.get(X_REQUEST_ID) {
        if !id.is_empty() && id.len() <= MAX_REQUEST_ID_LEN {
            return id.clone();
        }
    }
    let mut buf = uuid::Uuid::encode_buffer();
    let id = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buf);
    HeaderValue::from_str(id).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

/// Appends the client's address to `X-Forwarded-For` (merging repeated headers into one).
pub(crate) fn append_forwarded_for(headers: &mut HeaderMap, peer: &Peer) {
    if let (Some(ip), false) = (&peer.ip, headers.contains_key(X_FORWARDED_FOR)) {
        headers.insert(X_FORWARDED_FOR, ip.clone());
        return;
    }
    append_forwarded_for_ip(headers, peer.addr.ip());
}

fn append_forwarded_for_ip(headers: &mut HeaderMap, client: IpAddr) {
    let mut value = String::new();
    for v in headers.get_all(X_FORWARDED_FOR) {
        if let Ok(s) = v.to_str() {
            let s = s.trim();
            if !s.is_empty() {
                if !value.is_empty() {
                    value.push_str(", ");
                }
                value.push_str(s);
            }
        }
    }
    if !value.is_empty() {
        value.push_str(", ");
    }
    let _ = write!(value, "{}", client.to_canonical());
    match HeaderValue::try_from(value) {
        Ok(v) => {
            headers.insert(X_FORWARDED_FOR, v);
        }
        // Only reachable with odd existing values; fall back to our own hop.
        Err(_) => {
            if let Ok(v) = HeaderValue::try_from(client.to_canonical().to_string()) {
                headers.insert(X_FORWARDED_FOR, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_listed_and_standard_hop_headers() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert("x-keep", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-keep"));
    }

    #[test]
    fn forwarded_for_appends() {
        let mut h = HeaderMap::new();
        h.append(X_FORWARDED_FOR, HeaderValue::from_static("1.1.1.1"));
        h.append(X_FORWARDED_FOR, HeaderValue::from_static("2.2.2.2"));
        let peer = Peer::new("[::ffff:127.0.0.1]:5000".parse().unwrap());
        append_forwarded_for(&mut h, &peer);
        assert_eq!(
            h.get(X_FORWARDED_FOR).unwrap(),
            "1.1.1.1, 2.2.2.2, 127.0.0.1"
        );
        let mut fresh = HeaderMap::new();
        append_forwarded_for(&mut fresh, &peer);
        assert_eq!(fresh.get(X_FORWARDED_FOR).unwrap(), "127.0.0.1");
    }

    #[test]
    fn request_id_kept_or_generated() {
        let mut h = HeaderMap::new();
        assert_eq!(request_id(&h).len(), 36);
        h.insert(X_REQUEST_ID, HeaderValue::from_static("abc"));
        assert_eq!(request_id(&h), "abc");
    }

    #[test]
    fn detects_upgrade() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert_eq!(upgrade_request(&h).unwrap(), "websocket");
    }
}
