//! Sprout's client: the CLI verbs (everything but `sprout server`) over the REST API.
//!
//! The `sprout` binary flattens [`GlobalArgs`] and [`Command`] into its parser and calls
//! [`run`]; on error it prints `error: {e}` (one line) to stderr and exits 1.
//! [`Client`] is the typed REST client, public for integration tests.

pub mod archive;
pub mod client;
pub mod config;
pub mod error;
mod output;
pub mod queue;
pub mod users;
mod wait;

pub use client::Client;
pub use config::SavedLogin;
pub use error::CliError;

use sprout_core::api::{CreateEnvironment, DeployRequest, Environment, SetProperties};
use sprout_core::{
    AppName, BatchSize, Bootstrap, EnvName, InstanceType, Mode, Policy, Tier, VersionLabel,
};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

/// Options every client verb takes.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct GlobalArgs {
    /// The Sprout server (default: $SPROUT_URL, then the saved login, then http://127.0.0.1:8080)
    #[arg(long, global = true, value_name = "URL")]
    pub server: Option<String>,
}

/// All client verbs (everything but `server`, which the binary adds).
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Log in to a Sprout server and save the token
    Login {
        /// User name (default: the saved login's, else admin)
        #[arg(long, value_name = "NAME")]
        user: Option<String>,
        /// Read the password from the first line of standard input
        #[arg(long)]
        password_stdin: bool,
    },
    /// Create or delete an application
    App {
        #[command(subcommand)]
        command: AppCommand,
    },
    /// List applications
    Apps {
        /// Print the API's JSON
        #[arg(long)]
        json: bool,
    },
    /// Archive a directory (or take a .tar.gz/.zip), upload it as a version and build it
    Push {
        /// The app's directory, or a .tar.gz/.tgz/.zip archive
        #[arg(value_name = "DIR|ARCHIVE")]
        source: PathBuf,
        #[arg(long)]
        app: String,
        #[arg(long)]
        label: String,
        /// Deploy the version to this environment once built, and wait
        #[arg(long, value_name = "ENV")]
        deploy: Option<String>,
    },
    /// List an application's versions
    Versions {
        #[arg(long)]
        app: String,
        /// Print the API's JSON
        #[arg(long)]
        json: bool,
    },
    /// Create an environment
    Env {
        #[command(subcommand)]
        command: EnvCommand,
    },
    /// List environments
    Envs {
        #[arg(long)]
        app: Option<String>,
        /// Print the API's JSON
        #[arg(long)]
        json: bool,
    },
    /// Show an environment and its instances
    Status {
        env: String,
        /// Print the API's JSON
        #[arg(long)]
        json: bool,
    },
    /// Show an environment's events
    Events {
        env: String,
        /// Print the API's JSON
        #[arg(long)]
        json: bool,
        /// Keep printing new events
        #[arg(short, long)]
        follow: bool,
        /// How many recent events to show first
        #[arg(short = 'n', long, default_value_t = 50)]
        limit: u32,
    },
    /// Show an environment's instance logs
    Logs {
        env: String,
        /// Lines per instance
        #[arg(long, value_name = "N")]
        tail: Option<u32>,
        /// Keep printing new lines
        #[arg(short, long)]
        follow: bool,
    },
    /// Show an environment's health, like `eb health`: its verdict, requests and instances
    Health {
        env: String,
        /// Print the API's JSON
        #[arg(long)]
        json: bool,
        /// Redraw every 2 seconds until Ctrl-C
        #[arg(long)]
        refresh: bool,
    },
    /// Deploy a version to an environment
    Deploy(DeployArgs),
    /// Stop an environment's running deployment and roll back to what ran before
    Abort {
        env: String,
        /// Wait until the rollback ends; fail if it failed
        #[arg(long)]
        wait: bool,
    },
    /// Show or change an environment's settings (instance_type, min, max, policy, batch,
    /// health_check_path, sticky, …), or save them as a named configuration
    Config(ConfigArgs),
    /// Set or remove environment properties (passed to instances as environment variables).
    /// Values are secret: viewers see them masked unless a key is marked --public
    Setenv {
        env: String,
        /// Properties to set
        #[arg(
            value_name = "KEY=VALUE",
            value_parser = parse_key_value,
            required_unless_present_any = ["unset", "public", "secret"]
        )]
        set: Vec<(String, String)>,
        /// A property to remove (repeatable)
        #[arg(long, value_name = "KEY")]
        unset: Vec<String>,
        /// Show this property's value to viewers too (repeatable; no new instances needed)
        #[arg(long, value_name = "KEY")]
        public: Vec<String>,
        /// Mask this property's value for viewers again, the default (repeatable)
        #[arg(long, value_name = "KEY")]
        secret: Vec<String>,
        /// Wait until the instances run with the new properties; fail if that failed
        #[arg(long)]
        wait: bool,
    },
    /// Exchange the CNAMEs (and so the URLs) of two environments
    Swap {
        env: String,
        #[arg(value_name = "OTHER_ENV")]
        other: String,
    },
    /// List an environment's deployments (launch, deploy, configure, rollback, …), newest first
    Deployments {
        env: String,
        /// Print the API's JSON
        #[arg(long)]
        json: bool,
    },
    /// Terminate an environment
    Terminate {
        env: String,
        /// Wait until the environment is terminated
        #[arg(long)]
        wait: bool,
    },
    /// Revoke the saved session token on the server and forget it here
    Logout,
    /// Users and their roles (admin only)
    User {
        #[command(subcommand)]
        command: users::UserCommand,
    },
    /// Named API tokens (for CI), with expiry; revoked tokens stop working at once
    Token {
        #[command(subcommand)]
        command: users::TokenCommand,
    },
    /// Show who changed what through the API (admin only)
    Audit {
        /// How many recent entries
        #[arg(short = 'n', long, default_value_t = 100)]
        limit: u32,
        /// Print the API's JSON
        #[arg(long)]
        json: bool,
    },
    /// Worker queues: send, stats, dead letters, SQS credentials
    Queue {
        #[command(subcommand)]
        command: queue::QueueCommand,
    },
    /// Manage platform images
    Platform {
        #[command(subcommand)]
        command: PlatformCommand,
    },
    /// Scale an environment: `scale ENV N` fixes the count (min = max = N); `--min/--max`
    /// bound it for the autoscaler
    Scale {
        env: String,
        /// Instance count (min = max = N)
        #[arg(value_name = "N", conflicts_with_all = ["min", "max"])]
        instances: Option<u32>,
        #[arg(long)]
        min: Option<u32>,
        #[arg(long)]
        max: Option<u32>,
    },
    /// List zones, or take one out of use and bring it back
    Zone {
        #[command(subcommand)]
        command: ZoneCommand,
    },
    /// Scheduled scaling actions ("at 08:00 min=4")
    Schedule {
        #[command(subcommand)]
        command: ScheduleCommand,
    },
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum ZoneCommand {
    /// List zones with their engine, availability and instances
    List {
        /// Print the API's JSON
        #[arg(long)]
        json: bool,
    },
    /// Stop using a zone (an outage): its instances move to the other zones
    Fail { zone: String },
    /// Use a zone again: instances spread over it again
    Restore { zone: String },
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum ScheduleCommand {
    /// Add an action: `schedule add ENV morning --cron "0 8 * * *" --min 4`
    Add {
        env: String,
        name: String,
        /// Cron in UTC: five fields (minute first) or six (seconds first)
        #[arg(long)]
        cron: String,
        #[arg(long)]
        min: Option<u32>,
        #[arg(long)]
        max: Option<u32>,
        #[arg(long)]
        desired: Option<u32>,
    },
    /// List an environment's scheduled actions
    List {
        env: String,
        /// Print the API's JSON
        #[arg(long)]
        json: bool,
    },
    /// Remove a scheduled action
    Remove { env: String, name: String },
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum AppCommand {
    /// Create an application
    Create { app: String },
    /// Delete an application (and its versions)
    Delete { app: String },
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum EnvCommand {
    /// Create (launch) an environment running a version
    Create(EnvCreateArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct EnvCreateArgs {
    pub env: String,
    #[arg(long)]
    pub app: String,
    #[arg(long, value_name = "LABEL")]
    pub version: String,
    /// web or worker
    #[arg(long)]
    pub tier: Option<Tier>,
    /// dev or prod
    #[arg(long)]
    pub mode: Option<Mode>,
    /// A fixed instance count
    #[arg(long, value_name = "N", conflicts_with_all = ["min", "max"])]
    pub instances: Option<u32>,
    #[arg(long, value_name = "N")]
    pub min: Option<u32>,
    #[arg(long, value_name = "N")]
    pub max: Option<u32>,
    /// nano, micro, small, medium or large
    #[arg(long = "type", value_name = "TYPE")]
    pub instance_type: Option<InstanceType>,
    /// CNAME prefix (default: the environment's name)
    #[arg(long, value_name = "PREFIX")]
    pub cname: Option<String>,
    /// golden, user-data or hybrid
    #[arg(long)]
    pub bootstrap: Option<Bootstrap>,
    /// Sticky sessions with this cookie lifetime (1h, 30m, …); bare --sticky = on (1 day)
    #[arg(
        long,
        value_name = "DURATION",
        num_args = 0..=1,
        default_missing_value = "on",
        value_parser = parse_sticky
    )]
    pub sticky: Option<String>,
    /// Start from this saved configuration of the application (`sprout config ENV --save NAME`)
    #[arg(long = "config", value_name = "NAME")]
    pub saved_config: Option<String>,
    /// Any setting, as `sprout config` names them, e.g. policy=rolling (repeatable)
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_setting)]
    pub settings: Vec<(String, String)>,
    /// An environment property (repeatable)
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub env_vars: Vec<(String, String)>,
    /// Wait until the launch ends; fail if it failed
    #[arg(long)]
    pub wait: bool,
}

#[derive(Debug, Clone, clap::Args)]
pub struct DeployArgs {
    pub env: String,
    #[arg(long, value_name = "LABEL")]
    pub version: String,
    /// This deployment's policy (default: the environment's): all-at-once, rolling,
    /// rolling-with-additional-batch, immutable or traffic-splitting
    #[arg(long, value_name = "POLICY")]
    pub policy: Option<Policy>,
    /// Instances per batch, N or N% (default: the environment's)
    #[arg(long, value_name = "N|N%", value_parser = parse_batch)]
    pub batch: Option<String>,
    /// Traffic splitting: the new version's share of requests while it is evaluated
    #[arg(long, value_name = "P", value_parser = clap::value_parser!(u8).range(1..=99))]
    pub canary_percent: Option<u8>,
    /// Traffic splitting: how long the new version is evaluated, e.g. 30s or 2m
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_arg)]
    pub evaluation: Option<String>,
    /// Wait until the deployment ends; if it failed, follow the rollback, then fail
    #[arg(long)]
    pub wait: bool,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ConfigArgs {
    pub env: String,
    /// Change a setting (repeatable), e.g. --set policy=rolling --set batch=50%
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_setting)]
    pub set: Vec<(String, String)>,
    /// Save the environment's configuration under this name (after any --set)
    #[arg(long, value_name = "NAME")]
    pub save: Option<String>,
    /// With --set: wait until the change is applied; fail if it failed
    #[arg(long, requires = "set")]
    pub wait: bool,
    /// Print the API's JSON (property values unmasked)
    #[arg(long, conflicts_with_all = ["set", "save"])]
    pub json: bool,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum PlatformCommand {
    /// Build a platform image (python, static; all when none is named)
    Build { name: Option<String> },
}

/// The platform images `sprout platform build` builds when none is named.
pub const PLATFORMS: &[&str] = &["python", "static"];

/// Parses `KEY=VALUE` (the value may hold `=`; the key is a shell-style variable name).
pub fn parse_key_value(s: &str) -> Result<(String, String), String> {
    let (key, value) = s
        .split_once('=')
        .ok_or_else(|| format!("expected KEY=VALUE, got '{s}'"))?;
    let mut chars = key.chars();
    let valid = matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric());
    if !valid {
        return Err(format!(
            "invalid key '{key}': use letters, digits and '_', not starting with a digit"
        ));
    }
    Ok((key.to_string(), value.to_string()))
}

/// Parses a setting's `KEY=VALUE` (the server checks the name and the value).
pub fn parse_setting(s: &str) -> Result<(String, String), String> {
    let (key, value) = s
        .split_once('=')
        .ok_or_else(|| format!("expected KEY=VALUE, got '{s}'"))?;
    let key = key.trim();
    if key.is_empty() {
        return Err(format!("expected KEY=VALUE, got '{s}'"));
    }
    Ok((key.to_string(), value.trim().to_string()))
}

/// Checks a batch size, `N` or `N%`.
pub fn parse_batch(s: &str) -> Result<String, String> {
    BatchSize::parse(s)
        .map(|b| b.to_string())
        .map_err(|e| e.to_string())
}

/// Checks a duration like `20s`, `500ms`, `2m` or `1h`.
pub fn parse_duration_arg(s: &str) -> Result<String, String> {
    sprout_core::settings::parse_duration("duration", s)
        .map(|_| s.trim().to_string())
        .map_err(|_| format!("'{s}' is not a duration like 20s, 500ms or 2m"))
}

/// `--sticky`'s value: `on`, `off` or a cookie lifetime.
pub fn parse_sticky(s: &str) -> Result<String, String> {
    match s.trim() {
        v @ ("on" | "off") => Ok(v.to_string()),
        d => {
            parse_duration_arg(d).map_err(|_| format!("'{s}' is not on, off or a duration like 1h"))
        }
    }
}

/// Runs one client verb.
pub async fn run(global: GlobalArgs, command: Command) -> Result<(), CliError> {
    match command {
        Command::Login {
            user,
            password_stdin,
        } => login(&global, user, password_stdin).await,
        Command::App {
            command: AppCommand::Create { app },
        } => {
            let app = client(&global).create_app(&app).await?;
            println!("application {} created", app.name);
            Ok(())
        }
        Command::App {
            command: AppCommand::Delete { app },
        } => {
            client(&global).delete_app(&app).await?;
            println!("application {app} deleted");
            Ok(())
        }
        Command::Apps { json } => {
            let c = client(&global);
            if json {
                output::print_json(&c.get_json::<serde_json::Value>(&["apps"], &[]).await?);
            } else {
                let apps = c.list_apps().await?;
                if apps.is_empty() {
                    eprintln!("no applications (create one with `sprout app create APP`)");
                } else {
                    println!("{}", output::render(&output::apps_table(&apps)));
                }
            }
            Ok(())
        }
        Command::Push {
            source,
            app,
            label,
            deploy,
        } => push(&global, source, app, label, deploy).await,
        Command::Versions { app, json } => {
            let c = client(&global);
            if json {
                output::print_json(
                    &c.get_json::<serde_json::Value>(&["apps", &app, "versions"], &[])
                        .await?,
                );
            } else {
                let versions = c.list_versions(&app).await?;
                if versions.is_empty() {
                    eprintln!("no versions of {app} (upload one with `sprout push`)");
                } else {
                    println!("{}", output::render(&output::versions_table(&versions)));
                }
            }
            Ok(())
        }
        Command::Env {
            command: EnvCommand::Create(args),
        } => env_create(&global, args).await,
        Command::Envs { app, json } => {
            let c = client(&global);
            if json {
                let query: Vec<(&str, String)> = app.map(|a| ("app", a)).into_iter().collect();
                output::print_json(
                    &c.get_json::<serde_json::Value>(&["environments"], &query)
                        .await?,
                );
            } else {
                let envs = c.list_environments(app.as_deref()).await?;
                if envs.is_empty() {
                    eprintln!("no environments");
                } else {
                    println!("{}", output::render(&output::envs_table(&envs)));
                }
            }
            Ok(())
        }
        Command::Status { env, json } => {
            let c = client(&global);
            if json {
                output::print_json(
                    &c.get_json::<serde_json::Value>(&["environments", &env], &[])
                        .await?,
                );
            } else {
                println!("{}", output::status_text(&c.get_environment(&env).await?));
            }
            Ok(())
        }
        Command::Events {
            env,
            json,
            follow,
            limit,
        } => events(&global, env, json, follow, limit).await,
        Command::Logs { env, tail, follow } => logs(&global, env, tail, follow).await,
        Command::Health { env, json, refresh } => health(&global, env, json, refresh).await,
        Command::Deploy(a) => deploy(&global, a).await,
        Command::Abort { env, wait } => {
            let c = client(&global);
            let started = c.abort(&env).await?;
            if wait {
                let done =
                    wait::environment(&c, &env, &started, wait::Until::OperationEnds).await?;
                println!("rolled back: {}", wait::summary(&done));
            } else {
                let what = started
                    .operation
                    .as_ref()
                    .map(|o| format!("{} {}", o.kind, o.id))
                    .unwrap_or_else(|| "rollback".to_string());
                println!(
                    "aborted; {what} started on {env} (status {}); follow with `sprout events {env} -f`",
                    started.status
                );
            }
            Ok(())
        }
        Command::Config(a) => config_verb(&global, a).await,
        Command::Setenv {
            env,
            set,
            unset,
            public,
            secret,
            wait,
        } => {
            let c = client(&global);
            let before = current_operation(&c, &env).await?;
            let only_visibility = set.is_empty() && unset.is_empty();
            let body = SetProperties {
                set: set.into_iter().collect(),
                unset,
                public,
                secret,
            };
            let started = c.set_properties(&env, &body).await?;
            if only_visibility {
                // Which values viewers see: applied at once, no instance replaced.
                println!("updated which properties of {env} viewers may read");
                return Ok(());
            }
            after_change(&c, &env, before, &started, wait, "properties").await
        }
        Command::Swap { env, other } => {
            let c = client(&global);
            c.swap(&env, &other).await?;
            let url = |e: &sprout_core::api::EnvironmentDetail| {
                e.environment
                    .url
                    .clone()
                    .unwrap_or_else(|| e.environment.cname.clone())
            };
            match (
                c.get_environment(&env).await,
                c.get_environment(&other).await,
            ) {
                (Ok(a), Ok(b)) => println!(
                    "swapped CNAMEs: {env} now answers at {}, {other} at {}",
                    url(&a),
                    url(&b)
                ),
                _ => println!("swapped the CNAMEs of {env} and {other}"),
            }
            Ok(())
        }
        Command::Scale {
            env,
            instances,
            min,
            max,
        } => {
            let c = client(&global);
            let req = sprout_core::api::ScaleRequest {
                instances,
                min,
                max,
            };
            let e = c.scale(&env, &req).await?;
            println!(
                "{}: {} desired instance(s) (min {}, max {})",
                e.name, e.desired, e.min, e.max
            );
            Ok(())
        }
        Command::Zone { command } => {
            let c = client(&global);
            let zones = match command {
                ZoneCommand::List { json: true } => {
                    output::print_json(&c.get_json::<serde_json::Value>(&["zones"], &[]).await?);
                    return Ok(());
                }
                ZoneCommand::List { json: false } => c.zones().await?,
                ZoneCommand::Fail { zone } => c.zone_action(&zone, "fail").await?,
                ZoneCommand::Restore { zone } => c.zone_action(&zone, "restore").await?,
            };
            let mut t = output::table(&["ZONE", "ENGINE", "AVAILABLE", "INSTANCES"]);
            for z in &zones {
                t.add_row(vec![
                    z.name.clone(),
                    z.engine.clone(),
                    if z.available {
                        "yes".into()
                    } else {
                        "no (failed)".into()
                    },
                    z.instances.to_string(),
                ]);
            }
            println!("{}", output::render(&t));
            Ok(())
        }
        Command::Schedule { command } => {
            let c = client(&global);
            match command {
                ScheduleCommand::Add {
                    env,
                    name,
                    cron,
                    min,
                    max,
                    desired,
                } => {
                    let action = sprout_core::api::ScheduledAction {
                        name,
                        cron,
                        min,
                        max,
                        desired,
                    };
                    let a = c.add_schedule(&env, &action).await?;
                    println!("scheduled action {} added ({})", a.name, a.cron);
                }
                ScheduleCommand::List { env, json } => {
                    if json {
                        output::print_json(
                            &c.get_json::<serde_json::Value>(
                                &["environments", &env, "schedules"],
                                &[],
                            )
                            .await?,
                        );
                    } else {
                        let mut t = output::table(&["NAME", "CRON (UTC)", "MIN", "MAX", "DESIRED"]);
                        let show =
                            |v: Option<u32>| v.map(|v| v.to_string()).unwrap_or_else(|| "-".into());
                        for a in c.schedules(&env).await? {
                            t.add_row(vec![
                                a.name,
                                a.cron,
                                show(a.min),
                                show(a.max),
                                show(a.desired),
                            ]);
                        }
                        println!("{}", output::render(&t));
                    }
                }
                ScheduleCommand::Remove { env, name } => {
                    c.remove_schedule(&env, &name).await?;
                    println!("scheduled action {name} removed");
                }
            }
            Ok(())
        }
        Command::Deployments { env, json } => {
            let c = client(&global);
            if json {
                output::print_json(
                    &c.get_json::<serde_json::Value>(&["environments", &env, "deployments"], &[])
                        .await?,
                );
            } else {
                let ds = c.deployments(&env).await?;
                if ds.is_empty() {
                    eprintln!("no deployments");
                } else {
                    println!("{}", output::render(&output::deployments_table(&ds)));
                }
            }
            Ok(())
        }
        Command::Terminate { env, wait } => {
            let c = client(&global);
            let started = c.terminate(&env).await?;
            if wait {
                wait::environment(&c, &env, &started, wait::Until::Terminated).await?;
                println!("environment {env} terminated");
            } else {
                println!("terminating {env} (status {})", started.status);
            }
            Ok(())
        }
        Command::Queue { command } => queue::run(&global, command).await,
        Command::User { command } => users::run_user(&global, command).await,
        Command::Token { command } => users::run_token(&global, command).await,
        Command::Audit { limit, json } => users::run_audit(&global, limit, json).await,
        Command::Logout => logout(&global).await,
        Command::Platform {
            command: PlatformCommand::Build { name },
        } => {
            let c = client(&global);
            let names: Vec<String> = match name {
                Some(n) => vec![n],
                None => PLATFORMS.iter().map(|s| s.to_string()).collect(),
            };
            for name in names {
                platform_build(&c, &name).await?;
            }
            Ok(())
        }
    }
}

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
fn client(global: &GlobalArgs) -> Client {
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

fn usage<E: std::fmt::Display>(e: E) -> CliError {
    CliError::Usage(e.to_string())
}

/// Revokes the saved token on the server (so a copy of it stops working too) and removes
/// the saved login. A token the server no longer accepts is forgotten all the same.
async fn logout(global: &GlobalArgs) -> Result<(), CliError> {
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

async fn login(
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

/// The first line of `input`, without its line ending.
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

pub(crate) fn read_password_line(mut input: impl std::io::BufRead) -> Result<String, CliError> {
    let mut line = String::new();
    input
        .read_line(&mut line)
        .map_err(|e| CliError::Usage(format!("cannot read the password from stdin: {e}")))?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

async fn push(
    global: &GlobalArgs,
    source: PathBuf,
    app: String,
    label: String,
    deploy: Option<String>,
) -> Result<(), CliError> {
    AppName::parse(&app).map_err(usage)?;
    VersionLabel::parse(&label).map_err(usage)?;
    if let Some(env) = &deploy {
        EnvName::parse(env).map_err(usage)?;
    }
    let c = client(global);

    let src = source.clone();
    let bundle = tokio::task::spawn_blocking(move || archive::prepare_bundle(&src))
        .await
        .map_err(usage)??;
    if let Some(files) = bundle.files {
        eprintln!("archived {} ({files} files)", source.display());
    }

    let bar = output::bytes_bar(&format!("uploading {label}"));
    let uploaded = c
        .upload_version(&app, &label, &bundle.path, Some(bar.clone()))
        .await;
    bar.finish_and_clear();
    let version = uploaded?;
    drop(bundle);

    let version = wait::version(&c, &app, version).await?;
    match &version.image {
        Some(image) => println!("version {label} ready (image {image})"),
        None => println!("version {label} ready"),
    }

    if let Some(env) = deploy {
        let started = c.deploy(&env, &label).await?;
        let done = wait::operation(&c, &env, &started).await?;
        println!("{}", wait::summary(&done));
    }
    Ok(())
}

async fn env_create(global: &GlobalArgs, a: EnvCreateArgs) -> Result<(), CliError> {
    if let (Some(min), Some(max)) = (a.min, a.max) {
        if min > max {
            return Err(CliError::Usage(format!(
                "--min {min} is more than --max {max}"
            )));
        }
    }
    let mut env = BTreeMap::new();
    for (k, v) in a.env_vars {
        env.insert(k, v);
    }
    let req = CreateEnvironment {
        name: a.env.clone(),
        app: a.app,
        version: a.version,
        tier: a.tier,
        mode: a.mode,
        instances: a.instances,
        min: a.min,
        max: a.max,
        instance_type: a.instance_type,
        cname: a.cname,
        bootstrap: a.bootstrap,
        env,
        sticky: a.sticky,
        config: a.saved_config,
        settings: a.settings.into_iter().collect(),
    };
    let c = client(global);
    let started = c.create_environment(&req).await?;
    if a.wait {
        let done = wait::environment(&c, &a.env, &started, wait::Until::OperationEnds).await?;
        println!("{}", wait::summary(&done));
    } else {
        println!(
            "creating environment {} (status {}); follow with `sprout events {} -f`",
            started.name, started.status, started.name
        );
    }
    Ok(())
}

async fn deploy(global: &GlobalArgs, a: DeployArgs) -> Result<(), CliError> {
    let c = client(global);
    let body = DeployRequest {
        version: a.version.clone(),
        policy: a.policy,
        batch: a.batch,
        canary_percent: a.canary_percent,
        evaluation: a.evaluation,
    };
    let started = c.deploy_with(&a.env, &body).await?;
    if a.wait {
        let done = wait::operation(&c, &a.env, &started).await?;
        println!("{}", wait::summary(&done));
    } else {
        let how = a.policy.unwrap_or(started.policy);
        println!(
            "deploying {} to {} ({how}, status {}); follow with `sprout events {} -f`",
            a.version, a.env, started.status, a.env
        );
    }
    Ok(())
}

/// The id of the environment's current operation, to tell whether a change started one.
async fn current_operation(c: &Client, env: &str) -> Result<Option<i64>, CliError> {
    Ok(c.get_environment(env)
        .await?
        .environment
        .operation
        .map(|o| o.id))
}

/// After a configuration or properties change: follows the operation it started, if any
/// (its id differs from `before`'s), with `--wait`; else says what happened.
async fn after_change(
    c: &Client,
    env: &str,
    before: Option<i64>,
    started: &Environment,
    wait: bool,
    what: &str,
) -> Result<(), CliError> {
    // A new operation has a higher id than the one before the change.
    let new_op = started.operation.as_ref().filter(|o| match before {
        Some(b) => o.id > b,
        None => true,
    });
    match new_op {
        None => println!("{what} of {env} updated"),
        Some(_) if wait => {
            let done = wait::operation(c, env, started).await?;
            println!("{what} of {env} applied: {}", wait::summary(&done));
        }
        Some(op) => println!(
            "{what} of {env} updated; {} {} is replacing instances (status {}); follow with `sprout events {env} -f`",
            op.kind, op.id, started.status
        ),
    }
    Ok(())
}

async fn config_verb(global: &GlobalArgs, a: ConfigArgs) -> Result<(), CliError> {
    let c = client(global);
    if a.set.is_empty() && a.save.is_none() {
        if a.json {
            output::print_json(
                &c.get_json::<serde_json::Value>(&["environments", &a.env, "config"], &[])
                    .await?,
            );
        } else {
            println!("{}", output::config_text(&c.get_config(&a.env).await?));
        }
        return Ok(());
    }
    if !a.set.is_empty() {
        let before = current_operation(&c, &a.env).await?;
        let started = c.configure(&a.env, a.set.into_iter().collect()).await?;
        after_change(&c, &a.env, before, &started, a.wait, "configuration").await?;
    }
    if let Some(name) = a.save {
        let saved = c.save_config(&a.env, &name).await?;
        println!(
            "saved configuration {} (revision {})",
            saved.name, saved.revision
        );
    }
    Ok(())
}

/// ANSI: clear the screen and home the cursor.
const CLEAR_SCREEN: &str = "\x1b[2J\x1b[H";

async fn health(
    global: &GlobalArgs,
    env: String,
    json: bool,
    refresh: bool,
) -> Result<(), CliError> {
    use std::io::IsTerminal;
    let c = client(global);
    let tty = std::io::stdout().is_terminal();
    let mut first = true;
    let mut failures = 0;
    loop {
        let text = if json {
            c.get_json::<serde_json::Value>(&["environments", &env, "health"], &[])
                .await
                .map(|v| serde_json::to_string_pretty(&v).unwrap_or_default())
        } else {
            c.health_report(&env).await.map(|h| output::health_text(&h))
        };
        let text = match text {
            Ok(t) => {
                failures = 0;
                t
            }
            Err(e @ CliError::Http(_)) if refresh && !first && failures < 10 => {
                failures += 1;
                eprintln!("warning: {e}");
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        if !refresh {
            println!("{text}");
            return Ok(());
        }
        let mut out = std::io::stdout().lock();
        if tty {
            let now = chrono::Utc::now().format("%H:%M:%S");
            let _ = write!(
                out,
                "{CLEAR_SCREEN}{text}\n\n{now}  refreshing every 2 s; Ctrl-C to stop\n"
            );
        } else {
            if !first && !json {
                let _ = writeln!(out);
            }
            let _ = writeln!(out, "{text}");
        }
        let _ = out.flush();
        drop(out);
        first = false;
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

async fn events(
    global: &GlobalArgs,
    env: String,
    json: bool,
    follow: bool,
    limit: u32,
) -> Result<(), CliError> {
    let c = client(global);
    if json && !follow {
        let query = [("limit", limit.to_string())];
        output::print_json(
            &c.get_json::<serde_json::Value>(&["environments", &env, "events"], &query)
                .await?,
        );
        return Ok(());
    }
    let first = c.events(&env, Some(limit)).await?;
    let mut last_id = first.iter().map(|e| e.id).max().unwrap_or(0);
    if !follow {
        if first.is_empty() {
            eprintln!("no events");
        } else {
            println!("{}", output::render(&output::events_table(&first)));
        }
        return Ok(());
    }
    let print = |e: &sprout_core::api::Event| {
        if json {
            println!("{}", serde_json::to_string(e).unwrap_or_default());
        } else {
            println!("{}", output::event_line(e));
        }
    };
    first.iter().for_each(print);
    let mut failures = 0;
    loop {
        let _ = std::io::stdout().flush();
        tokio::time::sleep(Duration::from_secs(1)).await;
        match c.events(&env, Some(limit.max(100))).await {
            Ok(batch) => {
                failures = 0;
                let seen = last_id;
                for e in batch.iter().filter(|e| e.id > seen) {
                    print(e);
                    last_id = last_id.max(e.id);
                }
            }
            Err(e @ CliError::Http(_)) => {
                failures += 1;
                if failures > 10 {
                    return Err(e);
                }
            }
            Err(e) => return Err(e),
        }
    }
}

async fn logs(
    global: &GlobalArgs,
    env: String,
    tail: Option<u32>,
    follow: bool,
) -> Result<(), CliError> {
    let c = client(global);
    let text = c.logs(&env, tail).await?;
    print!("{text}");
    if !text.is_empty() && !text.ends_with('\n') {
        println!();
    }
    if !follow {
        return Ok(());
    }
    let mut previous: Vec<String> = text.lines().map(str::to_string).collect();
    let mut failures = 0;
    loop {
        let _ = std::io::stdout().flush();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let text = match c.logs(&env, tail).await {
            Ok(t) => {
                failures = 0;
                t
            }
            Err(e @ CliError::Http(_)) => {
                failures += 1;
                if failures > 10 {
                    return Err(e);
                }
                continue;
            }
            Err(e) => return Err(e),
        };
        let current: Vec<String> = text.lines().map(str::to_string).collect();
        for line in new_lines(&previous, &current) {
            println!("{line}");
        }
        previous = current;
    }
}

/// The lines of `current` that follow what `previous` already showed: after the last place
/// where `previous`'s final lines appear in `current`; all of `current` if they do not.
pub(crate) fn new_lines<'a>(previous: &[String], current: &'a [String]) -> &'a [String] {
    if previous.is_empty() {
        return current;
    }
    // Longest anchor first (at most 3 lines), so repeated lines rarely mislead.
    for k in (1..=previous.len().min(3)).rev() {
        let anchor = &previous[previous.len() - k..];
        if current.len() >= k {
            for end in (k..=current.len()).rev() {
                if &current[end - k..end] == anchor {
                    return &current[end..];
                }
            }
        }
    }
    // The anchor scrolled out of the window (or logs restarted): show everything new.
    if current == previous {
        &current[current.len()..]
    } else {
        current
    }
}

async fn platform_build(c: &Client, name: &str) -> Result<(), CliError> {
    eprintln!("building platform {name}…");
    let mut log = Vec::new();
    let mut stdout = std::io::stdout();
    c.build_platform(name, |chunk| {
        let _ = stdout.write_all(chunk);
        let _ = stdout.flush();
        log.extend_from_slice(chunk);
        if log.len() > 64 * 1024 {
            log.drain(..log.len() - 16 * 1024);
        }
    })
    .await?;
    // A failure after the log started streaming cannot change the status any more; the
    // server then ends the log with a line `error: <detail>`.
    let text = String::from_utf8_lossy(&log);
    if let Some(last) = text.lines().rev().find(|l| !l.trim().is_empty()) {
        if let Some(detail) = last.trim().strip_prefix("error:") {
            return Err(CliError::Failed(format!(
                "platform {name} failed to build: {}",
                detail.trim()
            )));
        }
    }
    eprintln!("platform {name} built");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    #[derive(Debug, Parser)]
    #[command(name = "sprout")]
    struct TestCli {
        #[command(flatten)]
        global: GlobalArgs,
        #[command(subcommand)]
        command: Command,
    }

    fn parse(args: &[&str]) -> Result<TestCli, clap::Error> {
        TestCli::try_parse_from(std::iter::once("sprout").chain(args.iter().copied()))
    }

    #[test]
    fn clap_definition_is_valid() {
        TestCli::command().debug_assert();
    }

    #[test]
    fn key_value_parsing() {
        assert_eq!(parse_key_value("A=1"), Ok(("A".into(), "1".into())));
        assert_eq!(
            parse_key_value("DB_URL=postgres://u:p@h/db?x=y"),
            Ok(("DB_URL".into(), "postgres://u:p@h/db?x=y".into()))
        );
        assert_eq!(parse_key_value("_X="), Ok(("_X".into(), "".into())));
        assert!(parse_key_value("NOVALUE").is_err());
        assert!(parse_key_value("=v").is_err());
        assert!(parse_key_value("1A=v").is_err());
        assert!(parse_key_value("A-B=v").is_err());
        assert!(parse_key_value("ÄB=v").is_err());
    }

    #[test]
    fn env_create_arguments() {
        let cli = parse(&[
            "env",
            "create",
            "web-dev",
            "--app",
            "shop",
            "--version",
            "v1",
            "--tier",
            "worker",
            "--mode",
            "prod",
            "--min",
            "2",
            "--max",
            "4",
            "--type",
            "small",
            "--bootstrap",
            "user-data",
            "--env",
            "A=1",
            "--env",
            "B=x=y",
            "--wait",
            "--server",
            "http://h:1",
        ])
        .unwrap();
        assert_eq!(cli.global.server.as_deref(), Some("http://h:1"));
        let Command::Env {
            command: EnvCommand::Create(a),
        } = cli.command
        else {
            panic!("wrong command")
        };
        assert_eq!(a.tier, Some(Tier::Worker));
        assert_eq!(a.mode, Some(Mode::Prod));
        assert_eq!((a.min, a.max, a.instances), (Some(2), Some(4), None));
        assert_eq!(a.instance_type, Some(InstanceType::Small));
        assert_eq!(a.bootstrap, Some(Bootstrap::UserData));
        assert_eq!(
            a.env_vars,
            vec![("A".into(), "1".into()), ("B".into(), "x=y".into())]
        );
        assert!(a.wait);

        assert!(parse(&[
            "env",
            "create",
            "e1",
            "--app",
            "a1",
            "--version",
            "v",
            "--instances",
            "2",
            "--min",
            "1"
        ])
        .is_err());
        assert!(parse(&[
            "env",
            "create",
            "e1",
            "--app",
            "a1",
            "--version",
            "v",
            "--type",
            "huge"
        ])
        .is_err());
        assert!(parse(&[
            "env",
            "create",
            "e1",
            "--app",
            "a1",
            "--version",
            "v",
            "--env",
            "oops"
        ])
        .is_err());
    }

    #[test]
    fn other_verbs_parse() {
        assert!(matches!(
            parse(&[
                "login",
                "--user",
                "admin",
                "--password-stdin",
                "--server",
                "x"
            ])
            .unwrap()
            .command,
            Command::Login {
                password_stdin: true,
                ..
            }
        ));
        assert!(matches!(
            parse(&["app", "create", "shop"]).unwrap().command,
            Command::App {
                command: AppCommand::Create { .. }
            }
        ));
        assert!(matches!(
            parse(&["apps", "--json"]).unwrap().command,
            Command::Apps { json: true }
        ));
        assert!(matches!(
            parse(&["push", "./dir", "--app", "shop", "--label", "v1", "--deploy", "web"])
                .unwrap()
                .command,
            Command::Push {
                deploy: Some(_),
                ..
            }
        ));
        assert!(matches!(
            parse(&["events", "web", "-f"]).unwrap().command,
            Command::Events { follow: true, .. }
        ));
        assert!(matches!(
            parse(&["logs", "web", "--tail", "10", "-f"])
                .unwrap()
                .command,
            Command::Logs {
                tail: Some(10),
                follow: true,
                ..
            }
        ));
        assert!(matches!(
            parse(&["deploy", "web", "--version", "v2", "--wait"])
                .unwrap()
                .command,
            Command::Deploy(DeployArgs { wait: true, .. })
        ));
        assert!(matches!(
            parse(&["terminate", "web"]).unwrap().command,
            Command::Terminate { wait: false, .. }
        ));
        assert!(matches!(
            parse(&["platform", "build"]).unwrap().command,
            Command::Platform {
                command: PlatformCommand::Build { name: None }
            }
        ));
        assert!(parse(&["deploy", "web"]).is_err());
    }

    #[test]
    fn password_line() {
        assert_eq!(
            read_password_line(&b"s3cret\r\nrest"[..]).unwrap(),
            "s3cret"
        );
        assert_eq!(read_password_line(&b"pw"[..]).unwrap(), "pw");
        assert_eq!(read_password_line(&b""[..]).unwrap(), "");
    }

    #[test]
    fn log_follow_prints_only_new_lines() {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            new_lines(&v(&[]), &v(&["a", "b"])),
            v(&["a", "b"]).as_slice()
        );
        assert_eq!(
            new_lines(&v(&["a", "b", "c"]), &v(&["b", "c", "d", "e"])),
            v(&["d", "e"]).as_slice()
        );
        assert_eq!(
            new_lines(&v(&["a", "b"]), &v(&["a", "b"])),
            v(&[]).as_slice()
        );
        assert_eq!(
            new_lines(&v(&["x", "x", "x"]), &v(&["x", "x", "x", "x"])),
            v(&[]).as_slice()
        );
        assert_eq!(
            new_lines(&v(&["p", "q", "r"]), &v(&["s", "t"])),
            v(&["s", "t"]).as_slice()
        );
    }

    #[test]
    fn deploy_flags() {
        let Command::Deploy(a) = parse(&[
            "deploy",
            "web",
            "--version",
            "v2",
            "--policy",
            "traffic-splitting",
            "--batch",
            "25%",
            "--canary-percent",
            "20",
            "--evaluation",
            "30s",
            "--wait",
        ])
        .unwrap()
        .command
        else {
            panic!("wrong command")
        };
        assert_eq!(a.policy, Some(Policy::TrafficSplitting));
        assert_eq!(a.batch.as_deref(), Some("25%"));
        assert_eq!(a.canary_percent, Some(20));
        assert_eq!(a.evaluation.as_deref(), Some("30s"));
        assert!(a.wait);
        let Command::Deploy(a) = parse(&["deploy", "web", "--version", "v2", "--batch", "2"])
            .unwrap()
            .command
        else {
            panic!("wrong command")
        };
        assert_eq!(
            (a.policy, a.batch.as_deref(), a.canary_percent, a.wait),
            (None, Some("2"), None, false)
        );
        for policy in Policy::ALL {
            assert!(parse(&["deploy", "w", "--version", "v", "--policy", policy.as_str()]).is_ok());
        }
        let bad: &[&[&str]] = &[
            &["--policy", "blue-green"],
            &["--batch", "0"],
            &["--batch", "150%"],
            &["--batch", "half"],
            &["--canary-percent", "0"],
            &["--canary-percent", "100"],
            &["--evaluation", "soon"],
        ];
        for extra in bad {
            let mut args = vec!["deploy", "web", "--version", "v2"];
            args.extend_from_slice(extra);
            assert!(parse(&args).is_err(), "{extra:?} should be refused");
        }
    }

    #[test]
    fn config_setenv_and_other_new_verbs() {
        let Command::Config(a) = parse(&[
            "config",
            "web",
            "--set",
            "policy=rolling",
            "--set",
            "health_check_path=/up?x=1",
            "--save",
            "base",
            "--wait",
        ])
        .unwrap()
        .command
        else {
            panic!("wrong command")
        };
        assert_eq!(
            a.set,
            vec![
                ("policy".into(), "rolling".into()),
                ("health_check_path".into(), "/up?x=1".into())
            ]
        );
        assert_eq!(a.save.as_deref(), Some("base"));
        assert!(a.wait && !a.json);
        assert!(matches!(
            parse(&["config", "web", "--json"]).unwrap().command,
            Command::Config(ConfigArgs { json: true, .. })
        ));
        // --json is for reading, --wait for changes.
        assert!(parse(&["config", "web", "--json", "--set", "min=2"]).is_err());
        assert!(parse(&["config", "web", "--wait"]).is_err());
        assert!(parse(&["config", "web", "--set", "nokey"]).is_err());
        assert!(parse(&["config", "web", "--set", "=v"]).is_err());

        let Command::Setenv {
            env,
            set,
            unset,
            wait,
            ..
        } = parse(&["setenv", "web", "A=1", "DB=x=y", "--unset", "OLD", "--wait"])
            .unwrap()
            .command
        else {
            panic!("wrong command")
        };
        assert_eq!(env, "web");
        assert_eq!(
            set,
            vec![("A".into(), "1".into()), ("DB".into(), "x=y".into())]
        );
        assert_eq!(unset, vec!["OLD".to_string()]);
        assert!(wait);
        assert!(parse(&["setenv", "web", "--unset", "OLD"]).is_ok());
        let Command::Setenv { public, secret, .. } =
            parse(&["setenv", "web", "--public", "MODE", "--secret", "DB"])
                .unwrap()
                .command
        else {
            panic!("wrong command")
        };
        assert_eq!(
            (public, secret),
            (vec!["MODE".to_string()], vec!["DB".to_string()])
        );
        assert!(parse(&["setenv", "web"]).is_err());
        assert!(parse(&["setenv", "web", "1A=x"]).is_err());

        assert!(matches!(
            parse(&["swap", "blue", "green"]).unwrap().command,
            Command::Swap { .. }
        ));
        assert!(parse(&["swap", "blue"]).is_err());
        assert!(matches!(
            parse(&["abort", "web", "--wait"]).unwrap().command,
            Command::Abort { wait: true, .. }
        ));
        assert!(matches!(
            parse(&["health", "web", "--refresh", "--json"])
                .unwrap()
                .command,
            Command::Health {
                refresh: true,
                json: true,
                ..
            }
        ));
        assert!(matches!(
            parse(&["deployments", "web", "--json"]).unwrap().command,
            Command::Deployments { json: true, .. }
        ));
    }

    #[test]
    fn env_create_sticky_config_and_settings() {
        let create = |extra: &[&str]| {
            let mut args = vec!["env", "create", "web", "--app", "shop", "--version", "v1"];
            args.extend_from_slice(extra);
            parse(&args).map(|cli| match cli.command {
                Command::Env {
                    command: EnvCommand::Create(a),
                } => a,
                _ => panic!("wrong command"),
            })
        };
        let a = create(&[]).unwrap();
        assert_eq!((a.sticky, a.saved_config), (None, None));
        assert!(a.settings.is_empty());
        assert_eq!(create(&["--sticky"]).unwrap().sticky.as_deref(), Some("on"));
        assert_eq!(
            create(&["--sticky", "--wait"]).unwrap().sticky.as_deref(),
            Some("on")
        );
        assert_eq!(
            create(&["--sticky", "30m"]).unwrap().sticky.as_deref(),
            Some("30m")
        );
        assert_eq!(
            create(&["--sticky=off"]).unwrap().sticky.as_deref(),
            Some("off")
        );
        assert!(create(&["--sticky", "forever"]).is_err());
        let a = create(&[
            "--config",
            "base",
            "--set",
            "policy=immutable",
            "--set",
            "batch=50%",
        ])
        .unwrap();
        assert_eq!(a.saved_config.as_deref(), Some("base"));
        assert_eq!(
            a.settings,
            vec![
                ("policy".into(), "immutable".into()),
                ("batch".into(), "50%".into())
            ]
        );
    }

    #[test]
    fn value_parsers() {
        assert_eq!(parse_setting(" min = 2 "), Ok(("min".into(), "2".into())));
        assert_eq!(
            parse_setting("health_check_path="),
            Ok(("health_check_path".into(), "".into()))
        );
        assert!(parse_setting("min").is_err());
        assert_eq!(parse_batch("3"), Ok("3".into()));
        assert_eq!(parse_batch(" 30% "), Ok("30%".into()));
        assert!(parse_batch("0%").is_err());
        assert_eq!(parse_duration_arg("500ms"), Ok("500ms".into()));
        assert_eq!(parse_duration_arg("2m"), Ok("2m".into()));
        assert!(parse_duration_arg("2 weeks").is_err());
        assert_eq!(parse_sticky("on"), Ok("on".into()));
        assert_eq!(parse_sticky("1h"), Ok("1h".into()));
        assert!(parse_sticky("maybe").is_err());
    }
}
