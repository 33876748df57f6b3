//! Forward auth: the gate's decision for a request a reverse proxy
//! describes, so apps in any language get the whole product.
//!
//! nginx (`auth_request`), Caddy (`forward_auth`), Traefik (ForwardAuth)
//! and Envoy (`ext_authz`) ask `GET /check` whether the request they hold
//! may pass, describing it in headers: the method in `X-Forwarded-Method`
//! or `X-Original-Method`, the path and query in `X-Forwarded-Uri` or
//! `X-Original-URI`, plus `Accept` and `Accept-Language`. The account is
//! what the proxy's own authentication put in `check.account_header`, or
//! the claim of a verified JWT ([`jwt`]). The answer is the gate's own
//! decision — the same cache, ladder, exempt paths, `read_only` rule and
//! page as the tower layer, because it *is* the layer, run over a request
//! rebuilt from those headers:
//!
//! - pass → `200`, empty, with `Billing-Stage` (and `Billing-Banner`, the
//!   reminder's text percent-encoded, for `notice`/`warn` stages) for the
//!   proxy to copy to the upstream;
//! - blocked → the layer's `402` (HTML page or problem+json), or `403` with
//!   `check.deny_status = 403` for nginx, whose `error_page` then fetches
//!   `GET /page`: the same decision, answering the `402` itself (or a `303`
//!   back to the original URI when the request may pass by now).
//!
//! A request that describes no original URI is refused (`400`): a proxy
//! that forgot the header must fail loudly, not open the gate.

pub mod jwt;

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::routing::get;
use axum::Router;
use http::header::{HeaderName, HeaderValue, ACCEPT, ACCEPT_LANGUAGE, HOST, LOCATION};
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri};
use tower::{Layer, ServiceExt};

use crate::gate::{GateLayer, HeaderResolver};
use crate::settings::{CheckConfig, ConfigError};
use crate::standing::Standing;

/// The header carrying the banner's text (percent-encoded UTF-8) on a pass.
pub const BILLING_BANNER: HeaderName = HeaderName::from_static("billing-banner");

/// The header the rebuilt request carries the account in: set only by this
/// module on a request it builds from scratch, so no client can set it.
const ACCOUNT: HeaderName = HeaderName::from_static("x-pastdue-check-account");

/// The forward-auth endpoints, built from `[check]` and a gate.
#[derive(Clone)]
struct Check {
    gate: GateLayer,
    source: Source,
    deny_status: StatusCode,
}

/// Where the account comes from.
#[derive(Clone)]
enum Source {
    Header(HeaderName),
    Jwt(Arc<jwt::JwtVerifier>),
}

/// The check (`check.path`) and page (`check.page_path`) endpoints, deciding
/// with `gate` (its cache, ladder, exempt paths and page; its resolver is
/// replaced by the account the proxy describes). Mount them outside any
/// gate. Refuses a `[check]` it cannot serve, naming the key.
pub fn router(config: &CheckConfig, gate: GateLayer) -> Result<Router, ConfigError> {
    let (deny_status, account_header) = config.checked()?;
    let source = match jwt::JwtVerifier::new(config)? {
        Some(verifier) => Source::Jwt(Arc::new(verifier)),
        None => Source::Header(account_header),
    };
    let check = Check {
        gate: gate.with_resolver(HeaderResolver::new(ACCOUNT)),
        source,
        deny_status,
    };
    Ok(Router::new()
        .route(&config.path, get(answer_check))
        .route(&config.page_path, get(answer_page))
        .with_state(check))
}

async fn answer_check(State(check): State<Check>, headers: HeaderMap) -> Response<Body> {
    match check.clone().decide(headers).await {
        Ok((res, _)) if res.status() == StatusCode::OK => res,
        Ok((mut res, _)) => {
            // nginx's auth_request understands 2xx, 401 and 403 only.
            if check.deny_status == StatusCode::FORBIDDEN
                && res.status() != StatusCode::UNAUTHORIZED
            {
                *res.status_mut() = StatusCode::FORBIDDEN;
            }
            res
        }
        Err(res) => res,
    }
}

async fn answer_page(State(check): State<Check>, headers: HeaderMap) -> Response<Body> {
    match check.clone().decide(headers).await {
        // May pass by now (paid meanwhile): back to where the visitor was.
        Ok((res, uri)) if res.status() == StatusCode::OK => {
            let back = if uri.path().starts_with("//") {
                "/".to_owned()
            } else {
                uri.to_string()
            };
            let mut res = Response::new(Body::empty());
            *res.status_mut() = StatusCode::SEE_OTHER;
            if let Ok(v) = HeaderValue::try_from(back) {
                res.headers_mut().insert(LOCATION, v);
            }
            res
        }
        Ok((res, _)) | Err(res) => res,
    }
}

impl Check {
    /// The gate's answer for the request `headers` describe, and its URI.
    async fn decide(self, headers: HeaderMap) -> Result<(Response<Body>, Uri), Response<Body>> {
        let (method, uri) = original(&headers).map_err(|u| bad(u.0))?;
        // Every value: two account headers are ambiguous (400), as in the layer.
        let accounts: Vec<HeaderValue> = match &self.source {
            Source::Header(name) => headers.get_all(name).iter().cloned().collect(),
            Source::Jwt(verifier) => match verifier.account(&headers) {
                Ok(None) => Vec::new(),
                Ok(Some(account)) => match HeaderValue::try_from(account) {
                    Ok(v) => vec![v],
                    // Never "no account": a token that names something
                    // unusable is refused like a bad token.
                    Err(_) => return Err(jwt::Refused::BAD_CLAIM.response()),
                },
                Err(refused) => return Err(refused.response()),
            },
        };
        let mut req = Request::builder()
            .method(method)
            .uri(uri.clone())
            .body(Body::empty())
            .map_err(|_| bad("X-Forwarded-Uri"))?;
        for (name, forwarded) in [
            (ACCEPT, ACCEPT),
            (ACCEPT_LANGUAGE, ACCEPT_LANGUAGE),
            (HOST, HeaderName::from_static("x-forwarded-host")),
        ] {
            if let Some(v) = headers.get(&forwarded).or_else(|| headers.get(&name)) {
                req.headers_mut().insert(name, v.clone());
            }
        }
        for account in accounts {
            req.headers_mut().append(ACCOUNT, account);
        }
        let pass = Passed { gate: self.gate.clone() };
        let res = match self.gate.layer(pass).oneshot(req).await {
            Ok(res) => res,
            Err(never) => match never {},
        };
        Ok((res, uri))
    }
}

/// The service behind the gate for a check: what a request the gate let
/// through gets — `200`, with the banner's text for a `notice`/`warn`
/// stage (the gate adds `Billing-Stage`).
#[derive(Clone)]
struct Passed {
    gate: GateLayer,
}

impl tower::Service<Request<Body>> for Passed {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = futures_util::future::BoxFuture<'static, Result<Response<Body>, Infallible>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { Ok(passed(this, req).await) })
    }
}

async fn passed(Passed { gate }: Passed, req: Request<Body>) -> Response<Body> {
    let mut res = Response::new(Body::empty());
    let Some(standing) = req.extensions().get::<Standing>().filter(|s| gate.may_remind(s)).cloned() else {
        return res;
    };
    let account = req
        .headers()
        .get(ACCOUNT)
        .and_then(|v| v.to_str().ok())
        .and_then(|a| crate::AccountId::new(a).ok());
    let accept_language = req
        .headers()
        .get(ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    // One reading of the clock for the lookup and the reminder's window.
    let now = gate.clock().now();
    let state = match account {
        Some(a) => gate.cache()
            .get(&a, now)
            .await
            .cached()
            .and_then(|c| c.shared_state()),
        None => None,
    };
    let Some(banner) = gate.banner_text(&standing, state.as_deref(), accept_language.as_deref(), now) else {
        return res;
    };
    if let Ok(v) = HeaderValue::try_from(percent_encode(&banner)) {
        res.headers_mut().insert(BILLING_BANNER, v);
    }
    res
}

/// The original method and URI, from the proxy's headers.
fn original(headers: &HeaderMap) -> Result<(Method, Uri), Undescribed> {
    let first = |names: [&'static str; 2]| names.iter().find_map(|n| headers.get(*n));
    let method = match first(["x-forwarded-method", "x-original-method"]) {
        Some(v) => Method::from_bytes(v.as_bytes()).map_err(|_| Undescribed("X-Forwarded-Method"))?,
        None => Method::GET,
    };
    let uri = first(["x-forwarded-uri", "x-original-uri"])
        .ok_or(Undescribed("X-Forwarded-Uri (or X-Original-URI)"))?;
    let uri = Uri::try_from(uri.as_bytes()).map_err(|_| Undescribed("X-Forwarded-Uri"))?;
    // Origin form only: a path, never a scheme or authority.
    if uri.scheme().is_some() || uri.authority().is_some() || !uri.path().starts_with('/') {
        return Err(Undescribed("X-Forwarded-Uri"));
    }
    Ok((method, uri))
}

/// A proxy request that does not describe the original request: the
/// header it must send.
#[derive(Debug)]
struct Undescribed(&'static str);

/// `400` naming the header the proxy must send.
fn bad(header: &str) -> Response<Body> {
    let body = serde_json::json!({
        "type": "about:blank",
        "title": "Bad forward-auth request",
        "status": 400,
        "detail": format!("the proxy must send a valid {header} describing the original request"),
    });
    let mut res = Response::new(Body::from(body.to_string()));
    *res.status_mut() = StatusCode::BAD_REQUEST;
    res.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    res
}

/// UTF-8 percent-encoded so any text fits a header value (RFC 3986
/// unreserved characters and spaces as `%20`).
fn percent_encode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_original_request_is_origin_form_only() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(*k, HeaderValue::from_static(v));
            }
            h
        };
        let ok = original(&headers(&[
            ("x-original-method", "POST"),
            ("x-original-uri", "/api/x?a=1"),
        ]))
        .unwrap();
        assert_eq!(
            (ok.0, ok.1.to_string()),
            (Method::POST, "/api/x?a=1".to_owned())
        );
        assert_eq!(
            original(&headers(&[("x-forwarded-uri", "/")])).unwrap().0,
            Method::GET
        );
        for bad_uri in ["http://evil.test/", "evil.test", "*", ""] {
            assert!(
                original(&headers(&[("x-forwarded-uri", bad_uri)])).is_err(),
                "{bad_uri}"
            );
        }
        assert!(
            original(&headers(&[])).is_err(),
            "no URI: refused, never a pass"
        );
        assert!(original(&headers(&[
            ("x-forwarded-uri", "/"),
            ("x-forwarded-method", "G E T")
        ]))
        .is_err());
    }

    #[test]
    fn banners_fit_a_header() {
        assert_eq!(
            percent_encode("Zahlen Sie 49,00 € bis 3. Dez."),
            "Zahlen%20Sie%2049%2C00%20%E2%82%AC%20bis%203.%20Dez."
        );
    }
}
