//! Asking the Docker engine through its CLI.

use std::process::{Command, Stdio};

/// The lines `docker ARGS` prints (empty ones left out); none if docker cannot run.
pub fn docker_lines(args: &[&str]) -> Vec<String> {
    Command::new("docker")
        .args(args)
        .output()
        .map(|out| {
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(str::to_string)
                .filter(|l| !l.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// What is missing to run instances.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DockerMissing {
    /// `docker info` failed.
    Engine,
    /// This platform image is not built.
    Image(String),
}

fn docker_ok(args: &[&str]) -> bool {
    Command::new("docker")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Checks that the engine answers and that `images` are present.
pub fn docker_ready(images: &[&str]) -> Result<(), DockerMissing> {
    if !docker_ok(&["info"]) {
        return Err(DockerMissing::Engine);
    }
    match images
        .iter()
        .find(|image| !docker_ok(&["image", "inspect", image]))
    {
        Some(image) => Err(DockerMissing::Image(image.to_string())),
        None => Ok(()),
    }
}

/// Removes the containers, networks, images and volumes labelled with this server's id
/// (`sprout.server`, and `sprout.resource-of` for its resources). Instances outlive a stopped
/// server by design (it adopts them on restart), so a test or a benchmark that is done with a
/// server removes them.
pub fn remove_server_objects(server_id: &str) {
    let labels = [
        format!("label=sprout.server={server_id}"),
        format!("label=sprout.resource-of={server_id}"),
    ];
    // Every container first (a resource's holds its volume and joins instance networks).
    for (list, rm) in [
        (vec!["ps", "-a", "-q"], vec!["rm", "-f"]),
        (vec!["network", "ls", "-q"], vec!["network", "rm"]),
        (vec!["image", "ls", "-q"], vec!["rmi", "-f"]),
        (vec!["volume", "ls", "-q"], vec!["volume", "rm", "-f"]),
    ] {
        for label in &labels {
            let mut args = list.clone();
            args.extend(["--filter", label.as_str()]);
            let ids = docker_lines(&args);
            if !ids.is_empty() {
                let _ = Command::new("docker").args(&rm).args(&ids).output();
            }
        }
    }
}
