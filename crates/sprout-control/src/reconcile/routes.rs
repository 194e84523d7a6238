//! The balancer's route of an environment, from its running containers.

use super::{revision_label, Reconciler};
use sprout_core::Tier;
use sprout_proxy::{BackendSpec, HealthCheck, RouteSpec};
use sprout_runtime::ContainerInfo;
use sprout_store::EnvRow;
use std::net::SocketAddr;

impl Reconciler {
    /// The balancer route of an environment: every running instance (draining ones stay
    /// listed until they are gone, so their in-flight requests are tracked).
    pub(crate) fn route_for(
        &self,
        env: &EnvRow,
        live: bool,
        containers: &[&ContainerInfo],
    ) -> RouteSpec {
        let (manifest, settings) = (&env.manifest, &env.settings);
        let web = env.tier == Tier::Web;
        let hosts = if web && live {
            vec![self.shared.host_of(&env.cname)]
        } else {
            Vec::new()
        };
        let port = self.shared.config().instance_port;
        let backends = containers
            .iter()
            .filter(|c| c.running)
            .filter_map(|c| {
                Some(BackendSpec {
                    id: c.labels.get("sprout.instance")?.clone(),
                    addr: SocketAddr::new(c.address?, port),
                    version: revision_label(c),
                })
            })
            .collect();
        let path = settings
            .health_check_path
            .clone()
            .unwrap_or_else(|| manifest.config.health_check().to_string());
        RouteSpec {
            env: env.name.clone(),
            hosts,
            health: HealthCheck {
                path,
                interval: settings.health_check_interval,
                timeout: settings.health_check_timeout,
                healthy_threshold: settings.healthy_threshold,
                unhealthy_threshold: settings.unhealthy_threshold,
                success_codes: settings.health_check_success_codes,
            },
            backends,
        }
    }
}
