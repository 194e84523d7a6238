//! What every container Sprout creates shares (instances, resources, bakes): the
//! confinement it runs under and how it is created.

use std::collections::HashMap;

use bollard::models::{ContainerCreateBody, HostConfig, HostConfigLogConfig};
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
