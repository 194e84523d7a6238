//! Resources in the store against a real SQLite file: sealed credentials, unique names,
//! attachments and their roll states, snapshots that outlive their resource.

use sprout_core::manifest::BundleManifest;
use sprout_core::resource::{
    AttachmentState, Credentials, DeletionPolicy, ResourceKind, ResourceStatus, VarPrefix,
};
use sprout_core::{Bootstrap, EnvSettings, InstanceType, Mode, ResourceName, Tier};
use sprout_store::{EnvironmentStore, NewEnvironment, NewResource, NewVersion, Store, StoreError};
use std::collections::BTreeMap;

const PASSWORD: &str = "s3cretPASSWORDthatIsLong";

fn creds(name: &str) -> Credentials {
    Credentials::new(&ResourceName::parse(name).unwrap(), PASSWORD.to_string()).unwrap()
}

fn new_resource<'a>(app: &'a str, name: &'a str, creds: &'a Credentials) -> NewResource<'a> {
    NewResource {
        app,
        name,
        kind: ResourceKind::Postgres,
        size: InstanceType::Micro,
        credentials: creds,
        container: name,
        deletion_policy: DeletionPolicy::Snapshot,
        coupled_env_id: None,
        restored_from: None,
    }
}

#[tokio::test]
async fn resources_attachments_and_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sprout.db");
    let store = Store::open(&path).await.unwrap();
    let app = store.create_app("shop").await.unwrap();
    let c = creds("orders");

    assert!(matches!(
        store
            .create_resource(&new_resource("nope", "orders", &c))
            .await,
        Err(StoreError::NotFound(_))
    ));
    let r = store
        .create_resource(&new_resource("shop", "orders", &c))
        .await
        .unwrap();
    assert_eq!(r.status, ResourceStatus::Creating);
    assert_eq!(r.credentials, c);
    assert!(matches!(
        store.create_resource(&new_resource("shop", "orders", &c)).await,
        Err(StoreError::Conflict(m)) if m.contains("already exists")
    ));

    // Sealed at rest: the file never holds the password.
    let (stored,): (String,) = sqlx::query_as("SELECT credentials FROM resources")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert!(stored.starts_with("sealed:"), "{stored}");
    assert!(!stored.contains(PASSWORD));

    // Compare-and-set of the status.
    assert!(store
        .set_resource_status(
            r.id,
            ResourceStatus::Creating,
            ResourceStatus::Available,
            None
        )
        .await
        .unwrap());
    assert!(!store
        .set_resource_status(r.id, ResourceStatus::Creating, ResourceStatus::Failed, None)
        .await
        .unwrap());

    // Attachments: attaching → attached after the roll; detaching → gone after the roll.
    let manifest = serde_json::to_string(&BundleManifest::default()).unwrap();
    let v = store
        .insert_version(&NewVersion {
            app_id: app.id,
            label: "v1",
            description: None,
            sha256: "00",
            size_bytes: 1,
            format: "tar.gz",
            manifest: &manifest,
            platform: "python",
        })
        .await
        .unwrap();
    let (env, _) = store
        .create_environment(&NewEnvironment {
            name: "web".into(),
            app_id: app.id,
            version_id: v.id,
            version_label: "v1".into(),
            tier: Tier::Web,
            mode: Mode::Dev,
            cname: "web".into(),
            bootstrap: Bootstrap::Golden,
            settings: EnvSettings::for_mode(Mode::Dev),
            desired: 1,
            properties: BTreeMap::new(),
            started_by: None,
        })
        .await
        .unwrap();
    let prefix = VarPrefix::parse("orders").unwrap();
    store
        .attach_resource(r.id, env.id, Some(&prefix))
        .await
        .unwrap();
    assert!(matches!(
        store.attach_resource(r.id, env.id, None).await,
        Err(StoreError::Conflict(_))
    ));
    let a = store.attachments(Some(r.id), None).await.unwrap();
    assert_eq!(a.len(), 1);
    assert_eq!(
        (a[0].env.as_str(), a[0].state.as_str()),
        ("web", "attaching")
    );
    assert_eq!(a[0].prefix.as_ref().map(VarPrefix::as_str), Some("ORDERS"));
    store.attachment_rolled(r.id, env.id).await.unwrap();
    assert_eq!(
        store.attachments(None, Some(env.id)).await.unwrap()[0].state,
        AttachmentState::Attached
    );
    assert!(matches!(
        store.delete_resource(r.id).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(store.detach_resource(r.id, env.id).await.unwrap());
    assert!(
        !store.detach_resource(r.id, env.id).await.unwrap(),
        "already detaching"
    );
    store.attachment_rolled(r.id, env.id).await.unwrap();
    assert!(store
        .attachments(Some(r.id), None)
        .await
        .unwrap()
        .is_empty());

    // A snapshot outlives its resource.
    let snap = store
        .begin_snapshot(&r, |id| format!("snapshots/{id}.pgc"), true)
        .await
        .unwrap();
    assert_eq!(snap.file, format!("snapshots/{}.pgc", snap.id));
    assert_eq!(snap.status, "creating");
    store.finish_snapshot(snap.id, Some(1234)).await.unwrap();
    store.delete_resource(r.id).await.unwrap();
    assert!(store.get_resource("orders").await.unwrap().is_none());
    let snaps = store.snapshots_of("orders").await.unwrap();
    assert_eq!(snaps.len(), 1);
    assert_eq!(
        (
            snaps[0].status.as_str(),
            snaps[0].size_bytes,
            snaps[0].final_snapshot
        ),
        ("available", Some(1234), true)
    );

    // An application with resources cannot be deleted; without, its snapshots go with it.
    store.create_app("blog").await.unwrap();
    let r2 = store
        .create_resource(&new_resource("blog", "cache", &creds("cache")))
        .await
        .unwrap();
    let s2 = store
        .begin_snapshot(&r2, |id| format!("snapshots/{id}"), false)
        .await
        .unwrap();
    assert!(matches!(
        store.delete_app("blog").await,
        Err(StoreError::Conflict(m)) if m == "application 'blog' still has resources: cache; delete them first"
    ));
    store.delete_resource(r2.id).await.unwrap();
    store.delete_app("blog").await.unwrap();
    assert!(store.snapshot(s2.id).await.unwrap().is_none());
}
