//! The account from a verified JWT (`check.jwt_*`).
//!
//! The token comes from `Authorization: Bearer …`, else from the cookie
//! `check.jwt_cookie`. Its signature (HS256 with a shared secret, RS256 or
//! ES256 with a PEM public key or a local JWKS file), `exp`, `iss` and `aud`
//! are checked by `jsonwebtoken`, and `nbf` when the token has one; the
//! account is the claim `check.jwt_claim`. No token means no account (the
//! request passes, like the layer); a token that fails any check is
//! refused with `401` — never taken as "no account", or a forged token
//! would open the gate. The cookie is read the way the app's framework
//! reads it ([`crate::gate::cookie`]), and a request with both a bearer
//! token and the cookie is refused when they name different accounts.

use axum::body::Body;
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use crate::gate::CookieError;
use super::CheckConfig;
use crate::settings::ConfigError;

/// Shortest accepted HS256 secret, in bytes.
const MIN_SECRET_LEN: usize = 32;

/// Verifies tokens and reads the account claim.
pub struct JwtVerifier {
    keys: Keys,
    validation: Validation,
    claim: String,
    /// The cookie carrying a token (`check.jwt_cookie`).
    cookie: Option<String>,
}

enum Keys {
    One(DecodingKey),
    /// From a JWKS file, by `kid`.
    Set(Vec<(String, DecodingKey)>),
}

/// A token that was present and failed a check.
#[derive(Debug)]
pub struct Refused(&'static str);

impl Refused {
    /// A token whose account claim cannot be an account id.
    pub const BAD_CLAIM: Refused = Refused("the token's account claim is not a usable account id");

    /// `401` with a problem+json body and `WWW-Authenticate`.
    pub fn response(&self) -> Response<Body> {
        let body = serde_json::json!({
            "type": "about:blank",
            "title": "Invalid token",
            "status": 401,
            "detail": self.0,
        });
        let mut res = Response::new(Body::from(body.to_string()));
        *res.status_mut() = StatusCode::UNAUTHORIZED;
        let h = res.headers_mut();
        h.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        h.insert(
            http::header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer error=\"invalid_token\""),
        );
        res
    }
}

impl JwtVerifier {
    /// The verifier `[check]` describes; `None` when `jwt_algorithm` is
    /// empty. Reads key files now, so a missing or bad key is refused at
    /// start-up, naming the key.
    pub fn new(config: &CheckConfig) -> Result<Option<Self>, ConfigError> {
        let key = |key: &str, message: String| ConfigError::key(format!("check.{key}"), message);
        let algorithm = match config.jwt_algorithm.as_str() {
            "" => return Ok(None),
            "HS256" => Algorithm::HS256,
            "RS256" => Algorithm::RS256,
            "ES256" => Algorithm::ES256,
            other => {
                return Err(key(
                    "jwt_algorithm",
                    format!("{other:?} is not one of HS256, RS256, ES256"),
                ))
            }
        };
        for (name, value) in [
            ("jwt_issuer", &config.jwt_issuer),
            ("jwt_audience", &config.jwt_audience),
            ("jwt_claim", &config.jwt_claim),
        ] {
            if value.is_empty() {
                return Err(key(name, "must be set when check.jwt_algorithm is".into()));
            }
        }
        let secret = config.jwt_key.expose();
        let keys = match (algorithm, secret.is_empty(), config.jwt_jwks.is_empty()) {
            (_, false, false) => {
                return Err(key(
                    "jwt_jwks",
                    "set either check.jwt_key or check.jwt_jwks, not both".into(),
                ))
            }
            (_, true, true) => {
                return Err(key(
                    "jwt_key",
                    "must be set (or check.jwt_jwks) when check.jwt_algorithm is".into(),
                ))
            }
            (Algorithm::HS256, false, true) if secret.len() < MIN_SECRET_LEN => {
                return Err(key(
                    "jwt_key",
                    format!("an HS256 secret must be at least {MIN_SECRET_LEN} bytes"),
                ));
            }
            (Algorithm::HS256, false, true) => {
                Keys::One(DecodingKey::from_secret(secret.as_bytes()))
            }
            (Algorithm::HS256, true, false) => {
                return Err(key(
                    "jwt_jwks",
                    "HS256 takes its secret in check.jwt_key".into(),
                ))
            }
            (_, false, true) => {
                let pem = std::fs::read(secret).map_err(|e| {
                    key(
                        "jwt_key",
                        format!("cannot read the PEM file {secret:?}: {e}"),
                    )
                })?;
                let decoded = if algorithm == Algorithm::RS256 {
                    DecodingKey::from_rsa_pem(&pem)
                } else {
                    DecodingKey::from_ec_pem(&pem)
                };
                Keys::One(decoded.map_err(|e| {
                    key(
                        "jwt_key",
                        format!("{secret:?} is not a {algorithm:?} public key: {e}"),
                    )
                })?)
            }
            (_, true, false) => {
                Keys::Set(read_jwks(&config.jwt_jwks, algorithm).map_err(|m| key("jwt_jwks", m))?)
            }
        };
        let mut validation = Validation::new(algorithm);
        validation.set_issuer(&[&config.jwt_issuer]);
        validation.set_audience(&[&config.jwt_audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.validate_nbf = true;
        validation.leeway = 30;
        let cookie = (!config.jwt_cookie.is_empty()).then(|| config.jwt_cookie.clone());
        Ok(Some(Self {
            keys,
            validation,
            claim: config.jwt_claim.clone(),
            cookie,
        }))
    }

    /// The account the request's tokens name: `Ok(None)` without a token,
    /// [`Refused`] for a token that fails any check. With both a bearer
    /// token and the cookie, both must verify and name the same account:
    /// the app behind may read either.
    pub fn account(&self, headers: &HeaderMap) -> Result<Option<String>, Refused> {
        let bearer = self.bearer(headers)?.map(|t| self.verify(t)).transpose()?;
        let cookie = self.cookie(headers)?.map(|t| self.verify(t)).transpose()?;
        match (bearer, cookie) {
            (Some(b), Some(c)) if b != c => {
                Err(Refused("the bearer token and the token cookie name different accounts"))
            }
            (b, c) => Ok(b.or(c)),
        }
    }

    /// The account claim of a token that passes every check.
    fn verify(&self, token: &str) -> Result<String, Refused> {
        let key = match &self.keys {
            Keys::One(key) => key,
            Keys::Set(keys) => {
                let header = jsonwebtoken::decode_header(token)
                    .map_err(|_| Refused("the token is malformed"))?;
                let kid = header.kid.ok_or(Refused("the token names no key (kid)"))?;
                keys.iter()
                    .find(|(k, _)| *k == kid)
                    .map(|(_, key)| key)
                    .ok_or(Refused("the token's key (kid) is unknown"))?
            }
        };
        let data = jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(
            token,
            key,
            &self.validation,
        )
        .map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            Refused(match e.kind() {
                ErrorKind::ExpiredSignature => "the token has expired",
                ErrorKind::ImmatureSignature => "the token is not valid yet (nbf)",
                ErrorKind::InvalidIssuer => "the token is for another issuer",
                ErrorKind::InvalidAudience => "the token is for another audience",
                ErrorKind::InvalidSignature => "the token's signature does not verify",
                ErrorKind::InvalidAlgorithm => "the token uses another algorithm",
                ErrorKind::MissingRequiredClaim(_) => "the token lacks exp, iss or aud",
                _ => "the token is invalid",
            })
        })?;
        match data.claims.get(&self.claim) {
            Some(serde_json::Value::String(s)) if !s.is_empty() => Ok(s.clone()),
            Some(serde_json::Value::Number(n)) => Ok(n.to_string()),
            _ => Err(Refused("the token does not carry the account claim")),
        }
    }

    /// The bearer token, if the request has an `Authorization` header.
    fn bearer<'h>(&self, headers: &'h HeaderMap) -> Result<Option<&'h str>, Refused> {
        let mut bearer = headers.get_all(http::header::AUTHORIZATION).iter();
        let Some(auth) = bearer.next() else { return Ok(None) };
        if bearer.next().is_some() {
            return Err(Refused("more than one Authorization header"));
        }
        let auth = auth
            .to_str()
            .map_err(|_| Refused("the Authorization header is not text"))?;
        match auth.split_once(' ') {
            Some((scheme, token))
                if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
            {
                Ok(Some(token.trim()))
            }
            _ => Err(Refused("the Authorization header is not a bearer token")),
        }
    }

    /// The cookie's token, read as the app's framework reads cookies
    /// ([`crate::gate::cookie`]); a cookie header that names it twice, or
    /// with a value that is not text, is refused — never "no token".
    fn cookie<'h>(&self, headers: &'h HeaderMap) -> Result<Option<&'h str>, Refused> {
        let Some(name) = &self.cookie else { return Ok(None) };
        crate::gate::cookie(headers, name).map_err(|e| match e {
            CookieError::Repeated => Refused("the token cookie is given more than once"),
            CookieError::Unreadable => Refused("the token cookie cannot be read"),
            _ => Refused("another cookie is spelled so that some frameworks read it as the token cookie"),
        })
    }
}

/// The keys of a JWKS file usable with `algorithm`, by `kid`.
fn read_jwks(path: &str, algorithm: Algorithm) -> Result<Vec<(String, DecodingKey)>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the JWKS file {path:?}: {e}"))?;
    let set: JwkSet =
        serde_json::from_str(&text).map_err(|e| format!("{path:?} is not a JWKS document: {e}"))?;
    let mut keys = Vec::new();
    for jwk in &set.keys {
        let Some(kid) = jwk.common.key_id.clone() else {
            continue;
        };
        if let Ok(key) = DecodingKey::from_jwk(jwk) {
            if key_fits(&key, algorithm) {
                keys.push((kid, key));
            }
        }
    }
    if keys.is_empty() {
        return Err(format!("{path:?} holds no {algorithm:?} key with a kid"));
    }
    Ok(keys)
}

fn key_fits(key: &DecodingKey, algorithm: Algorithm) -> bool {
    key.family() == algorithm.family()
}
