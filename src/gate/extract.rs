//! `Standing` as an axum extractor.

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::StatusCode;

use crate::standing::Standing;

/// The rejection when a handler asks for [`Standing`] and there is none.
#[derive(Debug, Clone, Copy)]
pub struct MissingStanding;

impl IntoResponse for MissingStanding {
    fn into_response(self) -> Response {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "pastdue: no Standing in the request extensions. Is `GateLayer` installed on this \
             route, and does the request name an account? Use `Option<Standing>` in handlers \
             that also serve requests without one.",
        )
            .into_response()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Standing {
    type Rejection = MissingStanding;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Standing>().cloned().ok_or(MissingStanding)
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for Standing {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<Standing>().cloned())
    }
}
