//! Sprout's client: the CLI verbs (everything but `sprout server`) over the REST API.
//!
//! The `sprout` binary flattens [`GlobalArgs`] and [`Command`] into its parser and calls
//! [`run`]; on error it prints `error: {e}` (one line) to stderr and exits 1.
//! [`Client`] is the typed REST client, public for integration tests.
//!
//! `args` holds what the verbs take, `verbs` what they do, `output` how they show it.

pub mod archive;
mod args;
pub mod client;
pub mod config;
pub mod error;
mod output;
pub mod queue;
pub mod resources;
pub mod users;
mod verbs;
mod wait;

pub use args::*;
pub use client::Client;
pub use config::SavedLogin;
pub use error::CliError;
pub use verbs::run;
