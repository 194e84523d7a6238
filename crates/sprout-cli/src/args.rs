//! The CLI's arguments: every client verb's flags and the parsers of their values. What the
//! verbs do with them is in `verbs`.

use sprout_core::auth::Role;
use sprout_core::{Bootstrap, InstanceType, Mode, Policy, Tier};
use std::path::PathBuf;

mod values;
pub use values::{
    parse_batch, parse_duration_arg, parse_key_value, parse_property, parse_setting, parse_sticky,
};

/// Options every client verb takes.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct GlobalArgs {
    /// The Sprout server (default: $SPROUT_URL, then the saved login, then http://127.0.0.1:8080)
    #[arg(long, global = true, value_name = "URL")]
    pub server: Option<String>,
}

/// A struct naming one application by positional `APP` or `--app APP` (either, not both),
/// with the help text given; `required_unless_present` when one of the two must be given.
macro_rules! app_args {
    ($(#[$doc:meta])* $name:ident, $app_doc:tt, $flag_doc:tt $(, $required:ident)?) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Default, clap::Args)]
        pub struct $name {
            #[doc = $app_doc]
            #[arg(value_name = "APP" $(, $required = "app_flag")?)]
            app: Option<String>,
            #[doc = $flag_doc]
            #[arg(long = "app", id = "app_flag", value_name = "APP", conflicts_with = "app")]
            app_flag: Option<String>,
        }

        impl $name {
            /// The name given, whichever way it was.
            fn given(self) -> Option<String> {
                self.app.or(self.app_flag)
            }
        }
    };
}

app_args!(
    /// The application a read verb is about: positional `APP` or `--app APP` (either, not both).
    AppName,
    "The application",
    "The application (the same as the positional APP)",
    required_unless_present
);

impl AppName {
    /// The name given, whichever way it was.
    pub fn name(self) -> String {
        self.given().unwrap_or_default()
    }
}

app_args!(
    /// An optional application filter: positional `APP` or `--app APP` (either, not both).
    AppFilter,
    "Only this application's",
    "The same as the positional APP"
);

impl AppFilter {
    /// The name given, whichever way it was; none for every application.
    pub fn name(self) -> Option<String> {
        self.given()
    }
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
    /// Attached resources: databases and caches (postgres, mysql, redis)
    Resource {
        #[command(subcommand)]
        command: ResourceCommand,
    },
    /// List resources
    Resources {
        #[arg(long)]
        app: Option<String>,
        /// Print the API's JSON
        #[arg(long)]
        json: bool,
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
    /// Delete a version of an application
    Version {
        #[command(subcommand)]
        command: VersionCommand,
    },
    /// List an application's versions (`sprout versions APP` or `--app APP`)
    Versions {
        #[command(flatten)]
        app: AppName,
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
        #[command(flatten)]
        app: AppFilter,
        /// Print the API's JSON
        #[arg(long)]
        json: bool,
    },
    /// Show an environment, its instances and its attached resources
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
    /// Show an environment's health, like `eb health`: its verdict, requests, instances and
    /// attached resources
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
            value_parser = parse_property,
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
        command: UserCommand,
    },
    /// Named API tokens (for CI), with expiry; revoked tokens stop working at once
    Token {
        #[command(subcommand)]
        command: TokenCommand,
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
        command: QueueCommand,
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
pub enum VersionCommand {
    /// Delete a version and reclaim its bundle and image (refused while an environment runs it)
    Delete { app: String, label: String },
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
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = parse_property)]
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

#[derive(Debug, Clone, clap::Subcommand)]
pub enum QueueCommand {
    /// Send a message to the environment's queue (a web environment: its application's worker queue)
    Send {
        env: String,
        body: String,
        /// A string message attribute (repeatable)
        #[arg(long = "attr", value_name = "K=V", value_parser = parse_key_value)]
        attrs: Vec<(String, String)>,
        /// Seconds before the message becomes visible
        #[arg(long, value_name = "S")]
        delay: Option<u32>,
    },
    /// Show the queue's counts: visible, in flight, delayed, dead
    Stats {
        env: String,
        #[arg(long)]
        json: bool,
    },
    /// List the dead-letter queue's messages, or move them back with --redrive
    Dlq {
        env: String,
        /// Move every dead message back to the queue
        #[arg(long)]
        redrive: bool,
        #[arg(long)]
        json: bool,
    },
    /// Print the SQS endpoint, queue URL and keys for clients outside Sprout
    Credentials {
        env: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum ResourceCommand {
    /// Create a resource of an application
    Create {
        name: String,
        #[arg(long)]
        app: String,
        /// postgres, mysql or redis
        #[arg(long)]
        kind: String,
        /// An instance type: nano, micro (default), small, medium, large
        #[arg(long)]
        size: Option<String>,
        /// What a coupled environment's termination does: snapshot (default), retain, delete
        #[arg(long)]
        deletion_policy: Option<String>,
        /// Streaming read replicas (postgres only, 0-5): instances also get DATABASE_READ_URL
        #[arg(long, value_name = "N")]
        replicas: Option<u32>,
        /// Automated backups: a snapshot whenever this cron schedule fires, UTC ("0 3 * * *";
        /// 6 fields with seconds first also work)
        #[arg(long, value_name = "CRON")]
        backup: Option<String>,
        /// Automated snapshots to keep (1-100, default 7); manual snapshots are never pruned
        #[arg(long, value_name = "N", requires = "backup")]
        keep: Option<u32>,
        /// Wait until it is Available
        #[arg(long)]
        wait: bool,
    },
    /// Turn a read replica into the primary: the old primary stops and is removed, attached
    /// environments roll onto the new one
    Promote {
        name: String,
        /// The replica's number (NAME-rN)
        #[arg(long, value_name = "N")]
        replica: u32,
        #[arg(long)]
        app: Option<String>,
        /// Wait until the environments have rolled and the resource is Available
        #[arg(long)]
        wait: bool,
    },
    /// Show a resource: status, endpoint, credentials (masked for viewers), attachments
    Show {
        name: String,
        #[arg(long)]
        app: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Attach to an environment of its application: every instance gets its variables
    Attach {
        name: String,
        env: String,
        /// Prefix the variables (ORDERS → ORDERS_DATABASE_URL)
        #[arg(long = "as", value_name = "PREFIX")]
        prefix: Option<String>,
        #[arg(long)]
        app: Option<String>,
        /// Wait until the environment has rolled
        #[arg(long)]
        wait: bool,
    },
    /// Detach from an environment (its instances roll without the variables)
    Detach {
        name: String,
        env: String,
        #[arg(long)]
        app: Option<String>,
        #[arg(long)]
        wait: bool,
    },
    /// Take a logical snapshot (pg_dump -Fc, mariadb-dump, redis RDB)
    Snapshot {
        name: String,
        #[arg(long)]
        app: Option<String>,
        #[arg(long)]
        wait: bool,
    },
    /// List the snapshots of a resource (they outlive it)
    Snapshots {
        name: String,
        #[arg(long)]
        app: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Create a new resource from a snapshot
    Restore {
        #[arg(value_name = "SNAPSHOT_ID")]
        snapshot: i64,
        /// The new resource's name
        #[arg(long)]
        to: String,
        #[arg(long)]
        wait: bool,
    },
    /// Delete a resource no environment uses (a final snapshot first, unless skipped)
    Delete {
        name: String,
        #[arg(long)]
        app: Option<String>,
        #[arg(long)]
        skip_final_snapshot: bool,
        #[arg(long)]
        wait: bool,
    },
    /// A resource's events
    Events {
        name: String,
        #[arg(long)]
        app: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

/// The platform images `sprout platform build` builds when none is named.
pub const PLATFORMS: &[&str] = &["python", "static"];

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};
    use sprout_core::properties;

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
    fn property_parsing_follows_the_servers_rule() {
        assert_eq!(parse_property("A=1"), Ok(("A".into(), "1".into())));
        assert_eq!(parse_property("B=x=y"), Ok(("B".into(), "x=y".into())));
        for bad in ["1A=v", "A-B=v", "=v", "NOVALUE", "PORT=1", "SPROUT_ENV=x"] {
            assert!(parse_property(bad).is_err(), "{bad}");
        }
        let long = format!("{}=v", "K".repeat(properties::MAX_KEY_LEN + 1));
        assert!(parse_property(&long).is_err());
        assert!(parse(&["setenv", "web", "PORT=80"]).is_err());
        // A queue message attribute is only a variable name: PORT is fine there.
        assert_eq!(parse_key_value("PORT=1"), Ok(("PORT".into(), "1".into())));
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
    fn version_delete_parses() {
        let Command::Version {
            command: VersionCommand::Delete { app, label },
        } = parse(&["version", "delete", "shop", "v1"]).unwrap().command
        else {
            panic!("wrong command")
        };
        assert_eq!((app.as_str(), label.as_str()), ("shop", "v1"));
        assert!(parse(&["version", "delete", "shop"]).is_err());
    }

    #[test]
    fn read_verbs_take_the_app_either_way() {
        for argv in [&["versions", "shop"][..], &["versions", "--app", "shop"]] {
            let Command::Versions { app, .. } = parse(argv).unwrap().command else {
                panic!("wrong command")
            };
            assert_eq!(app.name(), "shop", "{argv:?}");
        }
        assert!(parse(&["versions"]).is_err());
        assert!(parse(&["versions", "a", "--app", "b"]).is_err());
        for argv in [&["envs", "shop"][..], &["envs", "--app", "shop", "--json"]] {
            let Command::Envs { app, .. } = parse(argv).unwrap().command else {
                panic!("wrong command")
            };
            assert_eq!(app.name().as_deref(), Some("shop"), "{argv:?}");
        }
        let Command::Envs { app, .. } = parse(&["envs"]).unwrap().command else {
            panic!("wrong command")
        };
        assert_eq!(app.name(), None);
        assert!(parse(&["envs", "a", "--app", "b"]).is_err());
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

    #[test]
    fn queue_verbs_parse() {
        #[derive(Parser)]
        struct QueueCli {
            #[command(subcommand)]
            command: Command,
        }
        let cli = QueueCli::try_parse_from(["sprout", "queue", "send", "w", "{}", "--attr", "a=b"])
            .expect("parse");
        assert!(matches!(
            cli.command,
            Command::Queue {
                command: QueueCommand::Send { ref attrs, .. }
            } if attrs == &vec![("a".to_string(), "b".to_string())]
        ));
        for args in [
            &["sprout", "queue", "stats", "w", "--json"][..],
            &["sprout", "queue", "dlq", "w", "--redrive"],
            &["sprout", "queue", "credentials", "w", "--json"],
        ] {
            assert!(QueueCli::try_parse_from(args).is_ok(), "{args:?}");
        }
        assert!(
            QueueCli::try_parse_from(["sprout", "queue", "send", "w", "x", "--attr", "1=2"])
                .is_err()
        );
    }
}
