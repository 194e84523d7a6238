//! `sprout login` and `sprout logout`.

use super::connect::usage;
use crate::args::GlobalArgs;
use crate::client::Client;
use crate::config::{self, SavedLogin};
use crate::error::CliError;

/// Revokes the saved token on the server (so a copy of it stops working too) and removes
/// the saved login. A token the server no longer accepts is forgotten all the same.
pub(super) async fn logout(global: &GlobalArgs) -> Result<(), CliError> {
    let dir = config::config_dir()?;
    let Some(saved) = config::load_login(&dir)? else {
        println!("not logged in");
        return Ok(());
    };
    let server = config::resolve_server(global.server.as_deref(), None, Some(&saved));
    let outcome = Client::new(&server, Some(saved.token.clone()))
        .logout()
        .await;
    match outcome {
        Ok(()) | Err(CliError::Api { status: 401, .. }) => {}
        Err(e) => return Err(e),
    }
    let path = dir.join(config::LOGIN_FILE);
    std::fs::remove_file(&path).map_err(|e| CliError::file(&path, e))?;
    println!("logged out of {server}");
    Ok(())
}

pub(super) async fn login(
    global: &GlobalArgs,
    user: Option<String>,
    password_stdin: bool,
) -> Result<(), CliError> {
    let dir = config::config_dir()?;
    let saved = config::load_login(&dir).unwrap_or(None);
    let server = config::resolve_server(
        global.server.as_deref(),
        config::non_empty_env("SPROUT_URL").as_deref(),
        saved.as_ref(),
    );
    let username = user
        .or_else(|| saved.as_ref().map(|s| s.username.clone()))
        .unwrap_or_else(|| "admin".to_string());
    let password = read_password(
        password_stdin,
        format!("Password for {username} at {server}: "),
    )
    .await?;
    if password.is_empty() {
        return Err(CliError::Usage("empty password".to_string()));
    }
    let client = Client::new(&server, None);
    let resp = client.login(&username, &password).await?;
    let login = SavedLogin {
        server: server.clone(),
        token: resp.token,
        username: resp.username.clone(),
    };
    let path = config::save_login(&dir, &login)?;
    println!(
        "logged in to {server} as {} ({}); token saved in {}",
        resp.username,
        resp.role,
        path.display()
    );
    Ok(())
}

/// A password from the first line of stdin (`--password-stdin`), or typed at a prompt.
pub(crate) async fn read_password(from_stdin: bool, prompt: String) -> Result<String, CliError> {
    if from_stdin {
        return read_password_line(std::io::stdin().lock());
    }
    tokio::task::spawn_blocking(move || rpassword::prompt_password(prompt))
        .await
        .map_err(usage)?
        .map_err(|e| {
            CliError::Usage(format!(
                "cannot read the password from the terminal ({e}); use --password-stdin"
            ))
        })
}

/// The first line of `input`, without its line ending.
pub(crate) fn read_password_line(mut input: impl std::io::BufRead) -> Result<String, CliError> {
    let mut line = String::new();
    input
        .read_line(&mut line)
        .map_err(|e| CliError::Usage(format!("cannot read the password from stdin: {e}")))?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_line() {
        assert_eq!(
            read_password_line(&b"s3cret\r\nrest"[..]).unwrap(),
            "s3cret"
        );
        assert_eq!(read_password_line(&b"pw"[..]).unwrap(), "pw");
        assert_eq!(read_password_line(&b""[..]).unwrap(), "");
    }
}
