//! The `/check` and `/page` endpoints.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::routing::get;
use axum::Router;
use http::header::{HeaderName, HeaderValue, ACCEPT, ACCEPT_LANGUAGE, HOST, LOCATION};
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri};
use tower::{Layer, ServiceExt};

use crate::gate::{ExemptPaths, GateLayer, HeaderResolver};
use super::{jwt, CheckConfig};
use crate::settings::ConfigError;
use crate::standing::Standing;

/// The header carrying the banner's text (percent-encoded UTF-8) on a pass.
pub const BILLING_BANNER: HeaderName = HeaderName::from_static("billing-banner");

/// The header the rebuilt request carries the account in: set only by this
/// module on a request it builds from scratch, so no client can set it.
const ACCOUNT: HeaderName = HeaderName::from_static("x-pastdue-check-account");

/// The headers a proxy describes the original request with (named once,
/// so a check never parses a header name).
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
const X_ORIGINAL_METHOD: HeaderName = HeaderName::from_static("x-original-method");
const X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");
const X_ORIGINAL_URI: HeaderName = HeaderName::from_static("x-original-uri");

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
/// with `gate` (its cache, ladder and page; its resolver is replaced by the
/// account the proxy describes, its exempt paths by `check.exempt`: the
/// proxied app's URL space is not pastdue's). Mount them outside any
/// gate. Refuses a `[check]` it cannot serve, naming the key.
pub fn router(config: &CheckConfig, gate: GateLayer) -> Result<Router, ConfigError> {
    let (deny_status, account_header) = config.checked()?;
    let source = match jwt::JwtVerifier::new(config)? {
        Some(verifier) => Source::Jwt(Arc::new(verifier)),
        None => Source::Header(account_header),
    };
    let exempt = ExemptPaths::new(&config.exempt)
        .map_err(|e| ConfigError::invalid("check.exempt", e))?;
    let check = Check {
        gate: gate.with_resolver(HeaderResolver::new(ACCOUNT)).with_exempt(exempt),
        source,
        deny_status,
    };
    Ok(Router::new()
        .route(&config.path, get(answer_check))
        .route(&config.page_path, get(answer_page))
        .with_state(check))
}

async fn answer_check(State(check): State<Check>, req: Request<Body>) -> Response<Body> {
    let mut res = match check.decide(req.headers()).await {
        Ok((res, _)) if res.status() == StatusCode::OK => return res,
        Ok((res, _)) | Err(res) => res,
    };
    // nginx's auth_request understands 2xx, 401 and 403 only (anything
    // else is its own 500): a refusal becomes 403, and the `error_page`
    // fetches `/page`, which answers the 402 or the 400 itself.
    if check.deny_status == StatusCode::FORBIDDEN && res.status() != StatusCode::UNAUTHORIZED {
        *res.status_mut() = StatusCode::FORBIDDEN;
    }
    res
}

async fn answer_page(State(check): State<Check>, req: Request<Body>) -> Response<Body> {
    match check.decide(req.headers()).await {
        // May pass by now (paid meanwhile): back to where the visitor was.
        Ok((res, uri)) if res.status() == StatusCode::OK => {
            // The same check as every rendered URL: a root-relative path
            // (never `//host` or `/\host`, which browsers read as another
            // origin), else the root.
            let back = Some(uri.to_string())
                .filter(|u| u.starts_with('/') && crate::href::is_safe(u))
                .unwrap_or_else(|| "/".to_owned());
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
    ///
    /// The usual check — one account, cached, passing with nothing to add — is
    /// answered from the incoming headers as they are; anything else is
    /// described to the gate as the original request it stands for.
    async fn decide(&self, headers: &HeaderMap) -> Result<(Response<Body>, Uri), Response<Body>> {
        let (method, uri) = original(headers).map_err(|u| u.response())?;
        let plain_pass = |account: &str| self.gate.passes_plainly(account, &method, uri.path());
        // Every value: two account headers are ambiguous (400), as in the layer.
        let accounts: Vec<HeaderValue> = match &self.source {
            Source::Header(name) => {
                let mut all = headers.get_all(name).iter();
                if let (Some(one), None) = (all.next(), all.next()) {
                    if one.to_str().is_ok_and(plain_pass) {
                        return Ok((Response::new(Body::empty()), uri));
                    }
                }
                headers.get_all(name).iter().cloned().collect()
            }
            Source::Jwt(verifier) => match verifier.account(headers) {
                Ok(None) => Vec::new(),
                Ok(Some(account)) if plain_pass(&account) => return Ok((Response::new(Body::empty()), uri)),
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
            .map_err(|_| Undescribed::Invalid("X-Forwarded-Uri").response())?;
        for (name, forwarded) in [(ACCEPT, ACCEPT), (ACCEPT_LANGUAGE, ACCEPT_LANGUAGE), (HOST, X_FORWARDED_HOST)] {
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
    let Some(standing) = Standing::from_extensions(req.extensions()).filter(|s| gate.may_remind(s)) else {
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
    // One reading of the clock for the lookup and the reminder's window,
    // the gate's own (`now_micros`), so the cache's entries are stamped
    // and checked by one clock.
    let now = crate::clock::from_micros(gate.clock().now_micros());
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
///
/// Both families are read. A proxy sets one and forwards the client's own
/// headers, so a client can add the other: where both are present they
/// must agree, or the request is refused (a client's `X-Forwarded-Uri:
/// /billing/x` must not win over the proxy's `X-Original-URI`). A header
/// given twice is refused the same way.
fn original(headers: &HeaderMap) -> Result<(Method, Uri), Undescribed> {
    let method = match one_truth(headers, [X_FORWARDED_METHOD, X_ORIGINAL_METHOD])? {
        Some(v) => Method::from_bytes(v.as_bytes()).map_err(|_| Undescribed::Invalid("X-Forwarded-Method"))?,
        None => Method::GET,
    };
    let uri = one_truth(headers, [X_FORWARDED_URI, X_ORIGINAL_URI])?
        .ok_or(Undescribed::Missing("X-Forwarded-Uri (or X-Original-URI)"))?;
    // A fragment is never sent by a browser; the URI parser would drop it
    // while an upstream may not (`/billing#/../../api`).
    if uri.as_bytes().contains(&b'#') {
        return Err(Undescribed::Invalid("X-Forwarded-Uri"));
    }
    let uri = Uri::try_from(uri.as_bytes()).map_err(|_| Undescribed::Invalid("X-Forwarded-Uri"))?;
    // Origin form only: a path, never a scheme or authority.
    if uri.scheme().is_some() || uri.authority().is_some() || !uri.path().starts_with('/') {
        return Err(Undescribed::Invalid("X-Forwarded-Uri"));
    }
    // Browsers resolve dot segments before sending; an upstream that
    // resolves them after the check would serve another path than the one
    // checked (`/billing/../api/x` matches the exempt `/billing/**`).
    if crate::gate::has_dot_segments(uri.path()) {
        return Err(Undescribed::DotSegments);
    }
    Ok((method, uri))
}

/// The one value every copy of `names` agrees on: `None` when none is
/// sent, refused when two copies differ (identical copies — a proxy that
/// sets a header its controller sets too — describe one request).
fn one_truth(headers: &HeaderMap, names: [HeaderName; 2]) -> Result<Option<&HeaderValue>, Undescribed> {
    let mut found: Option<&HeaderValue> = None;
    for v in names.iter().flat_map(|name| headers.get_all(name)) {
        match found {
            Some(seen) if seen != v => return Err(Undescribed::Conflicting),
            _ => found = Some(v),
        }
    }
    Ok(found)
}

/// A proxy request that does not describe one original request.
#[derive(Debug, PartialEq, Eq)]
enum Undescribed {
    /// The header the proxy must send is missing.
    Missing(&'static str),
    /// It is there but not a method or an origin-form URI.
    Invalid(&'static str),
    /// The two families (or two copies of one header) disagree.
    Conflicting,
    /// The path has `.` or `..` segments (also percent-encoded).
    DotSegments,
}

impl Undescribed {
    /// The `pastdue_checks_refused_total` label.
    fn reason(&self) -> &'static str {
        match self {
            Undescribed::Missing(_) => "missing",
            Undescribed::Invalid(_) => "invalid",
            Undescribed::Conflicting => "conflicting",
            Undescribed::DotSegments => "dot_segments",
        }
    }

    /// `400`, counted, saying what the proxy must send.
    fn response(&self) -> Response<Body> {
        metrics::counter!(crate::metrics::CHECKS_REFUSED, "reason" => self.reason()).increment(1);
        let detail = match self {
            Undescribed::Missing(h) | Undescribed::Invalid(h) => {
                format!("the proxy must send a valid {h} describing the original request")
            }
            Undescribed::Conflicting => "X-Forwarded-Method/-Uri and X-Original-Method/-URI (or two copies of one) describe \
                different requests: the proxy must set or clear both families"
                .to_owned(),
            Undescribed::DotSegments => "the original URI has dot segments (. or ..), which browsers never send".to_owned(),
        };
        bad(&detail)
    }
}

/// `400` with `detail`.
fn bad(detail: &str) -> Response<Body> {
    let body = serde_json::json!({
        "type": "about:blank",
        "title": "Bad forward-auth request",
        "status": 400,
        "detail": detail,
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

    /// A header map with every pair, repeated names kept.
    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn the_original_request_is_origin_form_only() {
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
    fn both_families_must_agree() {
        // The proxy's X-Original-*, the client's X-Forwarded-*: refused.
        for attack in [
            &[("x-original-uri", "/api/x"), ("x-forwarded-uri", "/billing/x")][..],
            &[("x-original-uri", "/api/x"), ("x-original-method", "POST"), ("x-forwarded-method", "GET")],
            &[("x-forwarded-uri", "/api/x"), ("x-forwarded-uri", "/billing/x")],
            &[("x-original-uri", "/api/x"), ("x-original-method", "POST"), ("x-original-method", "GET")],
        ] {
            assert_eq!(original(&headers(attack)).unwrap_err(), Undescribed::Conflicting, "{attack:?}");
        }
        // Both families set to the same values: one request.
        let same = original(&headers(&[
            ("x-original-uri", "/api/x"),
            ("x-forwarded-uri", "/api/x"),
            ("x-original-method", "POST"),
            ("x-forwarded-method", "POST"),
        ]))
        .unwrap();
        assert_eq!((same.0, same.1.to_string()), (Method::POST, "/api/x".to_owned()));
        for dots in ["/billing/../api/x", "/billing/%2e%2e/api/x", "/static/./x", "/billing/..%2Fapi", "/billing/..;/api/x"] {
            assert_eq!(original(&headers(&[("x-original-uri", dots)])).unwrap_err(), Undescribed::DotSegments, "{dots}");
        }
        // Identical copies (a controller and a snippet setting one header)
        // describe one request; a fragment is never sent by a browser.
        assert!(original(&headers(&[("x-original-uri", "/api/x"), ("x-original-uri", "/api/x")])).is_ok());
        assert_eq!(original(&headers(&[("x-original-uri", "/billing#/../../api")])).unwrap_err(), Undescribed::Invalid("X-Forwarded-Uri"));
    }

    #[test]
    fn banners_fit_a_header() {
        assert_eq!(
            percent_encode("Zahlen Sie 49,00 € bis 3. Dez."),
            "Zahlen%20Sie%2049%2C00%20%E2%82%AC%20bis%203.%20Dez."
        );
    }
}
