//! `sprout user …`, `sprout token …` and `sprout audit`.

use super::connect::client;
use super::session::{read_password, read_password_line};
use crate::args::{GlobalArgs, TokenCommand, UserCommand};
use crate::client::Client;
use crate::config;
use crate::error::CliError;
use crate::output;
use sprout_core::api::{ChangePassword, CreateToken, CreateUser};

pub(super) async fn run_user(global: &GlobalArgs, command: UserCommand) -> Result<(), CliError> {
    let c = client(global);
    match command {
        UserCommand::Add {
            name,
            role,
            password_stdin,
        } => {
            if !password_stdin {
                return Err(CliError::Usage(
                    "give the new user's password on standard input with --password-stdin".into(),
                ));
            }
            let password = read_password_line(std::io::stdin().lock())?;
            let user = c
                .create_user(&CreateUser {
                    username: name,
                    password,
                    role,
                })
                .await?;
            println!("added user {} ({})", user.username, user.role);
        }
        UserCommand::List { json } => {
            output::show(json, &c.list_users().await?, |users| {
                let mut t = output::table(&["USER", "ROLE", "CREATED"]);
                for u in users {
                    t.add_row(vec![
                        u.username.clone(),
                        u.role.to_string(),
                        output::time(&u.created_at),
                    ]);
                }
                t
            });
        }
        UserCommand::Remove { name } => {
            c.remove_user(&name).await?;
            println!("removed user {name} and its tokens");
        }
        UserCommand::Passwd {
            name,
            password_stdin,
        } => passwd(&c, &name, password_stdin).await?,
        UserCommand::RevokeTokens { name } => {
            c.revoke_user_tokens(&name).await?;
            println!("revoked every token of {name} (sessions and API tokens)");
        }
    }
    Ok(())
}

async fn passwd(c: &Client, name: &str, password_stdin: bool) -> Result<(), CliError> {
    let password = read_password(password_stdin, format!("New password for {name}: ")).await?;
    let changed = c
        .change_password(name, &ChangePassword { password })
        .await?;
    let Some(session) = changed.session else {
        println!("changed the password of {name}; its sessions and API tokens are revoked");
        return Ok(());
    };
    // Your own password: the token this call came with is revoked too. Keep the saved login
    // working with the new session token, unless the call used another token.
    let dir = config::config_dir()?;
    let saved = config::load_login(&dir).unwrap_or(None);
    let used_saved = config::non_empty_env("SPROUT_TOKEN").is_none();
    match saved {
        Some(mut saved) if used_saved && saved.username == session.username => {
            saved.token = session.token;
            let path = config::save_login(&dir, &saved)?;
            println!(
                "changed your password; your other sessions and API tokens are revoked; \
                 this login stays (saved in {})",
                path.display()
            );
        }
        _ => {
            eprintln!(
                "changed your password; every other session and API token of yours is revoked, \
                 the one this call used too; your new session token (shown only this once):"
            );
            println!("{}", session.token);
        }
    }
    Ok(())
}

pub(super) async fn run_token(global: &GlobalArgs, command: TokenCommand) -> Result<(), CliError> {
    let c = client(global);
    match command {
        TokenCommand::Create {
            name,
            expires,
            json,
        } => {
            let created = c
                .create_token(&CreateToken {
                    name,
                    expires_in: Some(expires),
                })
                .await?;
            output::show(json, &created, |created| {
                eprintln!(
                    "token '{}' ({}, expires {}); it is shown only this once:",
                    created.info.name,
                    created.info.role,
                    output::time(&created.info.expires_at)
                );
                created.token.clone()
            });
        }
        TokenCommand::List { all, json } => {
            output::show(json, &c.list_tokens(all).await?, |tokens| {
                let mut t = output::table(&["NAME", "ID", "USER", "ROLE", "EXPIRES", "REVOKED"]);
                for k in tokens {
                    t.add_row(vec![
                        k.name.clone(),
                        k.id.clone(),
                        k.username.clone(),
                        k.role.to_string(),
                        output::time(&k.expires_at),
                        k.revoked_at
                            .as_ref()
                            .map(output::time)
                            .unwrap_or_else(|| "-".into()),
                    ]);
                }
                t
            });
        }
        TokenCommand::Revoke { token } => {
            let k = c.revoke_token(&token).await?;
            println!("revoked token '{}' of {}", k.name, k.username);
        }
    }
    Ok(())
}

pub(super) async fn run_audit(global: &GlobalArgs, limit: u32, json: bool) -> Result<(), CliError> {
    let entries = client(global).audit(limit).await?;
    output::show(json, &entries, |entries| {
        let mut t = output::table(&["TIME", "WHO", "METHOD", "PATH", "STATUS"]);
        for e in entries {
            t.add_row(vec![
                output::time(&e.time),
                e.actor.clone(),
                e.method.clone(),
                e.path.clone(),
                e.status.to_string(),
            ]);
        }
        t
    });
    Ok(())
}
