//! The store against a real SQLite file.

use sprout_core::api::OperationOutcome;
use sprout_core::manifest::BundleManifest;
use sprout_core::{Bootstrap, EnvOp, EnvSettings, EnvStatus, Mode, OpKind, Tier, VersionStatus};
use sprout_store::{
    EnvironmentStore, NewEnvironment, NewSavedConfig, NewVersion, OperationEnd, OperationStart,
    Store, StoreError,
};
use std::collections::BTreeMap;

async fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("sprout.db"))
        .await
        .expect("open");
    (dir, store)
}

/// A stored manifest (what an upload records).
fn manifest() -> String {
    serde_json::to_string(&BundleManifest::default()).expect("manifest")
}

/// How a running operation ends, for `finish_operation`.
fn end(
    from: EnvStatus,
    operation: Option<i64>,
    to: EnvStatus,
    outcome: OperationOutcome,
    message: &str,
) -> OperationEnd<'_> {
    OperationEnd {
        from,
        operation,
        to,
        outcome,
        totals: None,
        message,
    }
}

/// The lifecycle's transition for `op` from `status`.
fn begin(status: EnvStatus, op: EnvOp) -> sprout_core::Transition {
    status.begin(op).expect("allowed")
}

async fn app_with_version(store: &Store, app: &str, label: &str) -> (i64, i64) {
    let app_row = match store.get_app(app).await.expect("get") {
        Some(a) => a,
        None => store.create_app(app).await.expect("app"),
    };
    let manifest = manifest();
    let v = store
        .insert_version(&NewVersion {
            app_id: app_row.id,
            label,
            description: None,
            sha256: "00",
            size_bytes: 1,
            format: "tar.gz",
            manifest: &manifest,
            platform: "python",
        })
        .await
        .expect("version");
    (app_row.id, v.id)
}

fn new_env(name: &str, app_id: i64, version_id: i64) -> NewEnvironment {
    NewEnvironment {
        name: name.into(),
        app_id,
        version_id,
        version_label: "v1".into(),
        tier: Tier::Web,
        mode: Mode::Dev,
        cname: name.into(),
        bootstrap: Bootstrap::Golden,
        settings: EnvSettings::for_mode(Mode::Dev),
        desired: 1,
        properties: BTreeMap::new(),
        started_by: Some("test".into()),
    }
}

#[tokio::test]
async fn names_are_unique_and_errors_are_conflicts() {
    let (_d, store) = open().await;
    store.create_app("shop").await.expect("first");
    assert!(matches!(
        store.create_app("shop").await,
        Err(StoreError::Conflict(_))
    ));
    let (app_id, v1) = app_with_version(&store, "shop", "v1").await;
    let dup = store
        .insert_version(&NewVersion {
            app_id,
            label: "v1",
            description: None,
            sha256: "11",
            size_bytes: 2,
            format: "zip",
            manifest: &manifest(),
            platform: "python",
        })
        .await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))));
    assert_eq!(
        store
            .get_version("shop", "v1")
            .await
            .expect("get")
            .map(|v| v.sha256),
        Some("00".into())
    );
    store
        .create_environment(&new_env("web", app_id, v1))
        .await
        .expect("env");
    assert!(matches!(
        store.create_environment(&new_env("web", app_id, v1)).await,
        Err(StoreError::Conflict(_))
    ));
}

#[tokio::test]
async fn a_terminated_name_can_be_reused_and_delete_app_refuses_live_envs() {
    let (_d, store) = open().await;
    let (app_id, v1) = app_with_version(&store, "shop", "v1").await;
    let (env, op) = store
        .create_environment(&new_env("web", app_id, v1))
        .await
        .expect("env");
    assert!(matches!(
        store.delete_app("shop").await,
        Err(StoreError::Conflict(_))
    ));
    let up = OperationOutcome::Succeeded;
    let closed = store
        .finish_operation(
            &env,
            &end(
                EnvStatus::Launching,
                Some(op.id),
                EnvStatus::Ready,
                up,
                "up",
            ),
        )
        .await;
    assert!(closed.expect("finish"));
    let env = store.environment_by_id(env.id).await.expect("env");
    let bye = OperationStart {
        message: "bye",
        ..Default::default()
    };
    store
        .begin_operation(&env, &begin(EnvStatus::Ready, EnvOp::Terminate), &bye)
        .await
        .expect("terminate");
    store
        .finish_operation(
            &env,
            &end(
                EnvStatus::Terminating,
                None,
                EnvStatus::Terminated,
                up,
                "gone",
            ),
        )
        .await
        .expect("finish");
    let (again, _) = store
        .create_environment(&new_env("web", app_id, v1))
        .await
        .expect("reuse the name");
    assert_ne!(again.id, env.id);
    assert_eq!(
        store
            .get_environment("web")
            .await
            .expect("get")
            .map(|e| e.id),
        Some(again.id),
        "the live one wins"
    );
}

#[tokio::test]
async fn a_stale_pass_cannot_close_a_newer_operation_and_a_failed_deploy_rolls_back() {
    let (_d, store) = open().await;
    let (app_id, v1) = app_with_version(&store, "shop", "v1").await;
    let (_, v2) = app_with_version(&store, "shop", "v2").await;
    let (env, launch) = store
        .create_environment(&new_env("web", app_id, v1))
        .await
        .expect("env");
    let up = OperationOutcome::Succeeded;
    store
        .finish_operation(
            &env,
            &end(
                EnvStatus::Launching,
                Some(launch.id),
                EnvStatus::Ready,
                up,
                "up",
            ),
        )
        .await
        .expect("finish");
    let env = store.environment_by_id(env.id).await.expect("env");
    let start = OperationStart {
        new_version: Some((v2, "v2")),
        message: "deploying",
        ..Default::default()
    };
    let deploy = store
        .begin_operation(&env, &begin(EnvStatus::Ready, EnvOp::Deploy), &start)
        .await
        .expect("deploy");
    // A pass that still believes the launch is running must change nothing.
    let stale = store
        .finish_operation(
            &env,
            &end(
                EnvStatus::Launching,
                Some(launch.id),
                EnvStatus::Ready,
                up,
                "x",
            ),
        )
        .await
        .expect("stale");
    assert!(!stale);
    let running = store
        .current_operation(env.id)
        .await
        .expect("op")
        .map(|o| o.outcome());
    assert_eq!(running, Some(OperationOutcome::Running));
    // A second deploy from a Ready it no longer is: refused.
    let again = OperationStart {
        new_version: Some((v1, "v1")),
        message: "again",
        ..Default::default()
    };
    let refused = store
        .begin_operation(&env, &begin(EnvStatus::Ready, EnvOp::Deploy), &again)
        .await;
    assert!(matches!(refused, Err(StoreError::Conflict(_))));
    // A failed deploy rolls back to v1: the deploy closes failed, a rollback operation runs.
    let env = store.environment_by_id(env.id).await.expect("env");
    assert_eq!(env.version, "v2");
    let rollback = store
        .fail_and_roll_back(
            &env,
            &deploy,
            &begin(EnvStatus::Updating, EnvOp::Rollback),
            Some((100, 0)),
            "rolled back",
        )
        .await
        .expect("roll back");
    let rollback = rollback.expect("a rollback operation");
    assert_eq!(
        (rollback.kind, rollback.version_label.as_deref()),
        (OpKind::Rollback, Some("v1"))
    );
    let env = store.environment_by_id(env.id).await.expect("env");
    assert_eq!(
        (env.version.as_str(), env.status),
        ("v1", EnvStatus::Updating)
    );
    assert!(
        store
            .fail_and_roll_back(
                &env,
                &deploy,
                &begin(EnvStatus::Updating, EnvOp::Rollback),
                None,
                "twice",
            )
            .await
            .expect("second")
            .is_none(),
        "only once"
    );
    let ops = store.operations(env.id, 10).await.expect("ops");
    assert_eq!(ops[1].outcome(), OperationOutcome::Failed);
    // The listing's one query finds the same newest operation as the per-environment one.
    let (other, other_launch) = store
        .create_environment(&new_env("api", app_id, v1))
        .await
        .expect("second env");
    let latest = store.latest_operations().await.expect("latest");
    assert_eq!(latest.get(&env.id).map(|o| o.id), Some(rollback.id));
    assert_eq!(latest.get(&other.id).map(|o| o.id), Some(other_launch.id));
    assert_eq!(latest.len(), 2);
    let events = store.env_events(env.id, 0, 100).await.expect("events");
    assert!(events
        .iter()
        .any(|e| e.severity == sprout_core::Severity::Error && e.message == "rolled back"));
}

#[tokio::test]
async fn server_id_is_stable() {
    let (dir, store) = open().await;
    let first = store.server_id().await.expect("id");
    assert_eq!(store.server_id().await.expect("id"), first);
    store.close().await;
    let reopened = Store::open(&dir.path().join("sprout.db"))
        .await
        .expect("reopen");
    assert_eq!(reopened.server_id().await.expect("id"), first);
}

/// Files of the database whose raw bytes contain `needle`.
fn on_disk(dir: &std::path::Path, needle: &str) -> Vec<&'static str> {
    ["sprout.db", "sprout.db-wal", "sprout.db-shm"]
        .into_iter()
        .filter(|f| {
            std::fs::read(dir.join(f))
                .is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle.as_bytes()))
        })
        .collect()
}

#[tokio::test]
async fn secrets_are_sealed_at_rest_and_plaintext_from_an_older_sprout_is_sealed_on_open() {
    use std::os::unix::fs::PermissionsExt;
    let (dir, store) = open().await;
    let db = dir.path().join("sprout.db");
    let mode =
        |p: &std::path::Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode(&db), 0o600);
    assert_eq!(mode(&dir.path().join("secrets.key")), 0o600);

    let (app_id, v1) = app_with_version(&store, "shop", "v1").await;
    let mut new = new_env("web", app_id, v1);
    new.properties =
        BTreeMap::from([("DATABASE_URL".into(), "postgres://u:supersecret@db".into())]);
    let (env, launch) = store.create_environment(&new).await.expect("env");
    assert_eq!(env.properties(), new.properties, "read back opened");
    store
        .finish_operation(
            &env,
            &end(
                EnvStatus::Launching,
                Some(launch.id),
                EnvStatus::Ready,
                OperationOutcome::Succeeded,
                "up",
            ),
        )
        .await
        .expect("finish");
    let env = store.environment_by_id(env.id).await.expect("env");
    let key = store
        .ensure_access_key(env.id, app_id, "SPRTTESTKEY", "sqs-secret-0123456789", 0)
        .await
        .expect("key");
    assert_eq!(key.secret, "sqs-secret-0123456789");
    let saved = store
        .save_config(&NewSavedConfig {
            app_id,
            name: "base",
            settings: &env.settings,
            properties: &env.properties,
            tier: Tier::Web,
            mode: Mode::Dev,
            bootstrap: Bootstrap::Golden,
            by: None,
        })
        .await
        .expect("save");
    assert_eq!(saved.properties, env.properties);
    // A configure that changes the properties, then fails and rolls back: the old values
    // come back through the sealed before-state.
    let changed = BTreeMap::from([(
        "DATABASE_URL".to_string(),
        "postgres://u:othersecret@db".to_string(),
    )]);
    let op = store
        .begin_operation(
            &env,
            &begin(EnvStatus::Ready, EnvOp::Configure),
            &OperationStart {
                new_properties: Some(&changed),
                message: "props",
                ..Default::default()
            },
        )
        .await
        .expect("configure");
    let env = store.environment_by_id(env.id).await.expect("env");
    assert_eq!(env.properties(), changed);
    store
        .fail_and_roll_back(
            &env,
            &op,
            &begin(EnvStatus::Updating, EnvOp::Rollback),
            None,
            "failed",
        )
        .await
        .expect("roll back");
    let env = store.environment_by_id(env.id).await.expect("env");
    assert_eq!(env.properties(), new.properties, "rolled back");
    store.close().await;
    for secret in ["supersecret", "othersecret", "sqs-secret-0123456789"] {
        assert_eq!(on_disk(dir.path(), secret), Vec::<&str>::new(), "{secret}");
    }

    // An older Sprout wrote plaintext (and left the file readable to all).
    let store = Store::open(&db).await.expect("reopen");
    for sql in [
        r#"UPDATE environments SET properties = '{"DATABASE_URL":"postgres://old:plainsecret@db"}'"#,
        r#"UPDATE saved_configs SET properties = '{"DATABASE_URL":"postgres://old:plainsecret@db"}'"#,
        "UPDATE access_keys SET secret = 'plain-sqs-secret-42'",
        r#"UPDATE operations SET before_state = '{"version_id":1,"version":"v1","settings":"{}","properties":"{\"A\":\"plainsecret-before\"}","desired":1}' WHERE kind = 'configure'"#,
    ] {
        sqlx::query(sql).execute(store.pool()).await.expect(sql);
    }
    // Into the main file before closing: a checkpoint racing with the read below could
    // leave the plaintext in neither file for an instant.
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(store.pool())
        .await
        .expect("checkpoint");
    store.close().await;
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    assert!(
        !on_disk(dir.path(), "plainsecret").is_empty(),
        "the old Sprout's plaintext is on disk"
    );

    // Opening seals it all, and every value still reads back.
    let store = Store::open(&db).await.expect("upgrade");
    assert_eq!(mode(&db), 0o600, "narrowed");
    let env = store.environment_by_id(env.id).await.expect("env");
    assert_eq!(
        env.properties()["DATABASE_URL"],
        "postgres://old:plainsecret@db"
    );
    let key = store
        .access_key("SPRTTESTKEY")
        .await
        .expect("key")
        .expect("found");
    assert_eq!(key.secret, "plain-sqs-secret-42");
    let saved = store
        .saved_config(app_id, "base")
        .await
        .expect("saved")
        .expect("found");
    assert!(saved.properties["DATABASE_URL"].contains("plainsecret"));
    store.close().await;
    assert_eq!(on_disk(dir.path(), "plainsecret"), Vec::<&str>::new());
    assert_eq!(
        on_disk(dir.path(), "plain-sqs-secret-42"),
        Vec::<&str>::new()
    );

    // Without its key, a sealed value is an error, never garbage or plaintext.
    let store = Store::open_with(&db, sprout_store::SecretBox::ephemeral())
        .await
        .expect("open");
    assert!(matches!(
        store.environment_by_id(env.id).await,
        Err(StoreError::Secret(_))
    ));
}

/// Whether `result` is a corrupt-row error naming `table`, `id` and `field`.
fn corrupt<T: std::fmt::Debug>(result: Result<T, StoreError>, table: &str, id: i64, field: &str) {
    match result {
        Err(StoreError::Corrupt {
            table: t,
            id: i,
            field: f,
            reason,
        }) => {
            assert_eq!((t, i.as_str(), f), (table, id.to_string().as_str(), field));
            assert!(!reason.is_empty());
        }
        other => panic!("expected a corrupt {table} {id} {field}, got {other:?}"),
    }
}

#[tokio::test]
async fn a_corrupt_row_is_an_error_naming_it_never_a_default() {
    let (_d, store) = open().await;
    let (app_id, v1) = app_with_version(&store, "shop", "v1").await;
    let (bad, _) = store
        .create_environment(&new_env("web", app_id, v1))
        .await
        .expect("env");
    let (good, _) = store
        .create_environment(&new_env("api", app_id, v1))
        .await
        .expect("env");
    assert_eq!(good.tier, Tier::Web);
    sqlx::query("UPDATE environments SET tier = 'bogus' WHERE id = ?")
        .bind(bad.id)
        .execute(store.pool())
        .await
        .expect("corrupt");
    corrupt(
        store.environment_by_id(bad.id).await,
        "environments",
        bad.id,
        "tier",
    );
    corrupt(
        store.get_environment("web").await,
        "environments",
        bad.id,
        "tier",
    );
    let err = store.get_environment("web").await.expect_err("corrupt");
    assert!(
        err.to_string().contains("bogus") && err.to_string().contains("tier"),
        "{err}"
    );
    corrupt(
        store.list_environments(None, false).await,
        "environments",
        bad.id,
        "tier",
    );
    // The control loops see the others, and the corrupt one apart.
    let active = store.active_environments().await.expect("active");
    assert_eq!(
        active.envs.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![good.id]
    );
    assert_eq!(
        active
            .corrupt
            .iter()
            .map(|c| (c.id, c.name.as_str()))
            .collect::<Vec<_>>(),
        vec![(bad.id, "web")]
    );
    assert_eq!(
        store.environment_by_id(good.id).await.expect("good").tier,
        Tier::Web
    );

    // Each parsed field of an environment, one at a time.
    for (field, sql) in [
        (
            "status",
            "UPDATE environments SET status = 'Sleeping' WHERE id = ?",
        ),
        (
            "mode",
            "UPDATE environments SET mode = 'turbo' WHERE id = ?",
        ),
        (
            "bootstrap",
            "UPDATE environments SET bootstrap = 'magic' WHERE id = ?",
        ),
        (
            "settings",
            "UPDATE environments SET settings = '[1]' WHERE id = ?",
        ),
        (
            "instance_type",
            "UPDATE environments SET instance_type = 'huge' WHERE id = ?",
        ),
        (
            "min_instances",
            "UPDATE environments SET min_instances = -1 WHERE id = ?",
        ),
    ] {
        let (env, _) = store
            .create_environment(&new_env(
                &format!("f-{field}").replace('_', "-"),
                app_id,
                v1,
            ))
            .await
            .expect("env");
        sqlx::query(sql)
            .bind(env.id)
            .execute(store.pool())
            .await
            .expect(sql);
        corrupt(
            store.environment_by_id(env.id).await,
            "environments",
            env.id,
            field,
        );
    }

    // Operations and versions too.
    let op = store
        .current_operation(good.id)
        .await
        .expect("op")
        .expect("launch");
    assert_eq!(op.kind, OpKind::Launch);
    sqlx::query("UPDATE operations SET kind = 'teleport' WHERE id = ?")
        .bind(op.id)
        .execute(store.pool())
        .await
        .expect("corrupt op");
    corrupt(
        store.current_operation(good.id).await,
        "operations",
        op.id,
        "kind",
    );
    let version = store.version_by_id(v1).await.expect("version");
    assert_eq!(version.status, VersionStatus::Processing);
    sqlx::query("UPDATE versions SET manifest = 'not json' WHERE id = ?")
        .bind(v1)
        .execute(store.pool())
        .await
        .expect("corrupt version");
    corrupt(store.version_by_id(v1).await, "versions", v1, "manifest");
}
