//! `sprout resource …` and `sprout resources`.

use std::time::{Duration, Instant};

use super::connect::client;
use crate::args::{GlobalArgs, ResourceCommand};
use crate::client::Client;
use crate::error::CliError;
use crate::output;
use sprout_core::resource::api::{AttachRequest, CreateResource, Resource, Snapshot};
use sprout_core::resource::{ResourceStatus, SnapshotStatus};

/// How long `--wait` waits (an image build on first use takes minutes).
const WAIT_LIMIT: Duration = Duration::from_secs(30 * 60);
const POLL: Duration = Duration::from_millis(500);

fn table(resources: &[Resource]) -> comfy_table::Table {
    let mut t = output::table(&[
        "NAME",
        "APP",
        "KIND",
        "SIZE",
        "STATUS",
        "HEALTH",
        "ATTACHED TO",
        "CREATED",
    ]);
    for r in resources {
        let attached: Vec<String> = r
            .attachments
            .iter()
            .map(|a| match &a.prefix {
                Some(p) => format!("{} ({p})", a.environment),
                None => a.environment.clone(),
            })
            .collect();
        t.add_row(vec![
            r.name.clone(),
            r.app.clone(),
            r.kind.to_string(),
            r.size.to_string(),
            r.status.to_string(),
            r.health.clone().unwrap_or_default(),
            attached.join(", "),
            output::time(&r.created_at),
        ]);
    }
    t
}

fn details(r: &Resource) -> String {
    let mut out = format!(
        "name      {}\napp       {}\nkind      {}\nsize      {}\nstatus    {}{}\nendpoint  {}:{} (reachable only from attached environments)\ndatabase  {}\nusername  {}\npassword  {}\n",
        r.name,
        r.app,
        r.kind,
        r.size,
        r.status,
        r.status_reason
            .as_deref()
            .map(|s| format!(" ({})", crate::error::one_line(s)))
            .unwrap_or_default(),
        r.host,
        r.port,
        r.database,
        r.username,
        r.password,
    );
    if let Some(h) = &r.health {
        out.push_str(&format!(
            "health    {h}{}\n",
            r.health_checked_at
                .as_ref()
                .map(|t| format!(" (checked {})", output::time(t)))
                .unwrap_or_default()
        ));
    }
    match &r.backups {
        Some(b) => out.push_str(&format!(
            "backups   '{}' (UTC), keeping the newest {}; next {}{}\n",
            b.schedule,
            b.keep,
            b.next_at
                .as_ref()
                .map(output::time)
                .unwrap_or_else(|| "-".to_string()),
            b.last_at
                .as_ref()
                .map(|t| format!(", last {}", output::time(t)))
                .unwrap_or_default()
        )),
        None => out.push_str("backups   (none scheduled)\n"),
    }
    if let Some(read) = &r.read_host {
        let hosts: Vec<&str> = r.replicas.iter().map(|x| x.host.as_str()).collect();
        out.push_str(&format!(
            "replicas  {} ({}), read endpoint {read}:{}\n",
            r.replicas.len(),
            hosts.join(", "),
            r.port
        ));
    }
    if r.attachments.is_empty() {
        out.push_str("attached  (none)\n");
    }
    for a in &r.attachments {
        let prefix = a
            .prefix
            .as_deref()
            .map(|p| format!(" as {p}"))
            .unwrap_or_default();
        out.push_str(&format!(
            "attached  {}{prefix} ({})\n",
            a.environment, a.state
        ));
    }
    out.push_str("variables\n");
    for (k, v) in &r.variables {
        out.push_str(&format!("  {k}={v}\n"));
    }
    out.trim_end().to_string()
}

fn snapshots_table(snaps: &[Snapshot]) -> comfy_table::Table {
    let mut t = output::table(&[
        "ID", "RESOURCE", "KIND", "STATUS", "SIZE", "TAKEN BY", "CREATED",
    ]);
    for s in snaps {
        t.add_row(vec![
            s.id.to_string(),
            s.resource.clone(),
            s.kind.to_string(),
            s.status.clone(),
            s.size_bytes
                .map(|b| indicatif::HumanBytes(u64::try_from(b).unwrap_or(0)).to_string())
                .unwrap_or_default(),
            if s.final_snapshot {
                "final"
            } else if s.automated {
                "backup schedule"
            } else {
                "user"
            }
            .to_string(),
            output::time(&s.created_at),
        ]);
    }
    t
}

pub(super) async fn list(
    global: &GlobalArgs,
    app: Option<String>,
    json: bool,
) -> Result<(), CliError> {
    let c = client(global);
    let resources = c.list_resources(app.as_deref()).await?;
    output::show(json, &resources, |r| {
        output::listing(r, "no resources", table)
    });
    Ok(())
}

/// Polls the resource until `done` says so; fails if it turns `Failed`.
async fn wait_resource(
    c: &Client,
    app: &str,
    name: &str,
    done: impl Fn(&Resource) -> bool,
) -> Result<Resource, CliError> {
    let deadline = Instant::now() + WAIT_LIMIT;
    loop {
        let r = c.get_resource(app, name).await?;
        if done(&r) {
            return Ok(r);
        }
        if r.status == ResourceStatus::Failed {
            return Err(CliError::Failed(format!(
                "resource '{name}' failed: {}",
                r.status_reason.unwrap_or_default()
            )));
        }
        if Instant::now() > deadline {
            return Err(CliError::Failed(format!(
                "gave up waiting for resource '{name}'"
            )));
        }
        tokio::time::sleep(POLL).await;
    }
}

pub(super) async fn run(global: &GlobalArgs, command: ResourceCommand) -> Result<(), CliError> {
    let c = client(global);
    match command {
        ResourceCommand::Create {
            name,
            app,
            kind,
            size,
            deletion_policy,
            replicas,
            backup,
            keep,
            wait,
        } => {
            let req = CreateResource {
                name: name.clone(),
                kind,
                size,
                deletion_policy,
                replicas,
                backup,
                keep,
            };
            let r = c.create_resource(&app, &req).await?;
            println!("creating {} resource '{}' in {}", r.kind, r.name, r.app);
            if wait {
                let r = wait_resource(&c, &app, &name, |r| r.status == ResourceStatus::Available)
                    .await?;
                println!("resource '{}' is {}", r.name, r.status);
            }
        }
        ResourceCommand::Promote {
            name,
            replica,
            app,
            wait,
        } => {
            let app = c.resource_app(&name, app.as_deref()).await?;
            c.promote_resource(&app, &name, replica).await?;
            println!("promoting replica {replica} of '{name}'; attached environments roll onto it");
            if wait {
                let host = sprout_core::resource_ha::replica_host(&name, replica);
                let r = wait_resource(&c, &app, &name, |r| {
                    r.status == ResourceStatus::Available && r.host == host
                })
                .await?;
                println!("'{}' is {}; its primary is {}", r.name, r.status, r.host);
            }
        }
        ResourceCommand::Show { name, app, json } => {
            let app = c.resource_app(&name, app.as_deref()).await?;
            output::show(json, &c.get_resource(&app, &name).await?, details);
        }
        ResourceCommand::Attach {
            name,
            env,
            prefix,
            app,
            wait,
        } => {
            let app = c.resource_app(&name, app.as_deref()).await?;
            let req = AttachRequest {
                environment: env.clone(),
                prefix,
            };
            c.attach_resource(&app, &name, &req).await?;
            println!("attached '{name}' to {env}; its instances roll to get the variables");
            if wait {
                wait_resource(&c, &app, &name, |r| {
                    r.attachments
                        .iter()
                        .any(|a| a.environment == env && a.state == "attached")
                })
                .await?;
                println!("{env} has rolled");
            }
        }
        ResourceCommand::Detach {
            name,
            env,
            app,
            wait,
        } => {
            let app = c.resource_app(&name, app.as_deref()).await?;
            c.detach_resource(&app, &name, &env).await?;
            println!("detaching '{name}' from {env}; its instances roll without the variables");
            if wait {
                wait_resource(&c, &app, &name, |r| {
                    !r.attachments.iter().any(|a| a.environment == env)
                })
                .await?;
                println!("{env} has rolled; '{name}' left its network");
            }
        }
        ResourceCommand::Snapshot { name, app, wait } => {
            let app = c.resource_app(&name, app.as_deref()).await?;
            let snap = c.snapshot_resource(&app, &name).await?;
            println!("snapshot {} of '{name}' started", snap.id);
            if wait {
                let deadline = Instant::now() + WAIT_LIMIT;
                loop {
                    let snaps = c.resource_snapshots(&app, &name).await?;
                    match snaps
                        .iter()
                        .find(|s| s.id == snap.id)
                        .map(|s| s.status.parse::<SnapshotStatus>())
                    {
                        Some(Ok(SnapshotStatus::Available)) => break,
                        Some(Ok(SnapshotStatus::Failed)) | None => {
                            return Err(CliError::Failed(format!("snapshot {} failed", snap.id)))
                        }
                        _ if Instant::now() > deadline => {
                            return Err(CliError::Failed(format!(
                                "gave up waiting for snapshot {}",
                                snap.id
                            )))
                        }
                        _ => tokio::time::sleep(POLL).await,
                    }
                }
                println!("snapshot {} is available", snap.id);
            }
        }
        ResourceCommand::Snapshots { name, app, json } => {
            let app = match app {
                Some(a) => a,
                // The resource may be gone; its snapshots stay.
                None => c.resource_app(&name, None).await?,
            };
            let snaps = c.resource_snapshots(&app, &name).await?;
            output::show(json, &snaps, |s| {
                output::listing(s, &format!("no snapshots of '{name}'"), snapshots_table)
            });
        }
        ResourceCommand::Restore { snapshot, to, wait } => {
            let r = c.restore_snapshot(snapshot, &to).await?;
            println!(
                "restoring snapshot {snapshot} into new resource '{}'",
                r.name
            );
            if wait {
                let r = wait_resource(&c, &r.app, &to, |r| r.status == ResourceStatus::Available)
                    .await?;
                println!("resource '{}' is {}", r.name, r.status);
            }
        }
        ResourceCommand::Delete {
            name,
            app,
            skip_final_snapshot,
            wait,
        } => {
            let app = c.resource_app(&name, app.as_deref()).await?;
            c.delete_resource(&app, &name, skip_final_snapshot).await?;
            println!("deleting resource '{name}'");
            if wait {
                let deadline = Instant::now() + WAIT_LIMIT;
                loop {
                    match c.get_resource(&app, &name).await {
                        Err(CliError::Api { status: 404, .. }) => break,
                        Err(e) => return Err(e),
                        Ok(r) if r.status == ResourceStatus::Failed => {
                            return Err(CliError::Failed(format!(
                                "deleting '{name}' failed: {}",
                                r.status_reason.unwrap_or_default()
                            )))
                        }
                        Ok(_) if Instant::now() > deadline => {
                            return Err(CliError::Failed(format!("gave up waiting for '{name}'")))
                        }
                        Ok(_) => tokio::time::sleep(POLL).await,
                    }
                }
                println!("resource '{name}' deleted");
            }
        }
        ResourceCommand::Events { name, app, json } => {
            let app = c.resource_app(&name, app.as_deref()).await?;
            let events = c.resource_events(&app, &name).await?;
            output::show(json, &events, |events| {
                let mut t = output::table(&["TIME", "SEVERITY", "MESSAGE"]);
                for e in events {
                    t.add_row(vec![
                        output::time(&e.time),
                        e.severity.to_string(),
                        e.message.clone(),
                    ]);
                }
                t
            });
        }
    }
    Ok(())
}
