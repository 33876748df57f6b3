//! The gate's refusals that are not about money: an account id it cannot
//! use, an ambiguous request, a request with no account where one is
//! required. Plain `application/problem+json`, never the payment page.

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, Response, StatusCode};

/// A plain `application/problem+json` answer.
fn plain_problem<B: From<Bytes>>(status: StatusCode, detail: String) -> Response<B> {
    let body = serde_json::json!({
        "type": "about:blank",
        "title": status.canonical_reason().unwrap_or(""),
        "status": status.as_u16(),
        "detail": detail,
    });
    let mut res = Response::new(B::from(Bytes::from(serde_json::to_vec(&body).unwrap_or_default())));
    *res.status_mut() = status;
    res.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
    res.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// 400 for an account id that is not valid (the gate cannot key on it).
pub(crate) fn bad_account<B: From<Bytes>>(error: &crate::InvalidAccountId) -> Response<B> {
    plain_problem(StatusCode::BAD_REQUEST, format!("invalid account id: {error}"))
}

/// 400 for a request that names its account more than once.
pub(crate) fn ambiguous_account<B: From<Bytes>>(error: &super::Ambiguous) -> Response<B> {
    plain_problem(StatusCode::BAD_REQUEST, error.to_string())
}

/// 401 for a gated request with no account (`gate.missing_account = "deny"`).
pub(crate) fn no_account<B: From<Bytes>>() -> Response<B> {
    plain_problem(StatusCode::UNAUTHORIZED, "this route needs an account; sign in first".to_owned())
}

