//! `[check]`: the forward-auth endpoints of `pastdue serve`.

use serde::Deserialize;

use crate::settings::{ConfigError, Secret};

/// `[check]`: the server's forward-auth endpoints (`pastdue serve`), which
/// a reverse proxy asks whether a request may pass. `Debug` hides the JWT
/// key.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct CheckConfig {
    /// `path`: the check endpoint (`GET`).
    pub path: String,
    /// `page_path`: the endpoint answering the `402` page itself, for
    /// nginx's `error_page` (`GET`).
    pub page_path: String,
    /// `account_header`: the header the proxy's own authentication sets to
    /// the account id (ignored when `jwt_algorithm` is set).
    pub account_header: String,
    /// `deny_status`: `402`, or `403` for nginx's `auth_request`.
    pub deny_status: u16,
    /// `jwt_algorithm`: `""` (off), `HS256`, `RS256` or `ES256`.
    pub jwt_algorithm: String,
    /// `jwt_key`: the HS256 secret, or the path of an RS256/ES256 PEM
    /// public key.
    pub jwt_key: Secret,
    /// `jwt_jwks`: the path of a local JWKS file (RS256/ES256), instead of
    /// `jwt_key`.
    pub jwt_jwks: String,
    /// `jwt_issuer`: the required `iss`.
    pub jwt_issuer: String,
    /// `jwt_audience`: the required `aud`.
    pub jwt_audience: String,
    /// `jwt_claim`: the claim holding the account id.
    pub jwt_claim: String,
    /// `jwt_cookie`: a cookie carrying the token when there is no
    /// `Authorization: Bearer` (`""` = none).
    pub jwt_cookie: String,
    /// `exempt`: globs of the proxied app's own paths that always pass
    /// (`gate.exempt` describes pastdue's routes, not the app's).
    pub exempt: Vec<String>,
}

impl CheckConfig {
    /// The `[check]` settings that must parse: both paths start with `/`,
    /// the deny status (`402` or `403`) and the account header; or the key
    /// that is wrong. Loading a config and building the check endpoints
    /// both ask this.
    #[cfg_attr(not(any(feature = "config", feature = "server")), allow(dead_code))]
    pub(crate) fn checked(&self) -> Result<(http::StatusCode, http::HeaderName), ConfigError> {
        let key = |key: &str, message: String| ConfigError::key(format!("check.{key}"), message);
        for (name, path) in [("path", &self.path), ("page_path", &self.page_path)] {
            if !path.starts_with('/') {
                return Err(key(name, "must start with /".into()));
            }
        }
        let deny_status = match self.deny_status {
            402 => http::StatusCode::PAYMENT_REQUIRED,
            403 => http::StatusCode::FORBIDDEN,
            other => return Err(key("deny_status", format!("{other} is neither 402 nor 403"))),
        };
        let header = http::HeaderName::try_from(self.account_header.as_str())
            .map_err(|_| key("account_header", format!("{:?} is not a header name", self.account_header)))?;
        Ok((deny_status, header))
    }
}

impl Default for CheckConfig {
    /// `/check` and `/page`, the account in `X-Account-Id`, blocked → `402`,
    /// no JWT, the billing pages exempt.
    fn default() -> Self {
        Self {
            path: "/check".into(),
            page_path: "/page".into(),
            account_header: "X-Account-Id".into(),
            deny_status: 402,
            jwt_algorithm: String::new(),
            jwt_key: Secret::default(),
            jwt_jwks: String::new(),
            jwt_issuer: String::new(),
            jwt_audience: String::new(),
            jwt_claim: "sub".into(),
            jwt_cookie: String::new(),
            exempt: vec!["/billing".into(), "/billing/**".into()],
        }
    }
}
