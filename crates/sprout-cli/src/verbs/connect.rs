//! The client every verb talks through: the server and token resolved from the flags, the
//! environment and the saved login.

use crate::args::GlobalArgs;
use crate::client::Client;
use crate::config::{self, SavedLogin};
use crate::error::CliError;

/// The saved login, if any; a broken one is reported and ignored outside `login`.
fn saved_login() -> Option<SavedLogin> {
    let dir = config::config_dir().ok()?;
    match config::load_login(&dir) {
        Ok(saved) => saved,
        Err(e) => {
            eprintln!("warning: {e}");
            None
        }
    }
}

/// A client for the resolved server and token.
pub(super) fn client(global: &GlobalArgs) -> Client {
    let saved = saved_login();
    let server = config::resolve_server(
        global.server.as_deref(),
        config::non_empty_env("SPROUT_URL").as_deref(),
        saved.as_ref(),
    );
    let token = config::resolve_token(
        config::non_empty_env("SPROUT_TOKEN").as_deref(),
        saved.as_ref(),
    );
    Client::new(&server, token)
}

pub(super) fn usage<E: std::fmt::Display>(e: E) -> CliError {
    CliError::Usage(e.to_string())
}
