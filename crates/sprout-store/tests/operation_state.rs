//! An operation's runtime state lives on its row (migration 0014): what one control plane
//! counted, the next one (after a restart) reads.

use sprout_core::api::OperationOutcome;
use sprout_core::{EnvSettings, EnvStatus, Mode};
use sprout_store::{NewEnvironment, NewVersion, OperationStart, OperationState, Store};
use std::collections::BTreeMap;

async fn version(store: &Store, app_id: i64, label: &str) -> i64 {
    store
        .insert_version(&NewVersion {
            app_id,
            label,
            description: None,
            sha256: "00",
            size_bytes: 1,
            format: "tar.gz",
            manifest: "{}",
            platform: "python",
        })
        .await
        .expect("version")
        .id
}

#[tokio::test]
async fn the_state_of_an_operation_survives_a_restart_and_names_its_rollback() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("sprout.db");
    let store = Store::open(&db).await.expect("open");
    let app = store.create_app("shop").await.expect("app");
    let v1 = version(&store, app.id, "v1").await;
    let v2 = version(&store, app.id, "v2").await;
    let (env, launch) = store
        .create_environment(&NewEnvironment {
            name: "web".into(),
            app_id: app.id,
            version_id: v1,
            version_label: "v1".into(),
            tier: "web".into(),
            mode: "dev".into(),
            cname: "web".into(),
            bootstrap: "golden".into(),
            settings: EnvSettings::for_mode(Mode::Dev),
            desired: 1,
            properties: BTreeMap::new(),
            started_by: None,
        })
        .await
        .expect("env");
    assert_eq!(
        store.operation_state(launch.id).await.expect("state"),
        OperationState::default()
    );

    // Failed steps count up and remember the newest error; a pass that got through resets
    // the count (not the error).
    for n in 1..=2 {
        let failures = store
            .record_step_failure(launch.id, &format!("no network ({n})"))
            .await
            .expect("record");
        assert_eq!(failures, Some(n));
    }
    store.clear_step_failures(launch.id).await.expect("clear");
    assert_eq!(
        store
            .record_step_failure(launch.id, "again")
            .await
            .expect("record"),
        Some(1)
    );
    store.record_exit(launch.id).await.expect("exit");
    store.record_exit(launch.id).await.expect("exit");
    let first = store
        .canary_serving(launch.id)
        .await
        .expect("canary")
        .expect("a moment");
    let second = store.canary_serving(launch.id).await.expect("canary");
    assert_eq!(second, Some(first), "the first moment is kept");

    // A restarted control plane reads what the last one counted.
    store.close().await;
    let store = Store::open(&db).await.expect("reopen");
    let state = store.operation_state(launch.id).await.expect("state");
    assert_eq!(
        (
            state.step_failures,
            state.last_error.as_deref(),
            state.exits
        ),
        (1, Some("again"), 2)
    );
    assert_eq!(state.canary_since, Some(first));
    assert_eq!(
        store.operation_env_name(launch.id).await.expect("name"),
        Some("web".to_string())
    );
    assert_eq!(
        store.operation(999).await.expect("none").map(|o| o.id),
        None
    );

    // An operation that ended counts nothing more.
    store
        .finish_operation(
            &env,
            EnvStatus::Launching,
            Some(launch.id),
            EnvStatus::Ready,
            OperationOutcome::Failed,
            None,
            "createEnvironment failed",
        )
        .await
        .expect("finish");
    assert_eq!(
        store
            .record_step_failure(launch.id, "late")
            .await
            .expect("late"),
        None
    );

    // A failed deployment names the rollback that followed it.
    let env = store.environment_by_id(env.id).await.expect("env");
    let deploy = store
        .begin_operation(
            &env,
            EnvStatus::Ready,
            EnvStatus::Updating,
            &OperationStart {
                kind: "deploy",
                new_version: Some((v2, "v2")),
                message: "deploying",
                ..Default::default()
            },
        )
        .await
        .expect("deploy");
    let env = store.environment_by_id(env.id).await.expect("env");
    let rollback = store
        .fail_and_roll_back(&env, &deploy, None, "deploy failed")
        .await
        .expect("roll back")
        .expect("a rollback");
    let state = store.operation_state(deploy.id).await.expect("state");
    assert_eq!(state.rolled_back_by, Some(rollback.id));
    assert_eq!(
        store
            .operation(deploy.id)
            .await
            .expect("deploy")
            .map(|o| o.outcome()),
        Some(OperationOutcome::Failed)
    );
}
