//! `sprout user …`, `sprout token …`, `sprout audit` and `sprout logout`.

use crate::{client, config, output, read_password, read_password_line, CliError, GlobalArgs};
use reqwest::Method;
use sprout_core::api::{
    ApiToken, AuditEntry, ChangePassword, CreateToken, CreateUser, CreatedToken, PasswordChanged,
    User,
};
use sprout_core::auth::Role;

#[derive(Debug, Clone, clap::Subcommand)]
pub enum UserCommand {
    /// Add a user (admin only)
    Add {
        name: String,
        /// admin (everything, users), deployer (apps, versions, environments) or viewer (read only)
        #[arg(long)]
        role: Role,
        /// Read the password from the first line of standard input
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users (admin only)
    List {
        #[arg(long)]
        json: bool,
    },
    /// Remove a user and every token it holds (admin only)
    Remove { name: String },
    /// Change a user's password (admin, or a user for itself); revokes every other token
    /// the user holds. Your own login stays: the saved login gets a new session token
    Passwd {
        name: String,
        /// Read the new password from the first line of standard input
        #[arg(long)]
        password_stdin: bool,
    },
    /// Revoke every token a user holds, sessions and API tokens (admin, or a user for itself)
    RevokeTokens { name: String },
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum TokenCommand {
    /// Create a named API token for you, with your role (e.g. for CI); printed once
    Create {
        name: String,
        /// Lifetime: 30d, 12h, 90m, 45s
        #[arg(long, value_name = "DURATION", default_value = sprout_core::auth::DEFAULT_TOKEN_TTL)]
        expires: String,
        /// Print the API's JSON (with the token)
        #[arg(long)]
        json: bool,
    },
    /// List your named API tokens (admins: --all for everyone's)
    List {
        #[arg(long)]
        all: bool,
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token by name or id; it stops working at once
    Revoke { token: String },
}

impl crate::Client {
    pub async fn create_user(&self, req: &CreateUser) -> Result<User, CliError> {
        self.send_json(Method::POST, &["users"], Some(req)).await
    }
    pub async fn list_users(&self) -> Result<Vec<User>, CliError> {
        self.get_json(&["users"], &[]).await
    }
    pub async fn remove_user(&self, name: &str) -> Result<(), CliError> {
        let url = self.api_url(&["users", name])?;
        self.send(self.request(Method::DELETE, url))
            .await
            .map(|_| ())
    }
    pub async fn change_password(
        &self,
        name: &str,
        req: &ChangePassword,
    ) -> Result<PasswordChanged, CliError> {
        self.send_json(Method::PUT, &["users", name, "password"], Some(req))
            .await
    }
    pub async fn revoke_user_tokens(&self, name: &str) -> Result<(), CliError> {
        let url = self.api_url(&["users", name, "tokens"])?;
        self.send(self.request(Method::DELETE, url))
            .await
            .map(|_| ())
    }
    pub async fn create_token(&self, req: &CreateToken) -> Result<CreatedToken, CliError> {
        self.send_json(Method::POST, &["tokens"], Some(req)).await
    }
    pub async fn list_tokens(&self, all: bool) -> Result<Vec<ApiToken>, CliError> {
        let query = if all {
            vec![("all", "true".to_string())]
        } else {
            vec![]
        };
        self.get_json(&["tokens"], &query).await
    }
    pub async fn revoke_token(&self, token: &str) -> Result<ApiToken, CliError> {
        self.send_json::<(), _>(Method::DELETE, &["tokens", token], None)
            .await
    }
    pub async fn audit(&self, limit: u32) -> Result<Vec<AuditEntry>, CliError> {
        self.get_json(&["audit"], &[("limit", limit.to_string())])
            .await
    }
    pub async fn logout(&self) -> Result<(), CliError> {
        let url = self.api_url(&["logout"])?;
        self.send(self.request(Method::POST, url)).await.map(|_| ())
    }
}

pub(crate) async fn run_user(global: &GlobalArgs, command: UserCommand) -> Result<(), CliError> {
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
            let users = c.list_users().await?;
            if json {
                output::print_json(&users);
            } else {
                let mut t = output::table(&["USER", "ROLE", "CREATED"]);
                for u in &users {
                    t.add_row(vec![
                        u.username.clone(),
                        u.role.to_string(),
                        output::time(&u.created_at),
                    ]);
                }
                println!("{}", output::render(&t));
            }
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

async fn passwd(c: &crate::Client, name: &str, password_stdin: bool) -> Result<(), CliError> {
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

pub(crate) async fn run_token(global: &GlobalArgs, command: TokenCommand) -> Result<(), CliError> {
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
            if json {
                output::print_json(&created);
            } else {
                eprintln!(
                    "token '{}' ({}, expires {}); it is shown only this once:",
                    created.info.name,
                    created.info.role,
                    output::time(&created.info.expires_at)
                );
                println!("{}", created.token);
            }
        }
        TokenCommand::List { all, json } => {
            let tokens = c.list_tokens(all).await?;
            if json {
                output::print_json(&tokens);
            } else {
                let mut t = output::table(&["NAME", "ID", "USER", "ROLE", "EXPIRES", "REVOKED"]);
                for k in &tokens {
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
                println!("{}", output::render(&t));
            }
        }
        TokenCommand::Revoke { token } => {
            let k = c.revoke_token(&token).await?;
            println!("revoked token '{}' of {}", k.name, k.username);
        }
    }
    Ok(())
}

pub(crate) async fn run_audit(global: &GlobalArgs, limit: u32, json: bool) -> Result<(), CliError> {
    let entries = client(global).audit(limit).await?;
    if json {
        output::print_json(&entries);
    } else {
        let mut t = output::table(&["TIME", "WHO", "METHOD", "PATH", "STATUS"]);
        for e in &entries {
            t.add_row(vec![
                output::time(&e.time),
                e.actor.clone(),
                e.method.clone(),
                e.path.clone(),
                e.status.to_string(),
            ]);
        }
        println!("{}", output::render(&t));
    }
    Ok(())
}
