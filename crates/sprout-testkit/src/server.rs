//! The real `sprout server`, started as production starts it.

use sprout_cli::{CliError, Client};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a starting server may take to report its addresses.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// `sprout server` on free loopback ports with `data` as its data directory; its stdout is
/// piped for [`Started::read`]. The caller adds its own environment and other stdio.
pub fn server_command(binary: &Path, data: &Path, admin_password: &str) -> Command {
    let mut cmd = Command::new(binary);
    cmd.args([
        "server",
        "--listen",
        "127.0.0.1:0",
        "--balancer",
        "127.0.0.1:0",
        "--data",
    ])
    .arg(data)
    .env("SPROUT_ADMIN_PASSWORD", admin_password)
    // A free port per server (0.0.0.0: instances reach it via their network's gateway).
    .env("SPROUT_SQS", "0.0.0.0:0")
    .env("RUST_LOG", "info,sqlx=warn,bollard=warn,hyper=warn")
    .stdout(Stdio::piped());
    cmd
}

/// Why a server's addresses could not be read.
#[derive(Debug)]
pub enum StartError {
    /// Its stdout was not piped.
    NoStdout,
    /// It did not report all of its addresses in time (or exited).
    Silent,
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::NoStdout => write!(f, "the server's stdout is not piped"),
            StartError::Silent => write!(
                f,
                "the server did not report its addresses in {} s",
                START_TIMEOUT.as_secs()
            ),
        }
    }
}

impl std::error::Error for StartError {}

/// What a started server reported on stdout.
#[derive(Debug, Clone)]
pub struct Started {
    pub api: String,
    pub balancer: String,
    pub server_id: String,
}

impl Started {
    /// Reads the API and balancer addresses and the server id from a server spawned from
    /// [`server_command`]. Its stdout is read for the rest of its life, so the server never
    /// blocks on a full pipe.
    pub fn read(child: &mut Child) -> Result<Started, StartError> {
        let stdout = child.stdout.take().ok_or(StartError::NoStdout)?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let (mut api, mut balancer, mut server_id) = (None, None, None);
        let deadline = Instant::now() + START_TIMEOUT;
        while api.is_none() || balancer.is_none() || server_id.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx.recv_timeout(left).map_err(|_| StartError::Silent)?;
            if let Some(rest) = line.strip_prefix("api listening on ") {
                api = Some(rest.trim().to_string());
            } else if let Some(rest) = line.strip_prefix("balancer listening on ") {
                balancer = rest.split_whitespace().next().map(str::to_string);
            } else if let Some(rest) = line.strip_prefix("server id ") {
                server_id = Some(rest.trim().to_string());
            }
        }
        Ok(Started {
            api: api.unwrap_or_default(),
            balancer: balancer.unwrap_or_default(),
            server_id: server_id.unwrap_or_default(),
        })
    }

    /// Logs in as the admin: a client holding the session token, and the token.
    pub async fn login_admin(&self, password: &str) -> Result<(Client, String), CliError> {
        let login = Client::new(&self.api, None)
            .login("admin", password)
            .await?;
        Ok((
            Client::new(&self.api, Some(login.token.clone())),
            login.token,
        ))
    }
}
