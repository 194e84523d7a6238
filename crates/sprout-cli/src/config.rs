//! The saved login (`login.json`) and where the CLI finds its server and token.

use crate::error::CliError;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Where the CLI talks to when nothing else says.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";
/// Name of the saved login inside the config directory.
pub const LOGIN_FILE: &str = "login.json";

/// What `sprout login` saves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedLogin {
    pub server: String,
    pub token: String,
    pub username: String,
}

/// `$SPROUT_CONFIG_DIR`, else `~/.config/sprout`.
pub fn config_dir() -> Result<PathBuf, CliError> {
    config_dir_from(non_empty_env("SPROUT_CONFIG_DIR"), non_empty_env("HOME"))
}

pub(crate) fn config_dir_from(
    config_dir: Option<String>,
    home: Option<String>,
) -> Result<PathBuf, CliError> {
    if let Some(dir) = config_dir {
        return Ok(PathBuf::from(dir));
    }
    match home {
        Some(home) => Ok(Path::new(&home).join(".config").join("sprout")),
        None => Err(CliError::Usage(
            "cannot find the config directory: set SPROUT_CONFIG_DIR or HOME".to_string(),
        )),
    }
}

/// The saved login file's path.
pub fn login_path() -> Result<PathBuf, CliError> {
    Ok(config_dir()?.join(LOGIN_FILE))
}

/// Reads the saved login in `dir`; `None` when there is none.
pub fn load_login(dir: &Path) -> Result<Option<SavedLogin>, CliError> {
    let path = dir.join(LOGIN_FILE);
    let raw = match std::fs::read(&path) {
        Ok(raw) => raw,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(CliError::file(path, e)),
    };
    serde_json::from_slice(&raw).map(Some).map_err(|e| {
        CliError::Usage(format!(
            "{}: not a saved login ({e}); run `sprout login` again",
            path.display()
        ))
    })
}

/// Writes the saved login into `dir` (created if missing) with file mode 0600, atomically.
pub fn save_login(dir: &Path, login: &SavedLogin) -> Result<PathBuf, CliError> {
    create_private_dir(dir)?;
    let path = dir.join(LOGIN_FILE);
    let tmp = dir.join(format!(".{LOGIN_FILE}.{}.tmp", std::process::id()));
    let body = serde_json::to_vec_pretty(login).map_err(|e| CliError::Usage(e.to_string()))?;
    let write = || -> std::io::Result<()> {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut file = opts.open(&tmp)?;
        #[cfg(unix)]
        {
            // The mode above is filtered by the umask and ignored for an existing file.
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        }
        file.write_all(&body)?;
        file.write_all(b"\n")?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        CliError::file(&path, e)
    })?;
    Ok(path)
}

fn create_private_dir(dir: &Path) -> Result<(), CliError> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(|e| CliError::file(dir, e))
}

/// `--server`, then `SPROUT_URL`, then the saved login, then [`DEFAULT_SERVER`].
pub fn resolve_server(flag: Option<&str>, env: Option<&str>, saved: Option<&SavedLogin>) -> String {
    let chosen = [flag, env, saved.map(|s| s.server.as_str())]
        .into_iter()
        .flatten()
        .map(str::trim)
        .find(|s| !s.is_empty())
        .unwrap_or(DEFAULT_SERVER);
    normalize_server(chosen)
}

/// `SPROUT_TOKEN`, then the saved login.
pub fn resolve_token(env: Option<&str>, saved: Option<&SavedLogin>) -> Option<String> {
    [env, saved.map(|s| s.token.as_str())]
        .into_iter()
        .flatten()
        .map(str::trim)
        .find(|s| !s.is_empty())
        .map(str::to_string)
}

/// Drops trailing slashes and adds `http://` to a bare `host:port`.
pub fn normalize_server(url: &str) -> String {
    let url = url.trim().trim_end_matches('/');
    if url.contains("://") {
        url.to_string()
    } else {
        format!("http://{url}")
    }
}

pub(crate) fn non_empty_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn saved() -> SavedLogin {
        SavedLogin {
            server: "http://saved:1".into(),
            token: "saved-token".into(),
            username: "admin".into(),
        }
    }

    #[test]
    fn server_resolution_order() {
        let s = saved();
        assert_eq!(
            resolve_server(Some("http://flag:1"), Some("http://env:1"), Some(&s)),
            "http://flag:1"
        );
        assert_eq!(
            resolve_server(None, Some("http://env:1"), Some(&s)),
            "http://env:1"
        );
        assert_eq!(resolve_server(None, None, Some(&s)), "http://saved:1");
        assert_eq!(resolve_server(None, None, None), DEFAULT_SERVER);
        // Empty values do not count.
        assert_eq!(
            resolve_server(Some(""), Some(" "), Some(&s)),
            "http://saved:1"
        );
        assert_eq!(
            resolve_server(Some("localhost:9000/"), None, None),
            "http://localhost:9000"
        );
        assert_eq!(
            resolve_server(Some("https://x.example/"), None, None),
            "https://x.example"
        );
    }

    #[test]
    fn token_resolution_order() {
        let s = saved();
        assert_eq!(
            resolve_token(Some("env-token"), Some(&s)).as_deref(),
            Some("env-token")
        );
        assert_eq!(
            resolve_token(None, Some(&s)).as_deref(),
            Some("saved-token")
        );
        assert_eq!(
            resolve_token(Some(""), Some(&s)).as_deref(),
            Some("saved-token")
        );
        assert_eq!(resolve_token(None, None), None);
    }

    #[test]
    fn config_dir_order() {
        assert_eq!(
            config_dir_from(Some("/c".into()), Some("/h".into())).unwrap(),
            PathBuf::from("/c")
        );
        assert_eq!(
            config_dir_from(None, Some("/h".into())).unwrap(),
            PathBuf::from("/h/.config/sprout")
        );
        assert!(config_dir_from(None, None).is_err());
    }

    #[test]
    fn saved_login_round_trips_with_mode_0600() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("nested").join("sprout");
        assert_eq!(load_login(&dir).unwrap(), None);
        let path = save_login(&dir, &saved()).unwrap();
        assert_eq!(path, dir.join(LOGIN_FILE));
        assert_eq!(load_login(&dir).unwrap(), Some(saved()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
            // Overwriting a looser file tightens it.
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let mut other = saved();
            other.token = "new".into();
            save_login(&dir, &other).unwrap();
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
            assert_eq!(load_login(&dir).unwrap().unwrap().token, "new");
        }
    }

    #[test]
    fn corrupt_login_is_an_error_not_a_panic() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join(LOGIN_FILE), b"{not json").unwrap();
        let e = load_login(tmp.path()).unwrap_err();
        assert!(e.to_string().contains("sprout login"));
    }
}
