//! A resource's automated backups (snapshots on a cron schedule, the newest N kept) and its
//! read replicas (postgres streaming replicas, one of which can be promoted to primary).
//! What a user may ask for, the names replicas get, and which snapshots go. Pure.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::resource::ResourceKind;

/// Most read replicas one resource may have.
pub const MAX_REPLICAS: u32 = 5;
/// Automated snapshots kept when `--backup` is given without `--keep` (RDS's default).
pub const DEFAULT_KEEP: u32 = 7;
/// Most automated snapshots one resource may keep.
pub const MAX_KEEP: u32 = 100;
/// Longest resource name that can have replicas: `NAME-read` must stay a DNS label.
const MAX_NAME_WITH_REPLICAS: usize = 63 - "-read".len();

/// Automated backups: a snapshot whenever `schedule` fires (five cron fields, or six with
/// seconds first, checked like `cron.yaml`'s), of which the newest `keep` are kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BackupPolicy {
    pub schedule: String,
    pub keep: u32,
}

impl BackupPolicy {
    /// `--backup CRON [--keep N]`: `None` when no schedule is asked for. `--keep` alone is an
    /// error, as is a schedule cron does not take or a count out of 1..=100.
    pub fn parse(schedule: Option<&str>, keep: Option<u32>) -> Result<Option<Self>, HaError> {
        let Some(schedule) = schedule.map(str::trim) else {
            return match keep {
                Some(_) => Err(HaError::KeepWithoutSchedule),
                None => Ok(None),
            };
        };
        crate::cron::validate_schedule(schedule).map_err(HaError::BadSchedule)?;
        let keep = keep.unwrap_or(DEFAULT_KEEP);
        if !(1..=MAX_KEEP).contains(&keep) {
            return Err(HaError::BadKeep(keep));
        }
        Ok(Some(Self {
            schedule: schedule.split_whitespace().collect::<Vec<_>>().join(" "),
            keep,
        }))
    }

    /// When the schedule next fires after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        crate::cron::next_after(&self.schedule, after)
    }

    /// Whether a backup is due at `now` when the last one (or the resource's creation) was
    /// at `last`: the schedule fired in between. Missed firings (the server was down) make
    /// one backup, not several.
    pub fn due(&self, last: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        self.next_after(last).is_some_and(|at| at <= now)
    }

    /// Of a resource's automated snapshots, newest first, those to delete.
    pub fn to_prune(&self, automated_newest_first: &[i64]) -> Vec<i64> {
        automated_newest_first
            .iter()
            .skip(usize::try_from(self.keep).unwrap_or(usize::MAX))
            .copied()
            .collect()
    }
}

/// `--replicas N` on create: postgres only, at most [`MAX_REPLICAS`].
pub fn check_replicas(kind: ResourceKind, name: &str, replicas: u32) -> Result<(), HaError> {
    if replicas == 0 {
        return Ok(());
    }
    if kind != ResourceKind::Postgres {
        return Err(HaError::ReplicasNotSupported { kind });
    }
    if replicas > MAX_REPLICAS {
        return Err(HaError::TooManyReplicas(replicas));
    }
    if name.len() > MAX_NAME_WITH_REPLICAS {
        return Err(HaError::NameTooLong);
    }
    Ok(())
}

/// The host name replica `index` answers to on attached networks (`orders-r1`).
pub fn replica_host(name: &str, index: u32) -> String {
    format!("{name}-r{index}")
}

/// The host name all replicas share on attached networks (Docker's DNS spreads reads over
/// them): `DATABASE_READ_URL`'s host.
pub fn read_host(name: &str) -> String {
    format!("{name}-read")
}

/// The container (and volume) of replica `index` of the resource whose first container was
/// `base` (`sprout-res-shop-orders-r1`).
pub fn replica_container(base: &str, index: u32) -> String {
    format!("{base}-r{index}")
}

/// Which replica a promote may turn into the primary: one that exists.
pub fn check_promote(resource: &str, replicas: &[u32], index: u32) -> Result<(), HaError> {
    if replicas.contains(&index) {
        return Ok(());
    }
    let have = if replicas.is_empty() {
        "none".to_string()
    } else {
        replicas
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    Err(HaError::NoSuchReplica {
        resource: resource.to_string(),
        index,
        have,
    })
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HaError {
    #[error("--keep needs a backup schedule (--backup CRON)")]
    KeepWithoutSchedule,
    #[error("--keep must be between 1 and {MAX_KEEP}, not {0}")]
    BadKeep(u32),
    #[error("backup {0}")]
    BadSchedule(String),
    #[error("read replicas are for postgres resources only; a {kind} resource cannot have any")]
    ReplicasNotSupported { kind: ResourceKind },
    #[error("--replicas must be between 0 and {MAX_REPLICAS}, not {0}")]
    TooManyReplicas(u32),
    #[error(
        "a resource with replicas needs a name of at most {MAX_NAME_WITH_REPLICAS} characters"
    )]
    NameTooLong,
    #[error("resource '{resource}' has no replica {index} (its replicas: {have})")]
    NoSuchReplica {
        resource: String,
        index: u32,
        have: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 2, h, m, s).unwrap()
    }

    #[test]
    fn backup_policies_parse_like_cron_yaml() {
        assert_eq!(BackupPolicy::parse(None, None), Ok(None));
        let p = BackupPolicy::parse(Some(" 0  3 * * * "), None)
            .unwrap()
            .unwrap();
        assert_eq!(p.schedule, "0 3 * * *");
        assert_eq!(p.keep, DEFAULT_KEEP);
        let p = BackupPolicy::parse(Some("*/5 * * * * *"), Some(2))
            .unwrap()
            .unwrap();
        assert_eq!(p.keep, 2);
        assert_eq!(
            BackupPolicy::parse(None, Some(3)),
            Err(HaError::KeepWithoutSchedule)
        );
        assert_eq!(
            BackupPolicy::parse(Some("0 3 * * *"), Some(0)),
            Err(HaError::BadKeep(0))
        );
        for bad in [
            "61 * * * *",
            "* * *",
            "0 3 * * * * *",
            "0 3 * 13 *",
            "x; rm",
        ] {
            let err = BackupPolicy::parse(Some(bad), None).unwrap_err();
            assert!(
                err.to_string().starts_with("backup schedule"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn due_after_a_firing_once_however_many_were_missed() {
        let p = BackupPolicy::parse(Some("0 3 * * *"), Some(2))
            .unwrap()
            .unwrap();
        assert!(!p.due(at(2, 0, 0), at(2, 59, 59)));
        assert!(p.due(at(2, 0, 0), at(3, 0, 0)));
        assert!(!p.due(at(3, 0, 0), at(23, 0, 0)));
        assert_eq!(
            p.next_after(at(3, 0, 0)),
            Some(at(3, 0, 0) + chrono::Duration::days(1))
        );
        let fast = BackupPolicy::parse(Some("*/3 * * * * *"), None)
            .unwrap()
            .unwrap();
        assert_eq!(fast.next_after(at(1, 0, 1)), Some(at(1, 0, 3)));
    }

    #[test]
    fn prunes_beyond_the_newest_keep() {
        let p = BackupPolicy {
            schedule: "* * * * *".into(),
            keep: 2,
        };
        assert_eq!(p.to_prune(&[9, 7, 4, 1]), vec![4, 1]);
        assert!(p.to_prune(&[9, 7]).is_empty());
        assert!(p.to_prune(&[]).is_empty());
    }

    #[test]
    fn replicas_are_for_postgres() {
        assert_eq!(check_replicas(ResourceKind::Redis, "c", 0), Ok(()));
        assert_eq!(check_replicas(ResourceKind::Postgres, "db", 2), Ok(()));
        let err = check_replicas(ResourceKind::Mysql, "db", 1).unwrap_err();
        assert_eq!(
            err.to_string(),
            "read replicas are for postgres resources only; a mysql resource cannot have any"
        );
        assert_eq!(
            check_replicas(ResourceKind::Postgres, "db", 6),
            Err(HaError::TooManyReplicas(6))
        );
        assert_eq!(
            check_replicas(ResourceKind::Postgres, &"a".repeat(60), 1),
            Err(HaError::NameTooLong)
        );
        assert_eq!(replica_host("orders", 2), "orders-r2");
        assert_eq!(read_host("orders"), "orders-read");
        assert_eq!(
            replica_container("sprout-res-shop-orders", 1),
            "sprout-res-shop-orders-r1"
        );
    }

    #[test]
    fn promote_needs_an_existing_replica() {
        assert_eq!(check_promote("db", &[1, 2], 2), Ok(()));
        assert_eq!(
            check_promote("db", &[1, 3], 2).unwrap_err().to_string(),
            "resource 'db' has no replica 2 (its replicas: 1, 3)"
        );
        assert_eq!(
            check_promote("db", &[], 1).unwrap_err().to_string(),
            "resource 'db' has no replica 1 (its replicas: none)"
        );
    }
}
