//! Upgraded connections (e.g. WebSocket): spliced client to instance until either closes.

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tracing::debug;

use crate::limits::ClientSlot;
use crate::metrics::InFlight;

/// An upgraded connection (e.g. WebSocket), spliced client to instance until either closes.
pub(super) struct Tunnel {
    pub(super) upstream: TcpStream,
    /// The 101 head for the client.
    pub(super) to_client: Vec<u8>,
    /// Bytes the instance sent after its 101 head.
    pub(super) from_upstream: BytesMut,
    pub(super) env: String,
    pub(super) backend: String,
    /// The tunnel counts as a request in flight for as long as it is open.
    pub(super) in_flight: InFlight,
}

impl Tunnel {
    /// Runs on its own task, so a long-lived tunnel never holds up a graceful shutdown.
    pub(super) fn spawn(self, mut client: TcpStream, from_client: BytesMut, slot: ClientSlot) {
        tokio::spawn(async move {
            // The client's connection stays counted for as long as the tunnel is open.
            let _slot = slot;
            let Tunnel {
                mut upstream,
                mut to_client,
                from_upstream,
                env,
                backend,
                in_flight,
            } = self;
            let _in_flight = in_flight;
            to_client.extend_from_slice(&from_upstream);
            let result = async {
                client.write_all(&to_client).await?;
                upstream.write_all(&from_client).await?;
                tokio::io::copy_bidirectional(&mut client, &mut upstream).await
            }
            .await;
            if let Err(e) = result {
                debug!(env = %env, backend = %backend, error = %e, "upgraded connection ended");
            }
        });
    }
}
