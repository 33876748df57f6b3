//! The OpenAPI document, generated from the handlers and bodies themselves.

use utoipa::OpenApi;

use crate::recovery::{DaysToPay, EpisodeRecord, MonthFigures, Outcome, Report, StageFigures, StageRisk, Totals};
use crate::store::AuditEntry;

use super::*;

#[derive(OpenApi)]
#[openapi(
    info(title = "pastdue admin API", description = "Accounts, overrides, customer links, audit log, recovery figures and Stripe sync. All routes need `Authorization: Bearer <token>`."),
    paths(view_account, set_override, remove_override, link_customer, set_contacts, set_policy, add_promise, add_note, list_accounts, audit_log, agenda, recovery, sync),
    components(schemas(AccountView, OverrideRequest, LinkRequest, ContactsRequest, PolicyRequest, PromiseRequest, NoteRequest, AccountPage, Listed, AuditPage, AuditEntry, Agenda, AgendaItem, Report, Totals, StageFigures, DaysToPay, MonthFigures, StageRisk, EpisodeRecord, Outcome)),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
pub(super) struct ApiDoc;

pub(super) struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("bearer", SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()));
    }
}

/// The OpenAPI document of the admin API (paths under `/admin`).
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The document with its paths under `base` (`admin.path`) instead of
/// `/admin`, so it describes the routes actually mounted.
pub fn openapi_document_at(base: &str) -> utoipa::openapi::OpenApi {
    let mut doc = openapi_document();
    let paths = std::mem::take(&mut doc.paths.paths);
    doc.paths.paths = paths
        .into_iter()
        .map(|(path, item)| (path.strip_prefix("/admin").map_or(path.clone(), |rest| format!("{base}{rest}")), item))
        .collect();
    doc
}
