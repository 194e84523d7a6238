//! Applications, their versions (`sprout push`) and platform images.

use super::connect::{client, usage};
use crate::args::GlobalArgs;
use crate::client::Client;
use crate::error::CliError;
use crate::output::{self, listing};
use crate::{archive, wait};
use sprout_core::{AppName, EnvName, VersionLabel};
use std::io::Write;
use std::path::PathBuf;

pub(super) async fn create(global: &GlobalArgs, app: &str) -> Result<(), CliError> {
    let app = client(global).create_app(app).await?;
    println!("application {} created", app.name);
    Ok(())
}

pub(super) async fn delete_version(
    global: &GlobalArgs,
    app: &str,
    label: &str,
) -> Result<(), CliError> {
    client(global).delete_version(app, label).await?;
    println!("version {label} of {app} deleted");
    Ok(())
}

pub(super) async fn delete(global: &GlobalArgs, app: &str) -> Result<(), CliError> {
    client(global).delete_app(app).await?;
    println!("application {app} deleted");
    Ok(())
}

pub(super) async fn list(global: &GlobalArgs, json: bool) -> Result<(), CliError> {
    let apps = client(global).list_apps().await?;
    output::show(json, &apps, |apps| {
        listing(
            apps,
            "no applications (create one with `sprout app create APP`)",
            output::apps_table,
        )
    });
    Ok(())
}

pub(super) async fn versions(global: &GlobalArgs, app: &str, json: bool) -> Result<(), CliError> {
    let versions = client(global).list_versions(app).await?;
    output::show(json, &versions, |vs| {
        listing(
            vs,
            &format!("no versions of {app} (upload one with `sprout push`)"),
            output::versions_table,
        )
    });
    Ok(())
}

pub(super) async fn push(
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

pub(super) async fn platform_build(c: &Client, name: &str) -> Result<(), CliError> {
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
