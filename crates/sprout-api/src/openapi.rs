//! The OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]` attributes and
//! the shared API types; served at `/api/v1/openapi.json`.

use sprout_core::api::{Problem, PROBLEM_JSON};
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, ResponseBuilder};
use utoipa::{Modify, OpenApi as _, PartialSchema as _, ToSchema};

/// Operations anyone may call, without a token.
const PUBLIC: &[&str] = &["login", "healthz"];

/// Every error a route may answer, each as problem+json (RFC 9457).
const ERRORS: &[(&str, &str)] = &[
    ("400", "Invalid input; nothing changed"),
    ("401", "No token, or a bad, expired or revoked one"),
    ("403", "The caller's role does not allow this"),
    ("404", "No such object"),
    (
        "409",
        "Conflicts with the current state (e.g. an operation is running)",
    ),
    ("413", "Too large"),
    ("422", "A bundle that is not a valid archive"),
    ("429", "Too many failed logins; see Retry-After"),
    ("500", "Internal error; the server log has the details"),
    ("503", "A dependency (e.g. Docker) is unavailable"),
];

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Sprout",
        description = "Sprout's REST API: applications, versions, environments, queues, users. \
                       Every error is application/problem+json (RFC 9457).",
        license(name = "Apache-2.0")
    ),
    tags(
        (name = "auth"), (name = "apps"), (name = "versions"), (name = "environments"),
        (name = "health"), (name = "settings"), (name = "scaling"), (name = "zones"),
        (name = "queue"), (name = "resources"), (name = "platforms"), (name = "users"), (name = "tokens")
    )
)]
pub struct ApiDoc;

/// Adds what every operation shares: the bearer scheme and the problem+json errors.
struct Conventions;

impl Modify for Conventions {
    fn modify(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some("From POST /api/v1/login or `sprout token create`"))
                    .build(),
            ),
        );
        components
            .schemas
            .insert(Problem::name().into_owned(), Problem::schema());
        for item in openapi.paths.paths.values_mut() {
            for op in [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
            ]
            .into_iter()
            .flatten()
            {
                add_conventions(op);
            }
        }
    }
}

fn add_conventions(op: &mut Operation) {
    let public = op
        .operation_id
        .as_deref()
        .is_some_and(|id| PUBLIC.contains(&id));
    if !public {
        op.security = Some(vec![SecurityRequirement::new(
            "bearer",
            Vec::<String>::new(),
        )]);
    }
    for (code, description) in ERRORS {
        if public
            && (*code == "401" || *code == "403")
            && op.operation_id.as_deref() != Some("login")
        {
            continue;
        }
        op.responses
            .responses
            .entry((*code).to_string())
            .or_insert_with(|| {
                ResponseBuilder::new()
                    .description(*description)
                    .content(
                        PROBLEM_JSON,
                        ContentBuilder::new()
                            .schema(Some(Ref::from_schema_name(Problem::name())))
                            .build(),
                    )
                    .into()
            });
    }
}

pub fn base() -> OpenApi {
    ApiDoc::openapi()
}

/// Applies the shared conventions once the routers have added their paths.
pub fn finish(mut doc: OpenApi) -> OpenApi {
    Conventions.modify(&mut doc);
    doc
}
