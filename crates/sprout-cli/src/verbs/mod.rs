//! What each client verb does: [`run`] hands the parsed arguments to the verb's function.

mod apps;
mod connect;
mod envs;
mod queue;
mod resources;
mod session;
mod users;
mod watch;

use crate::args::{
    AppCommand, Command, EnvCommand, GlobalArgs, PlatformCommand, VersionCommand, PLATFORMS,
};
use crate::error::CliError;
use connect::client;

/// Runs one client verb.
pub async fn run(global: GlobalArgs, command: Command) -> Result<(), CliError> {
    let g = &global;
    match command {
        Command::Login {
            user,
            password_stdin,
        } => session::login(g, user, password_stdin).await,
        Command::Logout => session::logout(g).await,
        Command::App {
            command: AppCommand::Create { app },
        } => apps::create(g, &app).await,
        Command::App {
            command: AppCommand::Delete { app },
        } => apps::delete(g, &app).await,
        Command::Apps { json } => apps::list(g, json).await,
        Command::Push {
            source,
            app,
            label,
            deploy,
        } => apps::push(g, source, app, label, deploy).await,
        Command::Version {
            command: VersionCommand::Delete { app, label },
        } => apps::delete_version(g, &app, &label).await,
        Command::Versions { app, json } => apps::versions(g, &app.name(), json).await,
        Command::Platform {
            command: PlatformCommand::Build { name },
        } => {
            let c = client(g);
            let names: Vec<String> = match name {
                Some(n) => vec![n],
                None => PLATFORMS.iter().map(|s| s.to_string()).collect(),
            };
            for name in names {
                apps::platform_build(&c, &name).await?;
            }
            Ok(())
        }
        Command::Env {
            command: EnvCommand::Create(args),
        } => envs::create(g, args).await,
        Command::Envs { app, json } => envs::list(g, app.name(), json).await,
        Command::Status { env, json } => envs::status(g, &env, json).await,
        Command::Deploy(a) => envs::deploy(g, a).await,
        Command::Abort { env, wait } => envs::abort(g, &env, wait).await,
        Command::Config(a) => envs::config(g, a).await,
        Command::Setenv {
            env,
            set,
            unset,
            public,
            secret,
            wait,
        } => envs::setenv(g, &env, set, unset, public, secret, wait).await,
        Command::Swap { env, other } => envs::swap(g, &env, &other).await,
        Command::Scale {
            env,
            instances,
            min,
            max,
        } => envs::scale(g, &env, instances, min, max).await,
        Command::Zone { command } => envs::zone(g, command).await,
        Command::Schedule { command } => envs::schedule(g, command).await,
        Command::Deployments { env, json } => envs::deployments(g, &env, json).await,
        Command::Terminate { env, wait } => envs::terminate(g, &env, wait).await,
        Command::Events {
            env,
            json,
            follow,
            limit,
        } => watch::events(g, env, json, follow, limit).await,
        Command::Logs { env, tail, follow } => watch::logs(g, env, tail, follow).await,
        Command::Health { env, json, refresh } => watch::health(g, env, json, refresh).await,
        Command::Queue { command } => queue::run(g, command).await,
        Command::Resource { command } => resources::run(g, command).await,
        Command::Resources { app, json } => resources::list(g, app, json).await,
        Command::User { command } => users::run_user(g, command).await,
        Command::Token { command } => users::run_token(g, command).await,
        Command::Audit { limit, json } => users::run_audit(g, limit, json).await,
    }
}
