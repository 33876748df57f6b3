//! Signed links: what a pay button or an e-mail may carry instead of an
//! account id.
//!
//! A link token binds one account, one purpose and an expiry with
//! HMAC-SHA256 under `links.secret` (shared by every instance):
//!
//! ```text
//! base64url("<purpose>:<expires, unix seconds>:<account>") "." base64url(mac)
//! ```
//!
//! A token is not a session. It says "whoever holds this may open the
//! billing portal of this one account until then", nothing else; it is
//! checked in constant time, and a token for one purpose is refused for
//! another.

// Reached from outside only through `__internals` (feature `test-util`).
#![cfg_attr(not(feature = "test-util"), allow(unreachable_pub))]
// Wholly used only with `stripe` (the pay endpoint verifies what the
// gate and the notices sign).
#![cfg_attr(not(feature = "stripe"), allow(dead_code, unreachable_pub))]

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use serde::Deserialize;

use crate::account::AccountId;
use crate::settings::{de_duration, ConfigError, Secret};

/// Where the pay endpoint is mounted (`stripe::with_pay_links`).
pub const PAY_PATH: &str = "/billing/pay";

/// Where the return endpoint is mounted (`stripe::with_pay_links`).
pub const RETURN_PATH: &str = "/billing/return";

/// The shortest `links.secret` accepted, in bytes.
pub(crate) const MIN_SECRET_LEN: usize = 32;

/// What a token may be used for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Purpose {
    /// Open the account's billing portal (`/billing/pay`).
    Pay,
    /// Come back from paying, or ask to be checked again (`/billing/return`).
    Return,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Purpose::Pay => "pay",
            Purpose::Return => "return",
        }
    }
}

/// Why a token was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LinkError {
    /// The token was altered, forged, or is for another purpose (`403`).
    #[error("this link is not valid")]
    Tampered,
    /// The token is authentic but past its expiry (`410`).
    #[error("this link has expired")]
    Expired {
        /// The account it named.
        account: AccountId,
    },
}

/// Why a `links.secret` was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("links.secret must be at least {MIN_SECRET_LEN} bytes (e.g. `openssl rand -hex 32`)")]
pub struct WeakSecret;

/// Signs and checks link tokens. Cheap to clone.
#[derive(Clone)]
pub struct LinkSigner {
    mac: Hmac<Sha256>,
    ttl: Duration,
}

impl std::fmt::Debug for LinkSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkSigner").field("ttl", &self.ttl).finish_non_exhaustive()
    }
}

impl LinkSigner {
    /// A signer with `secret` (at least [`MIN_SECRET_LEN`] bytes) whose
    /// tokens live for `ttl`.
    pub fn new(secret: &[u8], ttl: Duration) -> Result<Self, WeakSecret> {
        if secret.len() < MIN_SECRET_LEN {
            return Err(WeakSecret);
        }
        let mac = Hmac::<Sha256>::new_from_slice(secret).map_err(|_| WeakSecret)?;
        Ok(Self { mac, ttl })
    }

    /// A token for `account` and `purpose`, valid from `now` for the ttl.
    pub fn sign(&self, account: &str, purpose: Purpose, now: DateTime<Utc>) -> String {
        let ttl = i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX);
        let expires = now.timestamp().saturating_add(ttl);
        let payload = format!("{}:{expires}:{account}", purpose.as_str());
        let mut mac = self.mac.clone();
        mac.update(payload.as_bytes());
        let tag = mac.finalize().into_bytes();
        format!("{}.{}", URL_SAFE_NO_PAD.encode(payload), URL_SAFE_NO_PAD.encode(tag))
    }

    /// The account a token names, if it is authentic, for `purpose`, and
    /// not expired at `now`.
    pub fn verify(&self, token: &str, purpose: Purpose, now: DateTime<Utc>) -> Result<AccountId, LinkError> {
        if token.len() > 512 {
            return Err(LinkError::Tampered);
        }
        let (payload, tag) = token.split_once('.').ok_or(LinkError::Tampered)?;
        let payload = URL_SAFE_NO_PAD.decode(payload).map_err(|_| LinkError::Tampered)?;
        let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| LinkError::Tampered)?;
        let mut mac = self.mac.clone();
        mac.update(&payload);
        // Constant time (hmac's verify_slice), before anything is parsed.
        mac.verify_slice(&tag).map_err(|_| LinkError::Tampered)?;
        let payload = std::str::from_utf8(&payload).map_err(|_| LinkError::Tampered)?;
        let mut parts = payload.splitn(3, ':');
        let (Some(kind), Some(expires), Some(account)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(LinkError::Tampered);
        };
        if kind != purpose.as_str() {
            return Err(LinkError::Tampered);
        }
        let expires: i64 = expires.parse().map_err(|_| LinkError::Tampered)?;
        let account = AccountId::new(account).map_err(|_| LinkError::Tampered)?;
        if now.timestamp() >= expires {
            return Err(LinkError::Expired { account });
        }
        Ok(account)
    }
}

/// `[links]`: signed pay links. `Debug` hides the secret.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct LinksConfig {
    /// `secret`: the HMAC-SHA256 key of link tokens (at least 32 bytes,
    /// the same on every instance; `""` = no pay links).
    pub secret: Secret,
    /// `ttl`: how long a link stays valid.
    #[serde(deserialize_with = "de_duration")]
    pub ttl: Duration,
    /// `base_url`: the app's public origin, for links in e-mails (`""` =
    /// the origin of `stripe.portal_return_url`).
    pub base_url: String,
    /// `return_to`: where `/billing/return` redirects after verifying.
    pub return_to: String,
}

impl LinksConfig {
    /// The origin absolute links start with (e-mails, the portal's return
    /// URL): `links.base_url`, else the origin of `portal_return_url`.
    #[cfg_attr(not(any(feature = "stripe", feature = "notify-email", feature = "notify-webhook")), allow(dead_code))]
    pub(crate) fn origin(&self, portal_return_url: &str) -> Result<String, ConfigError> {
        let raw = if self.base_url.is_empty() { portal_return_url } else { &self.base_url }.trim();
        let bad = |message: &str| ConfigError::key("links.base_url", message);
        let uri: http::Uri = raw.parse().map_err(|_| bad("is not a URL (e.g. https://app.example.com)"))?;
        let (Some((scheme, host)), true) = (crate::href::scheme_and_host(raw), crate::href::is_safe(raw)) else {
            return Err(bad("must be an https URL (http only on loopback)"));
        };
        // The authority is the host and, at most, a port that is one:
        // `http::Uri` leaves `:99999` or `[::1]evil` for the caller to judge.
        let authority = uri.authority().map(|a| a.as_str().to_ascii_lowercase()).unwrap_or_default();
        let port = match authority.strip_prefix(host.as_str()) {
            Some("") => None,
            Some(rest) => Some(rest.strip_prefix(':').and_then(|p| p.parse::<u16>().ok()).ok_or_else(|| bad("has a port that is not one"))?),
            None => return Err(bad("is not a URL (e.g. https://app.example.com)")),
        };
        let default_port = if scheme == "https" { 443 } else { 80 };
        Ok(match port.filter(|p| *p != default_port) {
            Some(port) => format!("{scheme}://{host}:{port}"),
            None => format!("{scheme}://{host}"),
        })
    }

    /// The signer of pay links, when the billing portal is configured
    /// (`stripe.portal_return_url`, passed as `portal_return_url`);
    /// `Ok(None)` otherwise. A portal without `links.secret` is refused,
    /// naming the key.
    #[cfg_attr(not(any(feature = "stripe", feature = "notify-email", feature = "notify-webhook")), allow(dead_code))]
    pub(crate) fn signer(&self, portal_return_url: &str) -> Result<Option<LinkSigner>, ConfigError> {
        if portal_return_url.is_empty() {
            return Ok(None);
        }
        if self.secret.is_empty() {
            return Err(ConfigError::key("links.secret", "is needed for pay links (stripe.portal_return_url is set); set a random secret of at least 32 bytes, shared by every instance (PASTDUE_LINKS__SECRET=$(openssl rand -hex 32))"));
        }
        LinkSigner::new(self.secret.expose().as_bytes(), self.ttl)
            .map(Some)
            .map_err(|e| ConfigError::invalid("links.secret", e))
    }
}

impl Default for LinksConfig {
    /// No secret: pay links are off until one is set; links last 7 days.
    fn default() -> Self {
        Self { secret: Secret::default(), ttl: std::time::Duration::from_secs(7 * 86_400), base_url: String::new(), return_to: "/".into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> LinkSigner {
        LinkSigner::new(&[7u8; 32], Duration::from_secs(7 * 86_400)).unwrap()
    }

    #[test]
    fn tokens_bind_account_purpose_and_expiry() {
        let s = signer();
        let now = Utc::now();
        let token = s.sign("acme", Purpose::Pay, now);
        assert_eq!(s.verify(&token, Purpose::Pay, now).unwrap().as_str(), "acme");
        assert_eq!(
            s.verify(&token, Purpose::Pay, now + chrono::TimeDelta::days(7)),
            Err(LinkError::Expired { account: AccountId::new("acme").unwrap() })
        );
        // Another account's name in the payload, the old signature.
        let (_, tag) = token.split_once('.').unwrap();
        let forged = format!("{}.{tag}", URL_SAFE_NO_PAD.encode(format!("pay:{}:victim", now.timestamp() + 999)));
        assert_eq!(s.verify(&forged, Purpose::Pay, now), Err(LinkError::Tampered));
        // Another secret.
        let other = LinkSigner::new(&[8u8; 32], Duration::from_secs(60)).unwrap();
        assert_eq!(other.verify(&token, Purpose::Pay, now), Err(LinkError::Tampered));
        for junk in ["", ".", "a.b", "acme", &token[1..], &format!("{token}x")] {
            assert_eq!(s.verify(junk, Purpose::Pay, now), Err(LinkError::Tampered), "{junk}");
        }
        assert_eq!(LinkSigner::new(b"short", Duration::from_secs(1)).unwrap_err(), WeakSecret);
    }

    #[test]
    fn the_origin_is_scheme_host_and_a_real_port() {
        let origin = |base: &str| LinksConfig { base_url: base.into(), ..LinksConfig::default() }.origin("");
        assert_eq!(origin(" https://App.Example.com:443/x?y ").unwrap(), "https://app.example.com");
        assert_eq!(origin("https://app.example.com:8443/").unwrap(), "https://app.example.com:8443");
        assert_eq!(origin("http://[::1]:8080").unwrap(), "http://[::1]:8080");
        assert_eq!(origin("http://127.0.0.1/").unwrap(), "http://127.0.0.1");
        for bad in ["https://app.example.com:99999", "https://app.example.com:84a3", "http://[::1]evil", "http://evil.example", "ftp://x", "app.example.com"] {
            assert!(origin(bad).is_err(), "{bad}");
        }
    }

}
