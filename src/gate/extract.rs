//! `Standing` as an axum extractor, and what the gate leaves in a
//! request's extensions.

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::StatusCode;

use crate::standing::Standing;

/// What the gate leaves in a request's extensions for an account in good
/// standing with nothing to tell (no due date coming, no promise): a
/// zero-size marker, so a pass stores nothing on the heap. The
/// [`Standing`] extractor (and [`Standing::from_extensions`]) expands it
/// into [`Standing::good`]; code that reads `extensions().get::<Standing>()`
/// directly sees only accounts that are not in plain good standing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InGoodStanding;

impl Standing {
    /// The standing the gate left in `extensions`: its [`Standing`], or
    /// good standing for [`InGoodStanding`]; `None` when the gate did not
    /// decide on this request.
    pub fn from_extensions(extensions: &http::Extensions) -> Option<Standing> {
        match extensions.get::<Standing>() {
            Some(standing) => Some(standing.clone()),
            None => extensions.get::<InGoodStanding>().map(|_| Standing::good_anywhere()),
        }
    }
}

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
        Standing::from_extensions(&parts.extensions).ok_or(MissingStanding)
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for Standing {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, Self::Rejection> {
        Ok(Standing::from_extensions(&parts.extensions))
    }
}
