//! The resources the dashboard shows: an environment's attached ones (its page and its
//! architecture picture) and an application's.

use super::svg::ResourceNode;
use serde::Serialize;
use sprout_core::api::AttachedResource;
use sprout_core::resource::api::Resource;
use sprout_core::resource_health::{resource_color, status_color};

/// A row of the environment page's Resources table.
#[derive(Serialize)]
pub struct AttachedRow {
    name: String,
    kind: String,
    status: String,
    /// `healthy`, `unhealthy`, or `—` before the first check.
    health: String,
    color: String,
    checked: String,
    /// The variables' prefix, `—` for the kind's plain names.
    prefix: String,
    attachment: String,
}

/// A row of the application page's Resources table.
#[derive(Serialize)]
pub struct AppResourceRow {
    name: String,
    kind: String,
    size: String,
    status: String,
    health: String,
    color: String,
    /// The environments it is attached to, by name.
    environments: Vec<String>,
}

fn checked(t: Option<chrono::DateTime<chrono::Utc>>) -> String {
    t.map(|t| t.format("%H:%M:%S UTC").to_string())
        .unwrap_or_else(|| "—".into())
}

pub fn attached_rows(resources: &[AttachedResource]) -> Vec<AttachedRow> {
    resources
        .iter()
        .map(|r| AttachedRow {
            name: r.name.clone(),
            kind: r.kind.to_string(),
            status: r.status.to_string(),
            health: r.health.clone().unwrap_or_else(|| "—".into()),
            color: resource_color(r).to_string(),
            checked: checked(r.health_checked_at),
            prefix: r.prefix.clone().unwrap_or_else(|| "—".into()),
            attachment: r.attachment.to_string(),
        })
        .collect()
}

pub fn picture_nodes(resources: &[AttachedResource]) -> Vec<ResourceNode> {
    resources
        .iter()
        .map(|r| ResourceNode {
            name: r.name.clone(),
            kind: r.kind.to_string(),
            state: match &r.health {
                Some(h) => format!("{}, {h}", r.status),
                None => r.status.to_string(),
            },
            color: resource_color(r).to_string(),
        })
        .collect()
}

pub fn app_rows(resources: &[Resource]) -> Vec<AppResourceRow> {
    resources
        .iter()
        .map(|r| AppResourceRow {
            name: r.name.clone(),
            kind: r.kind.to_string(),
            size: r.size.to_string(),
            status: r.status.to_string(),
            health: r.health.clone().unwrap_or_else(|| "—".into()),
            color: status_color(r.status, r.health.as_deref()).to_string(),
            environments: r
                .attachments
                .iter()
                .map(|a| a.environment.clone())
                .collect(),
        })
        .collect()
}
