//! The gateway address of a network: how a container on it reaches the host (Sprout's SQS
//! endpoint listens there for instances).

use crate::error::is_not_found;
use crate::{Runtime, RuntimeError};
use bollard::query_parameters::InspectNetworkOptions;
use std::net::IpAddr;

impl Runtime {
    /// The IPv4 gateway of `network`, or None when the network does not exist or has none.
    pub async fn network_gateway(&self, network: &str) -> Result<Option<IpAddr>, RuntimeError> {
        let net = match self
            .docker()
            .inspect_network(network, None::<InspectNetworkOptions>)
            .await
        {
            Ok(net) => net,
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => {
                return Err(RuntimeError::docker(
                    format!("inspect network {network}"),
                    e,
                ))
            }
        };
        let gateway = net
            .ipam
            .and_then(|ipam| ipam.config)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|c| c.gateway)
            .filter_map(|g| g.parse::<IpAddr>().ok())
            .find(IpAddr::is_ipv4);
        Ok(gateway)
    }
}
