//! What every container Sprout creates shares (instances, resources, bakes): the
//! confinement it runs under and how it is created.

use std::collections::HashMap;

use bollard::models::{
    ContainerCreateBody, EndpointSettings, HostConfig, HostConfigLogConfig, NetworkingConfig,
    RestartPolicy, RestartPolicyNameEnum,
};
use bollard::query_parameters::CreateContainerOptions;

use crate::error::is_not_found;
use crate::{Runtime, RuntimeError};

/// Capabilities Docker grants by default that neither an instance nor a build needs, and
/// that help an attacker inside one (raw sockets for spoofing, device nodes, chroot escapes,
/// file capabilities, audit writes).
const DROPPED_CAPABILITIES: [&str; 5] =
    ["NET_RAW", "MKNOD", "SYS_CHROOT", "SETFCAP", "AUDIT_WRITE"];

/// Docker's own log of a container is a file on the host: bounded, so a chatty or hostile
/// process cannot fill the disk.
const LOG_MAX_SIZE: &str = "10m";

const LOG_MAX_FILES: &str = "2";

/// The confinement every container Sprout starts gets on top of `host`: no privilege gained
/// through setuid binaries, fewer capabilities, at most `pids` processes, a bounded log.
pub(crate) fn confined(host: HostConfig, pids: u32) -> HostConfig {
    HostConfig {
        security_opt: Some(vec!["no-new-privileges:true".to_string()]),
        cap_drop: Some(DROPPED_CAPABILITIES.map(String::from).to_vec()),
        pids_limit: Some(i64::from(pids)),
        log_config: Some(HostConfigLogConfig {
            typ: Some("json-file".to_string()),
            config: Some(HashMap::from([
                ("max-size".to_string(), LOG_MAX_SIZE.to_string()),
                ("max-file".to_string(), LOG_MAX_FILES.to_string()),
            ])),
        }),
        ..host
    }
}

/// The size of a long-running container (an instance, a resource).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Size {
    pub(crate) millicpus: u32,
    pub(crate) memory_mib: u32,
    /// Most processes and threads at once.
    pub(crate) pids: u32,
}

/// A long-running container's host and network settings: `size` (memory with no swap on
/// top, so a size means what it says), attached to `network` only, with no port published,
/// restarted by Docker per `restart`; `host` adds anything else (mounts). Confined as
/// [`confined`] says.
pub(crate) fn on_network(
    host: HostConfig,
    network: &str,
    size: Size,
    restart: RestartPolicyNameEnum,
) -> (HostConfig, NetworkingConfig) {
    let memory = i64::from(size.memory_mib) * 1024 * 1024;
    let host = confined(
        HostConfig {
            nano_cpus: Some(i64::from(size.millicpus) * 1_000_000),
            memory: Some(memory),
            memory_swap: Some(memory),
            network_mode: Some(network.to_string()),
            restart_policy: Some(RestartPolicy {
                name: Some(restart),
                maximum_retry_count: None,
            }),
            publish_all_ports: Some(false),
            ..host
        },
        size.pids,
    );
    let endpoints = HashMap::from([(network.to_string(), EndpointSettings::default())]);
    let networking = NetworkingConfig {
        endpoints_config: Some(endpoints),
    };
    (host, networking)
}

impl Runtime {
    /// Creates container `name` from `body`; a missing image is [`RuntimeError::ImageMissing`]
    /// (the engine says "No such image" with 404 on create).
    pub(crate) async fn create_named(
        &self,
        name: &str,
        body: ContainerCreateBody,
    ) -> Result<bollard::models::ContainerCreateResponse, RuntimeError> {
        let image = body.image.clone().unwrap_or_default();
        let opts = CreateContainerOptions {
            name: Some(name.to_string()),
            platform: String::new(),
        };
        self.docker
            .create_container(Some(opts), body)
            .await
            .map_err(|e| {
                if is_not_found(&e) {
                    RuntimeError::ImageMissing { image }
                } else {
                    RuntimeError::docker(format!("create container {name}"), e)
                }
            })
    }
}
