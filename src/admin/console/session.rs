//! Who the operator is: a signed session cookie (after signing in with a
//! named admin token) or a header a single-sign-on proxy sets; and the
//! CSRF token and same-origin check every form that changes something
//! must pass.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use http::{header, HeaderMap, HeaderName};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The session cookie's name.
pub(crate) const COOKIE: &str = "pastdue_session";

/// The console's keys and sign-in settings.
pub(crate) struct Sessions {
    /// Signs cookies and CSRF tokens: derived from the admin tokens, so
    /// every instance with the same configuration agrees, and rotating the
    /// tokens signs everyone out.
    key: [u8; 32],
    /// Configured token names: a session of a name no longer configured
    /// is refused.
    names: Vec<String>,
    pub(crate) ttl: Duration,
    user_header: Option<HeaderName>,
    /// Who may enter through `user_header`, lower case.
    users: Vec<String>,
}

/// A signed-in operator.
#[derive(Clone, Debug)]
pub(crate) struct Operator {
    /// Their name, as the audit log records it.
    pub(crate) name: String,
    /// The CSRF token their forms carry.
    pub(crate) csrf: String,
}

type HmacSha256 = Hmac<Sha256>;

impl Sessions {
    /// `tokens`: every configured (name, token digest).
    pub(crate) fn new(tokens: &[([u8; 32], String)], ttl: Duration, user_header: &str, users: &[String]) -> Self {
        let mut mac = HmacSha256::new_from_slice(b"pastdue console sessions v1").expect("any key length");
        let mut sorted: Vec<&([u8; 32], String)> = tokens.iter().collect();
        sorted.sort();
        for (digest, name) in sorted {
            mac.update(digest);
            mac.update(name.as_bytes());
            mac.update(b"\0");
        }
        Self {
            key: mac.finalize().into_bytes().into(),
            names: tokens.iter().map(|(_, n)| n.clone()).collect(),
            ttl,
            user_header: Some(user_header).filter(|h| !h.is_empty()).and_then(|h| HeaderName::from_bytes(h.as_bytes()).ok()),
            users: users.iter().map(|u| u.trim().to_lowercase()).filter(|u| !u.is_empty()).collect(),
        }
    }

    fn mac(&self, parts: &[&str]) -> String {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("any key length");
        for p in parts {
            mac.update(p.as_bytes());
            mac.update(b"|");
        }
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }

    /// A new session cookie's value for `name`, valid until `now + ttl`.
    pub(crate) fn issue(&self, name: &str, now: DateTime<Utc>) -> String {
        let ttl = chrono::TimeDelta::from_std(self.ttl).unwrap_or(chrono::TimeDelta::hours(12));
        let expires = now.checked_add_signed(ttl).unwrap_or(DateTime::<Utc>::MAX_UTC).timestamp();
        let who = URL_SAFE_NO_PAD.encode(name);
        let nonce = crate::store::holder_id();
        let sig = self.mac(&["session", &who, &expires.to_string(), &nonce]);
        format!("v1.{who}.{expires}.{nonce}.{sig}")
    }

    /// The operator a session cookie names, if it is ours, unexpired, and
    /// names a token still configured.
    fn session(&self, value: &str, now: DateTime<Utc>) -> Option<Operator> {
        let mut parts = value.split('.');
        let (Some("v1"), Some(who), Some(expires), Some(nonce), Some(sig), None) =
            (parts.next(), parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        let expected = self.mac(&["session", who, expires, nonce]);
        if !bool::from(expected.as_bytes().ct_eq(sig.as_bytes())) {
            return None;
        }
        if expires.parse::<i64>().ok()? <= now.timestamp() {
            return None;
        }
        let name = String::from_utf8(URL_SAFE_NO_PAD.decode(who).ok()?).ok()?;
        if !self.names.contains(&name) {
            return None;
        }
        Some(Operator { csrf: self.mac(&["csrf", value]), name })
    }

    /// Who is asking: the single-sign-on header when configured and it
    /// names someone in `admin.ui_users`, else a valid session cookie.
    pub(crate) fn operator(&self, headers: &HeaderMap, now: DateTime<Utc>) -> Option<Operator> {
        if let Some(h) = &self.user_header {
            // Sent twice (a client's copy beside the proxy's): whose is it? Nobody's.
            if headers.get_all(h).iter().count() > 1 {
                return None;
            }
            if let Some(user) = headers.get(h).and_then(|v| v.to_str().ok()).map(str::trim).filter(|u| !u.is_empty()) {
                let lower = user.to_lowercase();
                if self.users.contains(&lower) {
                    return Some(Operator { csrf: self.mac(&["csrf-user", &lower]), name: lower });
                }
                // Named by the proxy but not allowed in: no cookie helps.
                return None;
            }
        }
        let value = crate::gate::cookie(headers, COOKIE).ok()??;
        self.session(value, now)
    }

    /// Whether a single-sign-on proxy signs operators in (the sign-in page
    /// says so, without naming the header).
    pub(crate) fn by_header(&self) -> bool {
        self.user_header.is_some()
    }
}

/// Whether a CSRF token presented with a form is the operator's.
pub(crate) fn csrf_ok(operator: &Operator, presented: Option<&str>) -> bool {
    presented.is_some_and(|p| bool::from(p.as_bytes().ct_eq(operator.csrf.as_bytes())))
}

/// Whether a POST comes from the console's own pages: the browser's
/// `Sec-Fetch-Site` (when sent) says same-origin, and the `Origin` (else
/// `Referer`) names the host the request was sent to (`Host`, or the
/// `X-Forwarded-Host` a proxy set: a cross-site form cannot set either).
/// A request that says nothing of its origin is refused.
pub(crate) fn same_origin(headers: &HeaderMap) -> bool {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = get("sec-fetch-site") {
        if site != "same-origin" {
            return false;
        }
    }
    let origin = match get(header::ORIGIN.as_str()) {
        // An opaque origin (a sandboxed document, a privacy redirect) is no origin of ours.
        Some("null") => return false,
        Some(o) => o,
        None => match get(header::REFERER.as_str()) {
            Some(r) => r,
            None => return false,
        },
    };
    let Ok(uri) = origin.parse::<http::Uri>() else { return false };
    let Some(authority) = uri.authority().map(|a| a.as_str().to_ascii_lowercase()) else { return false };
    [get(header::HOST.as_str()), get("x-forwarded-host")].into_iter().flatten().any(|host| host.trim().eq_ignore_ascii_case(&authority))
}

/// The `Set-Cookie` value for a session (`value`), or one that ends it
/// (`None`). `Secure` unless the request came over plain http to a
/// loopback host.
pub(crate) fn set_cookie(value: Option<&str>, path: &str, ttl: Duration, headers: &HeaderMap) -> String {
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
    let hostname = host.rsplit_once(':').filter(|(h, p)| !h.is_empty() && p.bytes().all(|b| b.is_ascii_digit())).map_or(host, |(h, _)| h);
    let loopback = matches!(hostname, "localhost" | "127.0.0.1" | "[::1]");
    // Behind a proxy the Host may be loopback while the browser is not: any
    // forwarding header means the cookie crossed a network, so it is Secure.
    let forwarded = ["x-forwarded-host", "x-forwarded-proto", "forwarded"].iter().any(|h| headers.contains_key(*h));
    let secure = if loopback && !forwarded { "" } else { "; Secure" };
    match value {
        Some(v) => format!("{COOKIE}={v}; Path={path}; Max-Age={}; HttpOnly; SameSite=Strict{secure}", ttl.as_secs()),
        None => format!("{COOKIE}=; Path={path}; Max-Age=0; HttpOnly; SameSite=Strict{secure}"),
    }
}

/// The SHA-256 digest a presented token is compared by.
pub(crate) fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.trim().as_bytes()).into()
}
