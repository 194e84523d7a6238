//! The store against a real SQLite file.

use sprout_core::api::OperationOutcome;
use sprout_core::{EnvSettings, EnvStatus, Mode};
use sprout_store::{NewEnvironment, NewVersion, OperationStart, Store, StoreError};
use std::collections::BTreeMap;

async fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("sprout.db"))
        .await
        .expect("open");
    (dir, store)
}

async fn app_with_version(store: &Store, app: &str, label: &str) -> (i64, i64) {
    let app_row = match store.get_app(app).await.expect("get") {
        Some(a) => a,
        None => store.create_app(app).await.expect("app"),
    };
    let v = store
        .insert_version(&NewVersion {
            app_id: app_row.id,
            label,
            description: None,
            sha256: "00",
            size_bytes: 1,
            format: "tar.gz",
            manifest: "{}",
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
        tier: "web".into(),
        mode: "dev".into(),
        cname: name.into(),
        bootstrap: "golden".into(),
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
            manifest: "{}",
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
            EnvStatus::Launching,
            Some(op.id),
            EnvStatus::Ready,
            up,
            None,
            "up",
        )
        .await;
    assert!(closed.expect("finish"));
    let env = store.environment_by_id(env.id).await.expect("env");
    let bye = OperationStart {
        kind: "terminate",
        message: "bye",
        ..Default::default()
    };
    store
        .begin_operation(&env, EnvStatus::Ready, EnvStatus::Terminating, &bye)
        .await
        .expect("terminate");
    store
        .finish_operation(
            &env,
            EnvStatus::Terminating,
            None,
            EnvStatus::Terminated,
            up,
            None,
            "gone",
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
            EnvStatus::Launching,
            Some(launch.id),
            EnvStatus::Ready,
            up,
            None,
            "up",
        )
        .await
        .expect("finish");
    let env = store.environment_by_id(env.id).await.expect("env");
    let start = OperationStart {
        kind: "deploy",
        new_version: Some((v2, "v2")),
        message: "deploying",
        ..Default::default()
    };
    let deploy = store
        .begin_operation(&env, EnvStatus::Ready, EnvStatus::Updating, &start)
        .await
        .expect("deploy");
    // A pass that still believes the launch is running must change nothing.
    let stale = store
        .finish_operation(
            &env,
            EnvStatus::Launching,
            Some(launch.id),
            EnvStatus::Ready,
            up,
            None,
            "x",
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
        kind: "deploy",
        new_version: Some((v1, "v1")),
        message: "again",
        ..Default::default()
    };
    let refused = store
        .begin_operation(&env, EnvStatus::Ready, EnvStatus::Updating, &again)
        .await;
    assert!(matches!(refused, Err(StoreError::Conflict(_))));
    // A failed deploy rolls back to v1: the deploy closes failed, a rollback operation runs.
    let env = store.environment_by_id(env.id).await.expect("env");
    assert_eq!(env.version, "v2");
    let rollback = store
        .fail_and_roll_back(&env, &deploy, Some((100, 0)), "rolled back")
        .await
        .expect("roll back");
    let rollback = rollback.expect("a rollback operation");
    assert_eq!(
        (rollback.kind.as_str(), rollback.version_label.as_deref()),
        ("rollback", Some("v1"))
    );
    let env = store.environment_by_id(env.id).await.expect("env");
    assert_eq!(
        (env.version.as_str(), env.status.as_str()),
        ("v1", "Updating")
    );
    assert!(
        store
            .fail_and_roll_back(&env, &deploy, None, "twice")
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
        .any(|e| e.severity == "ERROR" && e.message == "rolled back"));
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
