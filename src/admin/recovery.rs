//! The recovery figures: how much the ladder brings back, at which stage, how fast.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::IntoResponse;
use axum::Json;
use serde::Deserialize;
use utoipa::ToSchema;

use crate::recovery::{Range, Report};

use super::*;

#[derive(Deserialize, ToSchema, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct RecoveryQuery {
    /// First day counted: a date (`2026-10-01`) or an RFC 3339 time, rounded down to its UTC day (default: 90 days before `to`).
    from: Option<String>,
    /// Day after the last counted: a date or an RFC 3339 time, rounded up to a UTC day (default: the end of today; at most 3660 days after `from`).
    to: Option<String>,
    /// Only episodes that started on this ladder (`default`, or a name from `[ladders]`).
    ladder: Option<String>,
}

#[utoipa::path(get, path = "/admin/recovery", tag = "recovery", params(RecoveryQuery),
    responses((status = 200, description = "the recovery figures of the episodes that started in the range", body = Report), (status = 400, description = "bad from, to or ladder; `field` names it"), (status = 401, description = "missing or wrong bearer token"), (status = 503, description = "the store is unavailable")))]
pub(super) async fn recovery(State(admin): State<Arc<Admin>>, Query(q): Query<RecoveryQuery>) -> Reply {
    let range = Range::parse(q.from.as_deref(), q.to.as_deref(), admin.clock.now()).map_err(|e| bad(e.field, e.to_string()))?;
    let ladder = q.ladder.as_deref().filter(|l| !l.is_empty());
    if let Some(l) = ladder {
        if admin.policy.ladder(l).is_none() {
            let names: Vec<&str> = admin.policy.names().collect();
            return Err(bad("ladder", format!("ladder {l:?} is not configured; use one of {}", names.join(", "))));
        }
    }
    let report: Report = crate::store::report(admin.store.as_ref(), range, ladder).await.map_err(unavailable)?;
    Ok(Json(report).into_response())
}
