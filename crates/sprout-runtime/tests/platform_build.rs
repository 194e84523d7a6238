//! The platform images build on a host with nothing but Docker and the tools of any Linux:
//! docker/build-platform.sh (the script the binary embeds) runs with a PATH holding only sh,
//! coreutils, sed, awk, grep, tar, gzip and docker, so no apt-get, dpkg-deb, debootstrap,
//! curl, wget, xz or busybox of the host can help. It needs the local Docker engine and the
//! Debian mirror, and FAILS (never skips) without them. Images get unique names and are
//! removed, so the real `sprout/platform-*` images are not touched.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// What the script may use from the host besides coreutils: a POSIX shell, sed, awk, grep,
/// tar, gzip and the Docker client.
const HOST_TOOLS: &[&str] = &["sh", "sed", "awk", "grep", "tar", "gzip", "docker"];

/// Coreutils (more than the script uses: any of them may be taken for granted).
const COREUTILS: &str = "basename cat chmod cp cut date dd dirname echo env expr false head id \
    ln ls mkdir mktemp mv od printf rm rmdir sha256sum sleep sort tail tee touch tr true uname \
    uniq wc";

/// Tools the old script took from the host; none may be reachable now.
const NOT_ON_HOST: &str = "apt-get dpkg dpkg-deb debootstrap curl wget xz unxz busybox perl ar";

fn suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_string()
}

fn find_on_path(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(tool))
        .find(|p| p.is_file())
}

/// A directory of symlinks to HOST_TOOLS and COREUTILS only, to be the script's whole PATH.
fn bare_path() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for tool in HOST_TOOLS
        .iter()
        .copied()
        .chain(COREUTILS.split_whitespace())
    {
        let Some(target) = find_on_path(tool) else {
            panic!("{tool} is not on this host's PATH");
        };
        symlink(&target, dir.path().join(tool)).expect("symlink");
    }
    // The shell itself must not find them either (a busybox sh may run its applets).
    let found = Command::new(dir.path().join("sh"))
        .arg("-c")
        .arg(format!(
            "for t in {NOT_ON_HOST}; do command -v $t; done; true"
        ))
        .env("PATH", dir.path())
        .output()
        .expect("run sh");
    assert_eq!(
        String::from_utf8_lossy(&found.stdout),
        "",
        "must stay hidden"
    );
    dir
}

fn docker(args: &[&str]) -> Output {
    match Command::new("docker").args(args).output() {
        Ok(out) => out,
        Err(e) => panic!("Docker must be reachable for these tests: {e}"),
    }
}

fn stdout_of(args: &[&str]) -> String {
    let out = docker(args);
    assert!(
        out.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Removes the test image even when an assertion panics.
struct Image(String);

impl Drop for Image {
    fn drop(&mut self) {
        let _ = docker(&["rmi", "-f", &self.0]);
    }
}

/// Builds `platform` as a fresh test image with only HOST_TOOLS on the PATH; returns it
/// with the script's output.
fn build(platform: &str) -> (Image, String) {
    assert!(
        docker(&["version"]).status.success(),
        "Docker must be reachable for these tests"
    );
    let image = Image(format!("sprout-test/platform-{platform}-{}", suffix()));
    let bin = bare_path();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = Command::new(bin.path().join("sh"))
        .arg("docker/build-platform.sh")
        .arg(platform)
        .arg(&image.0)
        .current_dir(&root)
        .env("PATH", bin.path())
        .output()
        .expect("run build-platform.sh");
    assert!(
        out.status.success(),
        "build-platform.sh {platform} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(log.contains(&format!("done: {}", image.0)), "{log}");
    (image, log)
}

fn assert_platform_config(image: &str, platform: &str) {
    assert_eq!(
        stdout_of(&[
            "image",
            "inspect",
            image,
            "--format",
            "{{index .Config.Labels \"sprout.platform\"}} {{.Config.WorkingDir}} {{json .Config.Cmd}}",
        ]),
        format!("{platform} /app [\"/bin/sh\"]")
    );
}

/// The trimmed output of `cmd` run in a fresh container of `image`.
fn run_in(image: &Image, cmd: &[&str]) -> String {
    let mut args = vec!["run", "--rm", image.0.as_str()];
    args.extend_from_slice(cmd);
    stdout_of(&args)
}

#[test]
fn python_image_builds_with_only_docker_on_the_host() {
    let (image, log) = build("python");
    // debootstrap checked the archive's signature with the keyring it was given.
    assert!(log.contains("I: Valid Release signature"), "{log}");
    assert_platform_config(&image.0, "python");
    let probe = "import ssl, venv, json; print(1)";
    assert_eq!(run_in(&image, &["python3", "-c", probe]), "1");
    let pip = run_in(&image, &["pip", "--version"]);
    assert!(pip.starts_with("pip "), "{pip}");
    // A bundle's build step may `pip install` (no EXTERNALLY-MANAGED), and the apt caches
    // are not shipped.
    let leftovers = "ls /usr/lib/python3*/EXTERNALLY-MANAGED /var/lib/apt/lists/*Packages* \
                     /var/cache/apt/archives/*.deb 2>/dev/null | wc -l";
    assert_eq!(run_in(&image, &["sh", "-c", leftovers]), "0");
}

#[test]
fn static_image_builds_with_only_docker_on_the_host() {
    let (image, _) = build("static");
    assert_platform_config(&image.0, "static");
    let hello = run_in(&image, &["sh", "-c", "echo hello from busybox"]);
    assert_eq!(hello, "hello from busybox");
    // The CA bundle, from Debian's ca-certificates.
    let bundle = "/etc/ssl/certs/ca-certificates.crt";
    let certs: u32 = run_in(&image, &["grep", "-c", "BEGIN CERTIFICATE", bundle])
        .parse()
        .expect("a count");
    assert!(certs > 100, "only {certs} certificates");
}
