//! Which URLs may be rendered as a link or an image.
//!
//! URLs reach the page, the banner and the notices from Stripe payloads
//! (`hosted_invoice_url`), from the Stripe API (portal sessions) and from
//! configuration (`page.logo_url`, `page.billing_portal_url`). A signed
//! payload is not a trusted one: a `javascript:` or `data:` URL in an `href`
//! runs in the customer's browser. So only these are accepted:
//!
//! - `https://` URLs with a host;
//! - `http://` URLs whose host is a loopback address (`localhost`,
//!   `127.0.0.0/8`, `[::1]`), for tests and local demos;
//! - root-relative paths (`/billing?x=1`, but not `//host` or `/\host`),
//!   which stay on the app's own origin.
//!
//! Everything else is dropped where it is parsed (never stored) and checked
//! again before it is rendered.

// Reached from outside only through `__internals` (feature `test-util`).
#![cfg_attr(not(feature = "test-util"), allow(unreachable_pub))]

use std::net::IpAddr;

/// Whether `raw` may be rendered as an `href` or `src`. See the module docs.
pub fn is_safe(raw: &str) -> bool {
    if raw.is_empty() || raw.len() > 2048 || raw.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return false;
    }
    if let Some(rest) = raw.strip_prefix('/') {
        return !rest.starts_with('/') && !rest.starts_with('\\') && !raw.contains('\\');
    }
    let scheme_ok = raw.get(..8).is_some_and(|p| p.eq_ignore_ascii_case("https://"))
        || raw.get(..7).is_some_and(|p| p.eq_ignore_ascii_case("http://"));
    if !scheme_ok {
        return false;
    }
    let Some((scheme, host)) = scheme_and_host(raw) else { return false };
    match scheme.as_str() {
        "https" => !host.is_empty(),
        _ => is_loopback(&host),
    }
}

/// The lower-cased scheme and host of an absolute `http(s)://` URL, as
/// `http::Uri` parses it; `None` for anything else, or for a URL with
/// user info (`https://user@host` is a phishing shape, never a link).
pub(crate) fn scheme_and_host(raw: &str) -> Option<(String, String)> {
    let uri: http::Uri = raw.parse().ok()?;
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    let authority = uri.authority()?;
    if authority.as_str().contains('@') || !matches!(scheme.as_str(), "http" | "https") {
        return None;
    }
    Some((scheme, authority.host().to_ascii_lowercase()))
}

/// An API's `api_base` without a trailing slash: https, or http on
/// loopback only (a credential travels in every request); the error says
/// why not.
#[cfg_attr(not(any(feature = "paddle", feature = "notify-webhook")), allow(dead_code))]
pub(crate) fn api_base(base: &str) -> Result<String, String> {
    let base = base.trim_end_matches('/');
    if base.starts_with("http") && is_safe(base) && !base.contains(['?', '#']) {
        Ok(base.to_owned())
    } else {
        Err(format!("{base:?} is not an https URL (http only on loopback)"))
    }
}

/// `localhost`, `127.0.0.0/8` or `[::1]`.
fn is_loopback(host: &str) -> bool {
    host == "localhost" || host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// `raw` if it [is safe](is_safe), else `None` (logged once per call, with
/// `source` naming where it came from).
pub(crate) fn checked<'a>(raw: &'a str, source: &str) -> Option<&'a str> {
    if is_safe(raw) {
        Some(raw)
    } else {
        tracing::warn!(source, url = %raw.chars().take(80).collect::<String>(), "dropping a URL that is not https (or http on loopback)");
        None
    }
}

#[cfg(test)]
mod tests {
    use super::is_safe;

    #[test]
    fn only_https_loopback_http_and_own_paths() {
        for ok in [
            "https://invoice.stripe.com/i/acct_1/test_x",
            "https://billing.stripe.com/p/session/test_x",
            "http://127.0.0.1:12111/pay",
            "http://localhost/x",
            "http://[::1]:8080/",
            "/billing?account=acme",
        ] {
            assert!(is_safe(ok), "{ok}");
        }
        for bad in [
            "javascript:alert(1)",
            "JavaScript:alert(1)",
            " javascript:alert(1)",
            "java\tscript:alert(1)",
            "data:text/html,<script>alert(1)</script>",
            "vbscript:msgbox(1)",
            "http://evil.example/pay",
            "http://127.0.0.1.evil.example/",
            "ftp://files.example/x",
            "//evil.example/x",
            "/\\evil.example",
            "https://user:pw@evil.example/",
            "https://user@evil.example/",
            "http://0x7f.1/",
            "http://localhost.evil.example/",
            "https:evil",
            "",
            "stripe.com/pay",
        ] {
            assert!(!is_safe(bad), "{bad}");
        }
    }
}
