//! The client and the verbs against a small in-process stand-in of the REST API.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use sprout_cli::{CliError, Client, Command, ConfigArgs, DeployArgs, GlobalArgs};
use sprout_core::api::*;
use sprout_core::{
    Bootstrap, EnvStatus, HealthStatus, InstanceType, Mode, Policy, Severity, Tier, VersionStatus,
};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct Mock {
    uploads: Vec<(String, String, usize, Option<String>)>,
    polls: HashMap<String, u32>,
    env_polls: u32,
    deployed: Option<String>,
    deploy_requests: Vec<DeployRequest>,
    auth: Vec<Option<String>>,
    configured: Vec<BTreeMap<String, String>>,
    saved: Vec<String>,
    properties: Vec<SetProperties>,
    swapped: Vec<(String, String)>,
}

type S = Arc<Mutex<Mock>>;

fn problem(status: StatusCode, detail: &str) -> Response {
    let p = Problem {
        kind: problem_types::NOT_FOUND.into(),
        title: "Not Found".into(),
        status: status.as_u16(),
        detail: detail.into(),
        instance: None,
    };
    (
        status,
        [("content-type", PROBLEM_JSON)],
        serde_json::to_string(&p).unwrap(),
    )
        .into_response()
}

fn version(label: &str, status: VersionStatus) -> Version {
    Version {
        app: "shop".into(),
        label: label.into(),
        status,
        sha256: "00".into(),
        size_bytes: 10,
        platform: "python".into(),
        image: (status == VersionStatus::Ready).then(|| format!("sprout/shop:{label}")),
        processes: vec!["web".into()],
        error: (status == VersionStatus::Failed).then(|| "no web process in the Procfile".into()),
        created_at: Utc::now(),
        built_at: None,
        build_log: Some("step 1\nstep 2\n".into()),
    }
}

fn environment(status: EnvStatus, outcome: OperationOutcome, version: &str) -> Environment {
    Environment {
        name: "web".into(),
        app: "shop".into(),
        version: version.into(),
        tier: Tier::Web,
        mode: Mode::Dev,
        status,
        health: "Green".into(),
        health_status: HealthStatus::Ok,
        policy: Policy::AllAtOnce,
        cname: "web".into(),
        url: Some("http://web.localhost:8000/".into()),
        instance_type: InstanceType::Micro,
        bootstrap: Bootstrap::Golden,
        min: 1,
        max: 1,
        desired: 1,
        env: Default::default(),
        created_at: Utc::now(),
        updated_at: Utc::now(),
        operation: Some(Operation {
            id: 7,
            kind: "deploy".into(),
            version: Some(version.into()),
            started_by: Some("admin".into()),
            started_at: Utc::now(),
            finished_at: None,
            outcome,
            message: (outcome == OperationOutcome::Failed)
                .then(|| "instances failed their health check".into()),
        }),
    }
}

/// After deploy 7 of `broken` failed: rollback 8, running or done.
fn rollback(done: bool) -> Environment {
    let mut e = environment(
        if done {
            EnvStatus::Ready
        } else {
            EnvStatus::Updating
        },
        if done {
            OperationOutcome::Succeeded
        } else {
            OperationOutcome::Running
        },
        "v1",
    );
    let op = e.operation.as_mut().unwrap();
    op.id = 8;
    op.kind = "rollback".into();
    op.message = done.then(|| "rollback 8 finished: back on v1".into());
    e
}

fn deployment(id: i64, kind: &str, outcome: OperationOutcome, message: &str) -> Deployment {
    Deployment {
        id,
        kind: kind.into(),
        version: Some("v1".into()),
        policy: Some("rolling".into()),
        batch: Some("1".into()),
        started_by: Some("admin".into()),
        started_at: Utc::now(),
        finished_at: Some(Utc::now()),
        duration_secs: Some(4.2),
        outcome,
        message: Some(message.into()),
        requests: Some(100),
        failed: Some(3),
        approximate: false,
    }
}

fn health_report() -> HealthReport {
    HealthReport {
        environment: "web".into(),
        status: EnvStatus::Ready,
        health: HealthStatus::Ok,
        color: "Green".into(),
        causes: vec![],
        metrics: Metrics {
            window_secs: 10.0,
            requests_per_sec: 2.5,
            count: 25,
            status_2xx: 25,
            p50_ms: 4.0,
            p90_ms: 9.0,
            p99_ms: 20.0,
            p999_ms: 25.0,
            ..Default::default()
        },
        instances: vec![InstanceHealth {
            id: "i-1".into(),
            version: "v1".into(),
            zone: "zone-a".into(),
            health: HealthStatus::Ok,
            color: "Green".into(),
            causes: vec![],
            requests_per_sec: 2.5,
            count: 25,
            status_5xx: 0,
            p50_ms: 4.0,
            p99_ms: 20.0,
            in_flight: 0,
            start_to_healthy_ms: Some(1800),
            uptime_secs: Some(600),
        }],
        resources: vec![],
    }
}

#[derive(serde::Deserialize)]
struct LabelQ {
    label: String,
}

async fn start() -> (String, S) {
    let state: S = Arc::default();
    let app = Router::new()
        .route(
            "/api/v1/login",
            post(|Json(req): Json<LoginRequest>| async move {
                if req.password != "pw" {
                    return problem(StatusCode::UNAUTHORIZED, "wrong user name or password");
                }
                Json(LoginResponse {
                    token: "tok".into(),
                    username: req.username,
                    role: "admin".into(),
                    expires_at: Utc::now(),
                })
                .into_response()
            }),
        )
        .route(
            "/api/v1/apps",
            get(|State(s): State<S>, h: HeaderMap| async move {
                s.lock().unwrap().auth.push(
                    h.get("authorization")
                        .map(|v| v.to_str().unwrap().to_string()),
                );
                Json(vec![App {
                    name: "shop".into(),
                    created_at: Utc::now(),
                    versions: 1,
                    environments: 0,
                }])
            }),
        )
        .route(
            "/api/v1/apps/{app}/versions",
            post(
                |State(s): State<S>,
                 Path(app): Path<String>,
                 Query(q): Query<LabelQ>,
                 h: HeaderMap,
                 body: Bytes| async move {
                    let ct = h
                        .get("content-type")
                        .map(|v| v.to_str().unwrap().to_string());
                    s.lock()
                        .unwrap()
                        .uploads
                        .push((app, q.label.clone(), body.len(), ct));
                    (
                        StatusCode::ACCEPTED,
                        Json(version(&q.label, VersionStatus::Processing)),
                    )
                },
            ),
        )
        .route(
            "/api/v1/apps/{app}/versions/{label}",
            get(
                |State(s): State<S>, Path((_app, label)): Path<(String, String)>| async move {
                    let mut m = s.lock().unwrap();
                    let n = m.polls.entry(label.clone()).or_default();
                    *n += 1;
                    let status = if *n < 2 {
                        VersionStatus::Processing
                    } else if label.starts_with("bad") {
                        VersionStatus::Failed
                    } else {
                        VersionStatus::Ready
                    };
                    Json(version(&label, status))
                },
            ),
        )
        .route(
            "/api/v1/environments/{env}",
            get(|State(s): State<S>, Path(env): Path<String>| async move {
                if env != "web" {
                    return problem(StatusCode::NOT_FOUND, &format!("no environment '{env}'"));
                }
                let mut m = s.lock().unwrap();
                m.env_polls += 1;
                let v = m.deployed.clone().unwrap_or_else(|| "v1".into());
                let (status, outcome) = if m.env_polls < 2 {
                    (EnvStatus::Updating, OperationOutcome::Running)
                } else if v.starts_with("sick") {
                    (EnvStatus::Ready, OperationOutcome::Failed)
                } else {
                    (EnvStatus::Ready, OperationOutcome::Succeeded)
                };
                let mut environment = environment(status, outcome, &v);
                if v.starts_with("broken") && m.env_polls >= 2 {
                    // The deploy failed and a rollback replaced it in the same step.
                    let rollback_done = m.env_polls >= 4;
                    environment = rollback(rollback_done);
                }
                Json(EnvironmentDetail {
                    environment,
                    instances: vec![Instance {
                        id: "i-1".into(),
                        version: v.clone(),
                        zone: "zone-a".into(),
                        state: "running".into(),
                        healthy: true,
                        address: Some("10.0.0.2:8000".into()),
                        container: None,
                        started_at: Some(Utc::now()),
                        health: HealthStatus::Ok,
                        start_to_healthy_ms: Some(1800),
                    }],
                    resources: vec![],
                })
                .into_response()
            }),
        )
        .route(
            "/api/v1/operations/{id}",
            get(|State(s): State<S>, Path(id): Path<i64>| async move {
                use OperationOutcome::{Failed, Running, Succeeded};
                let mut m = s.lock().unwrap();
                m.env_polls += 1;
                let polls = m.env_polls;
                let v = m.deployed.clone().unwrap_or_else(|| "v1".into());
                let sick = "instances failed their health check";
                let broken = "deploy 7 failed: instances failed their health check";
                let (outcome, phase, message, rolled_back_by) = match id {
                    7 if polls < 2 => (Running, OperationPhase::InProgress, None, None),
                    7 if v.starts_with("sick") => (Failed, OperationPhase::Failed, Some(sick), None),
                    // The deploy failed and rollback 8 followed it, done at the 4th poll.
                    7 if v.starts_with("broken") => {
                        let phase = if polls >= 4 {
                            OperationPhase::RolledBack
                        } else {
                            OperationPhase::RollingBack
                        };
                        (Failed, phase, Some(broken), Some(8))
                    }
                    7 => (Succeeded, OperationPhase::Succeeded, None, None),
                    _ => return problem(StatusCode::NOT_FOUND, &format!("operation {id} not found")),
                };
                Json(OperationStatus {
                    id,
                    environment: "web".into(),
                    kind: "deploy".into(),
                    version: Some(v),
                    policy: None,
                    batch: None,
                    started_by: Some("admin".into()),
                    started_at: Utc::now(),
                    finished_at: None,
                    duration_secs: None,
                    outcome,
                    phase,
                    environment_status: if outcome == Running {
                        EnvStatus::Updating
                    } else {
                        EnvStatus::Ready
                    },
                    message: message.map(String::from),
                    progress: None,
                    rolled_back_by,
                    requests: None,
                    failed: None,
                    step_failures: 0,
                    last_error: None,
                })
                .into_response()
            }),
        )
        .route(
            "/api/v1/environments/{env}/deploy",
            post(
                |State(s): State<S>, Json(req): Json<DeployRequest>| async move {
                    let mut m = s.lock().unwrap();
                    m.deployed = Some(req.version.clone());
                    m.deploy_requests.push(req.clone());
                    m.env_polls = 0;
                    (
                        StatusCode::ACCEPTED,
                        Json(environment(
                            EnvStatus::Updating,
                            OperationOutcome::Running,
                            &req.version,
                        )),
                    )
                },
            ),
        )
        .route(
            "/api/v1/environments/{env}/deployments",
            get(|| async {
                Json(vec![
                    deployment(8, "rollback", OperationOutcome::Succeeded, "rollback 8 finished"),
                    deployment(
                        7,
                        "deploy",
                        OperationOutcome::Failed,
                        "deploy 7 failed: instances failed their health check",
                    ),
                ])
            }),
        )
        .route(
            "/api/v1/environments/{env}/health",
            get(|| async { Json(health_report()) }),
        )
        .route(
            "/api/v1/environments/{env}/config",
            get(|| async {
                Json(ConfigView {
                    environment: "web".into(),
                    settings: BTreeMap::from([
                        ("policy".to_string(), "rolling".to_string()),
                        ("min".to_string(), "1".to_string()),
                    ]),
                    properties: BTreeMap::from([(
                        "DB_PASSWORD".to_string(),
                        "hunter2".to_string(),
                    )]),
                })
            })
            .patch(
                |State(s): State<S>, Json(req): Json<ConfigUpdate>| async move {
                    s.lock().unwrap().configured.push(req.set);
                    // Same operation as before: nothing to replace.
                    (
                        StatusCode::ACCEPTED,
                        Json(environment(
                            EnvStatus::Ready,
                            OperationOutcome::Succeeded,
                            "v1",
                        )),
                    )
                },
            ),
        )
        .route(
            "/api/v1/environments/{env}/config/save",
            post(|State(s): State<S>, Json(req): Json<SaveConfig>| async move {
                s.lock().unwrap().saved.push(req.name.clone());
                (
                    StatusCode::CREATED,
                    Json(SavedConfig {
                        app: "shop".into(),
                        name: req.name,
                        revision: 3,
                        settings: BTreeMap::new(),
                        created_at: Utc::now(),
                    }),
                )
            }),
        )
        .route(
            "/api/v1/environments/{env}/properties",
            post(
                |State(s): State<S>, Json(req): Json<SetProperties>| async move {
                    s.lock().unwrap().properties.push(req);
                    (
                        StatusCode::ACCEPTED,
                        Json(environment(
                            EnvStatus::Ready,
                            OperationOutcome::Succeeded,
                            "v1",
                        )),
                    )
                },
            ),
        )
        .route(
            "/api/v1/environments/{env}/swap",
            post(
                |State(s): State<S>, Path(env): Path<String>, Json(req): Json<SwapRequest>| async move {
                    if req.with == "nope" {
                        return problem(StatusCode::NOT_FOUND, "no environment 'nope'");
                    }
                    s.lock().unwrap().swapped.push((env, req.with));
                    StatusCode::NO_CONTENT.into_response()
                },
            ),
        )
        .route(
            "/api/v1/environments/{env}/events",
            get(|| async {
                Json(vec![Event {
                    id: 1,
                    time: Utc::now(),
                    severity: Severity::Info,
                    environment: Some("web".into()),
                    app: Some("shop".into()),
                    message: "rolling out".into(),
                }])
            }),
        )
        .route(
            "/api/v1/environments/{env}/logs",
            get(|| async { "i-1 hello\ni-1 world\n" }),
        )
        .route(
            "/api/v1/platforms/{name}/build",
            post(|Path(name): Path<String>| async move {
                if name == "nope" {
                    return problem(StatusCode::NOT_FOUND, "no platform 'nope'");
                }
                "step 1\nstep 2\n".into_response()
            }),
        )
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), state)
}

#[tokio::test]
async fn client_and_verbs_against_a_mock() {
    let (base, state) = start().await;
    let cfg = tempfile::tempdir().unwrap();
    // The only test in this binary touching the environment.
    std::env::set_var("SPROUT_CONFIG_DIR", cfg.path());
    std::env::remove_var("SPROUT_URL");
    std::env::remove_var("SPROUT_TOKEN");

    // Login: wrong password is an API error with the detail, right one gets a token.
    let c = Client::new(&base, None);
    let e = c.login("admin", "bad").await.unwrap_err();
    assert_eq!(e.to_string(), "wrong user name or password");
    assert_eq!(e.status(), Some(401));
    assert_eq!(c.login("admin", "pw").await.unwrap().token, "tok");

    // Saved login supplies the token (and server) to later verbs.
    sprout_cli::config::save_login(
        cfg.path(),
        &sprout_cli::SavedLogin {
            server: base.clone(),
            token: "tok".into(),
            username: "admin".into(),
        },
    )
    .unwrap();
    sprout_cli::run(GlobalArgs::default(), Command::Apps { json: false })
        .await
        .unwrap();
    sprout_cli::run(
        GlobalArgs {
            server: Some(base.clone()),
        },
        Command::Apps { json: true },
    )
    .await
    .unwrap();
    assert_eq!(
        state.lock().unwrap().auth,
        vec![
            Some("Bearer tok".to_string()),
            Some("Bearer tok".to_string())
        ]
    );

    // Push a directory: archived, streamed as gzip, built, deployed, waited for.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("Procfile"), "web: python app.py\n").unwrap();
    std::fs::write(dir.path().join("app.py"), "print('hi')\n").unwrap();
    sprout_cli::run(
        GlobalArgs::default(),
        Command::Push {
            source: dir.path().to_path_buf(),
            app: "shop".into(),
            label: "v2".into(),
            deploy: Some("web".into()),
        },
    )
    .await
    .unwrap();
    {
        let m = state.lock().unwrap();
        let (app, label, len, ct) = &m.uploads[0];
        assert_eq!(
            (app.as_str(), label.as_str(), ct.as_deref()),
            ("shop", "v2", Some("application/gzip"))
        );
        assert!(*len > 20);
        assert_eq!(m.deployed.as_deref(), Some("v2"));
    }

    // A failed build fails the push with the version's error.
    let e = sprout_cli::run(
        GlobalArgs::default(),
        Command::Push {
            source: dir.path().to_path_buf(),
            app: "shop".into(),
            label: "bad1".into(),
            deploy: None,
        },
    )
    .await
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "version bad1 failed: no web process in the Procfile"
    );

    // A zip goes as is.
    let zip = dir.path().join("bundle.zip");
    std::fs::write(&zip, b"PK\x05\x06").unwrap();
    let v = c.upload_version("shop", "v3", &zip, None).await.unwrap();
    assert_eq!(v.status, VersionStatus::Processing);
    assert_eq!(
        state.lock().unwrap().uploads[2].3.as_deref(),
        Some("application/zip")
    );

    // A deploy that fails exits with the operation's message.
    let deploy = |version: &str| {
        Command::Deploy(DeployArgs {
            env: "web".into(),
            version: version.into(),
            policy: None,
            batch: None,
            canary_percent: None,
            evaluation: None,
            wait: true,
        })
    };
    let e = sprout_cli::run(GlobalArgs::default(), deploy("sick"))
        .await
        .unwrap_err();
    assert_eq!(e.to_string(), "instances failed their health check");

    // A deploy replaced by its rollback before it is seen failing: its record says why;
    // the CLI follows the rollback to its end, then fails with the deploy's message.
    let Command::Deploy(mut args) = deploy("broken") else {
        unreachable!()
    };
    args.policy = Some(Policy::Rolling);
    args.batch = Some("50%".into());
    let e = sprout_cli::run(GlobalArgs::default(), Command::Deploy(args))
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "deploy 7 failed: instances failed their health check"
    );
    {
        let m = state.lock().unwrap();
        assert!(m.env_polls >= 4, "followed the rollback to its end");
        let req = m.deploy_requests.last().unwrap();
        assert_eq!(req.policy, Some(Policy::Rolling));
        assert_eq!(req.batch.as_deref(), Some("50%"));
        assert_eq!(req.canary_percent, None);
    }

    // Health, deployments and config read.
    let report = c.health_report("web").await.unwrap();
    assert_eq!(report.instances[0].start_to_healthy_ms, Some(1800));
    for command in [
        Command::Health {
            env: "web".into(),
            json: false,
            refresh: false,
        },
        Command::Health {
            env: "web".into(),
            json: true,
            refresh: false,
        },
        Command::Deployments {
            env: "web".into(),
            json: false,
        },
        Command::Config(ConfigArgs {
            env: "web".into(),
            set: vec![],
            save: None,
            wait: false,
            json: false,
        }),
    ] {
        sprout_cli::run(GlobalArgs::default(), command)
            .await
            .unwrap();
    }
    assert_eq!(c.deployments("web").await.unwrap()[1].id, 7);
    assert_eq!(
        c.get_config("web").await.unwrap().properties["DB_PASSWORD"],
        "hunter2"
    );

    // Config change without a new operation, then save.
    sprout_cli::run(
        GlobalArgs::default(),
        Command::Config(ConfigArgs {
            env: "web".into(),
            set: vec![("min".into(), "2".into()), ("sticky".into(), "1h".into())],
            save: Some("base".into()),
            wait: true,
            json: false,
        }),
    )
    .await
    .unwrap();
    {
        let m = state.lock().unwrap();
        assert_eq!(
            m.configured,
            vec![BTreeMap::from([
                ("min".to_string(), "2".to_string()),
                ("sticky".to_string(), "1h".to_string())
            ])]
        );
        assert_eq!(m.saved, vec!["base".to_string()]);
    }
    assert_eq!(c.save_config("web", "b2").await.unwrap().revision, 3);

    // Properties and swap.
    sprout_cli::run(
        GlobalArgs::default(),
        Command::Setenv {
            env: "web".into(),
            set: vec![("A".into(), "1".into())],
            unset: vec!["OLD".into()],
            public: vec![],
            secret: vec![],
            wait: true,
        },
    )
    .await
    .unwrap();
    {
        let m = state.lock().unwrap();
        let p = &m.properties[0];
        assert_eq!(p.set, BTreeMap::from([("A".to_string(), "1".to_string())]));
        assert_eq!(p.unset, vec!["OLD".to_string()]);
    }
    sprout_cli::run(
        GlobalArgs::default(),
        Command::Swap {
            env: "web".into(),
            other: "web-green".into(),
        },
    )
    .await
    .unwrap();
    assert_eq!(
        state.lock().unwrap().swapped,
        vec![("web".to_string(), "web-green".to_string())]
    );
    let e = c.swap("web", "nope").await.unwrap_err();
    assert_eq!(e.to_string(), "no environment 'nope'");

    // Not found: the problem's detail.
    let e = sprout_cli::run(
        GlobalArgs::default(),
        Command::Status {
            env: "nope".into(),
            json: false,
        },
    )
    .await
    .unwrap_err();
    assert_eq!(e.to_string(), "no environment 'nope'");
    sprout_cli::run(
        GlobalArgs::default(),
        Command::Status {
            env: "web".into(),
            json: false,
        },
    )
    .await
    .unwrap();
    sprout_cli::run(
        GlobalArgs::default(),
        Command::Events {
            env: "web".into(),
            json: false,
            follow: false,
            limit: 5,
        },
    )
    .await
    .unwrap();
    assert_eq!(
        c.logs("web", Some(5)).await.unwrap(),
        "i-1 hello\ni-1 world\n"
    );

    // Platform build streams; an unknown platform is an API error.
    let mut log = Vec::new();
    c.build_platform("python", |b| log.extend_from_slice(b))
        .await
        .unwrap();
    assert_eq!(log, b"step 1\nstep 2\n");
    let e = c.build_platform("nope", |_| {}).await.unwrap_err();
    assert!(matches!(e, CliError::Api { status: 404, .. }));

    // Nobody listening: one clear line.
    let e = Client::new("http://127.0.0.1:9", None)
        .list_apps()
        .await
        .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.starts_with("cannot reach the Sprout server at http://127.0.0.1:9"),
        "{msg}"
    );
    assert!(!msg.contains('\n'));
}
