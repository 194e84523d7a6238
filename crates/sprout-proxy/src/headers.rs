//! Per-connection and per-request values the balancer writes into heads.

use std::fmt;
use std::net::SocketAddr;

use crate::wire::MAX_REQUEST_ID_LEN;

/// A client connection's address, with its IP already rendered for `X-Forwarded-For`
/// (once per connection rather than per request).
#[derive(Clone)]
pub(crate) struct Peer {
    pub(crate) addr: SocketAddr,
    pub(crate) ip: String,
    /// A trusted proxy: its `X-Forwarded-For` is kept and appended to.
    pub(crate) trusted: bool,
}

impl Peer {
    pub(crate) fn new(addr: SocketAddr, trusted: bool) -> Peer {
        Peer {
            addr,
            ip: addr.ip().to_canonical().to_string(),
            trusted,
        }
    }
}

/// The request id sent upstream and back to the client (`X-Request-Id`): the client's own
/// if usable, else a fresh UUID v4. Held inline: no allocation per request.
pub(crate) struct RequestId {
    bytes: [u8; MAX_REQUEST_ID_LEN],
    len: usize,
}

impl RequestId {
    /// The client's id (already checked non-empty and short enough), else a new one.
    pub(crate) fn from_client(id: Option<&[u8]>) -> RequestId {
        match id {
            Some(id) if !id.is_empty() && id.len() <= MAX_REQUEST_ID_LEN => {
                let mut bytes = [0u8; MAX_REQUEST_ID_LEN];
                bytes[..id.len()].copy_from_slice(id);
                RequestId {
                    bytes,
                    len: id.len(),
                }
            }
            _ => RequestId::generate(),
        }
    }

    pub(crate) fn generate() -> RequestId {
        let mut bytes = [0u8; MAX_REQUEST_ID_LEN];
        let len = uuid::Uuid::new_v4()
            .hyphenated()
            .encode_lower(&mut bytes)
            .len();
        RequestId { bytes, len }
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(self.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_id_kept_or_generated() {
        let fresh = RequestId::from_client(None);
        assert_eq!(fresh.as_bytes().len(), 36);
        assert_ne!(fresh.as_bytes(), RequestId::generate().as_bytes());
        assert_eq!(RequestId::from_client(Some(b"abc")).as_bytes(), b"abc");
        assert_eq!(RequestId::from_client(Some(b"")).as_bytes().len(), 36);
    }

    #[test]
    fn peer_ip_is_canonical() {
        let peer = Peer::new("[::ffff:127.0.0.1]:5000".parse().unwrap(), false);
        assert_eq!(peer.ip, "127.0.0.1");
    }
}
