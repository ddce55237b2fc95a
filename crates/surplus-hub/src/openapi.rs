//! The OpenAPI document of the hub's API, generated from the handlers' annotations.
//!
//! The same document is committed at `crates/surplus-hub/openapi.json`; a test fails when the two
//! differ, so the committed copy is always the API as built (`surplus-hub openapi > ...` renews it).

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "Surplus hub API", description = "Accounts, devices, heartbeats, instructions, blobs, the allocation ledger, backup and compute."),
    paths(
        crate::api::healthz, crate::api::metrics, crate::api::openapi,
        crate::api::signup, crate::api::login, crate::api::me,
        crate::api::list_sessions, crate::api::end_current_session, crate::api::end_session, crate::api::end_all_sessions,
        crate::api::list_devices, crate::api::register_device, crate::api::get_device, crate::api::revoke_device,
        crate::api::probe_device, crate::api::probe_all, crate::api::allocations,
        crate::api::heartbeat, crate::api::holdings, crate::api::retain, crate::api::leave, crate::api::poll_instructions, crate::api::acknowledge,
        crate::api::upload_blob, crate::api::download_blob, crate::api::retrieve_blob, crate::api::drop_placement, crate::api::place_blob, crate::api::get_placement,
        crate::api::put_wrapped_key, crate::api::get_wrapped_key, crate::api::put_backup_object,
        crate::api::get_backup_object, crate::api::list_backup_objects, crate::api::delete_backup_object,
        crate::api::get_forgotten, crate::api::recover_forgotten, crate::api::get_backup_health,
        crate::api::get_backup_settings, crate::api::put_backup_settings, crate::api::start_verify, crate::api::get_verify,
        crate::api::compute::submit_job, crate::api::compute::list_jobs, crate::api::compute::get_job,
        crate::api::compute::cancel_job, crate::api::compute::credits, crate::api::compute::upload_output,
    ),
    components(schemas(surplus_protocol::ErrorBody, surplus_protocol::ErrorCode, surplus_protocol::Instruction,
        surplus_protocol::InstructionKind, surplus_protocol::InstructionResult)),
    modifiers(&BearerSchemes, &CommonErrors),
)]
struct ApiDoc;

/// The error answers every operation can give, documented on each so that a client (and the
/// schemathesis run in `scripts/test`) knows every status it may see: a bad path, query or header
/// (400), a malformed body (413, 415, 422), a missing or refused credential (401, 403), a
/// resource that is not there or not the caller's (404), and a fault of the hub (500). Statuses
/// particular to an operation (409, 429, ...) are on its own annotation.
struct CommonErrors;

impl Modify for CommonErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let error = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build()
        };
        for item in openapi.paths.paths.values_mut() {
            for operation in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
            ]
            .into_iter()
            .flatten()
            {
                let mut add = |status: &str, description: &str| {
                    operation
                        .responses
                        .responses
                        .entry(status.to_owned())
                        .or_insert_with(|| error(description).into());
                };
                add("400", "a malformed path, query or header (bad_request)");
                add("404", "no such resource, or not the caller's (not_found)");
                add("500", "a fault of the hub, logged there (internal)");
                if operation.request_body.is_some() {
                    add(
                        "413",
                        "the body is larger than the hub takes (payload_too_large)",
                    );
                    add("415", "the body has the wrong content type");
                    add("422", "the body is not what the operation takes");
                }
                if operation.security.is_some() {
                    add(
                        "401",
                        "no credential, or one that is not valid (unauthorized)",
                    );
                    add(
                        "403",
                        "a credential that may not do this: a revoked device, a suspended \
                         subscriber, a device where a session is needed",
                    );
                }
            }
        }
    }
}

struct BearerSchemes;

impl Modify for BearerSchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        for (name, format) in [
            ("session", "ses_..."),
            ("device", "dev_<device id>_<secret>"),
        ] {
            components.add_security_scheme(
                name,
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .bearer_format(format)
                        .build(),
                ),
            );
        }
    }
}

/// The document as pretty-printed JSON.
pub fn document() -> String {
    ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|error| format!("{{\"error\": \"{error}\"}}"))
}
