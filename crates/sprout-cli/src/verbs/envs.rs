//! Environments: launch, deploy, configure, scale, swap, terminate, and what they show.

use super::connect::client;
use crate::args::{
    ConfigArgs, DeployArgs, EnvCreateArgs, GlobalArgs, ScheduleCommand, ZoneCommand,
};
use crate::client::Client;
use crate::error::CliError;
use crate::output::{self, listing};
use crate::wait;
use sprout_core::api::{
    CreateEnvironment, DeployRequest, Environment, EnvironmentDetail, ScaleRequest,
    ScheduledAction, SetProperties, Zone,
};
use std::collections::BTreeMap;

pub(super) async fn list(
    global: &GlobalArgs,
    app: Option<String>,
    json: bool,
) -> Result<(), CliError> {
    let envs = client(global).list_environments(app.as_deref()).await?;
    output::show(json, &envs, |envs| {
        listing(envs, "no environments", output::envs_table)
    });
    Ok(())
}

pub(super) async fn status(global: &GlobalArgs, env: &str, json: bool) -> Result<(), CliError> {
    let detail = client(global).get_environment(env).await?;
    output::show(json, &detail, output::status_text);
    Ok(())
}

pub(super) async fn deployments(
    global: &GlobalArgs,
    env: &str,
    json: bool,
) -> Result<(), CliError> {
    let ds = client(global).deployments(env).await?;
    output::show(json, &ds, |ds| {
        listing(ds, "no deployments", output::deployments_table)
    });
    Ok(())
}

pub(super) async fn create(global: &GlobalArgs, a: EnvCreateArgs) -> Result<(), CliError> {
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

pub(super) async fn deploy(global: &GlobalArgs, a: DeployArgs) -> Result<(), CliError> {
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

pub(super) async fn abort(global: &GlobalArgs, env: &str, wait: bool) -> Result<(), CliError> {
    let c = client(global);
    let started = c.abort(env).await?;
    if wait {
        let done = wait::environment(&c, env, &started, wait::Until::OperationEnds).await?;
        println!("rolled back: {}", wait::summary(&done));
    } else {
        let what = started
            .operation
            .as_ref()
            .map(|o| format!("{} {}", o.kind, o.id))
            .unwrap_or_else(|| sprout_core::OpKind::Rollback.to_string());
        println!(
            "aborted; {what} started on {env} (status {}); follow with `sprout events {env} -f`",
            started.status
        );
    }
    Ok(())
}

pub(super) async fn setenv(
    global: &GlobalArgs,
    env: &str,
    set: Vec<(String, String)>,
    unset: Vec<String>,
    public: Vec<String>,
    secret: Vec<String>,
    wait: bool,
) -> Result<(), CliError> {
    let c = client(global);
    let before = current_operation(&c, env).await?;
    let only_visibility = set.is_empty() && unset.is_empty();
    let body = SetProperties {
        set: set.into_iter().collect(),
        unset,
        public,
        secret,
    };
    let started = c.set_properties(env, &body).await?;
    if only_visibility {
        // Which values viewers see: applied at once, no instance replaced.
        println!("updated which properties of {env} viewers may read");
        return Ok(());
    }
    after_change(&c, env, before, &started, wait, "properties").await
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
    // The change started an operation if the environment now names another one.
    let new_op = started.operation.as_ref().filter(|o| Some(o.id) != before);
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

pub(super) async fn config(global: &GlobalArgs, a: ConfigArgs) -> Result<(), CliError> {
    let c = client(global);
    if a.set.is_empty() && a.save.is_none() {
        output::show(a.json, &c.get_config(&a.env).await?, output::config_text);
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

pub(super) async fn swap(global: &GlobalArgs, env: &str, other: &str) -> Result<(), CliError> {
    let c = client(global);
    c.swap(env, other).await?;
    let url = |e: &EnvironmentDetail| {
        e.environment
            .url
            .clone()
            .unwrap_or_else(|| e.environment.cname.clone())
    };
    match (c.get_environment(env).await, c.get_environment(other).await) {
        (Ok(a), Ok(b)) => println!(
            "swapped CNAMEs: {env} now answers at {}, {other} at {}",
            url(&a),
            url(&b)
        ),
        _ => println!("swapped the CNAMEs of {env} and {other}"),
    }
    Ok(())
}

pub(super) async fn scale(
    global: &GlobalArgs,
    env: &str,
    instances: Option<u32>,
    min: Option<u32>,
    max: Option<u32>,
) -> Result<(), CliError> {
    let req = ScaleRequest {
        instances,
        min,
        max,
    };
    let e = client(global).scale(env, &req).await?;
    println!(
        "{}: {} desired instance(s) (min {}, max {})",
        e.name, e.desired, e.min, e.max
    );
    Ok(())
}

pub(super) async fn terminate(global: &GlobalArgs, env: &str, wait: bool) -> Result<(), CliError> {
    let c = client(global);
    let started = c.terminate(env).await?;
    if wait {
        wait::environment(&c, env, &started, wait::Until::Terminated).await?;
        println!("environment {env} terminated");
    } else {
        println!("terminating {env} (status {})", started.status);
    }
    Ok(())
}

pub(super) async fn zone(global: &GlobalArgs, command: ZoneCommand) -> Result<(), CliError> {
    let c = client(global);
    let (zones, json) = match command {
        ZoneCommand::List { json } => (c.zones().await?, json),
        ZoneCommand::Fail { zone } => (c.zone_action(&zone, "fail").await?, false),
        ZoneCommand::Restore { zone } => (c.zone_action(&zone, "restore").await?, false),
    };
    output::show(json, &zones, |zones| zones_table(zones));
    Ok(())
}

fn zones_table(zones: &[Zone]) -> comfy_table::Table {
    let mut t = output::table(&["ZONE", "ENGINE", "AVAILABLE", "INSTANCES"]);
    for z in zones {
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
    t
}

pub(super) async fn schedule(
    global: &GlobalArgs,
    command: ScheduleCommand,
) -> Result<(), CliError> {
    let c = client(global);
    match command {
        ScheduleCommand::Add {
            env,
            name,
            cron,
            min,
            max,
            desired,
        } => {
            let action = ScheduledAction {
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
            let actions = c.schedules(&env).await?;
            output::show(json, &actions, |actions| schedules_table(actions));
        }
        ScheduleCommand::Remove { env, name } => {
            c.remove_schedule(&env, &name).await?;
            println!("scheduled action {name} removed");
        }
    }
    Ok(())
}

fn schedules_table(actions: &[ScheduledAction]) -> comfy_table::Table {
    let mut t = output::table(&["NAME", "CRON (UTC)", "MIN", "MAX", "DESIRED"]);
    let show = |v: Option<u32>| v.map(|v| v.to_string()).unwrap_or_else(|| "-".into());
    for a in actions {
        t.add_row(vec![
            a.name.clone(),
            a.cron.clone(),
            show(a.min),
            show(a.max),
            show(a.desired),
        ]);
    }
    t
}
