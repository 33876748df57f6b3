//! Timestamped HMAC signatures, the scheme of `Stripe-Signature`: verified
//! on Stripe's webhooks, and used to sign pastdue's own outbound notices
//! (`Pastdue-Signature`). Pure: no I/O, the time is passed in.
//!
//! The header is `t=<unix seconds>,v1=<hex hmac>[,v1=…][,v0=…]`; the
//! signature is HMAC-SHA256 with the endpoint secret over `"{t}.{raw body}"`.

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::time::Duration;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// Most `v1` signatures one header may carry (Stripe sends one per active
/// secret; a flood of them is an attack on our CPU).
const MAX_SIGNATURES: usize = 8;

/// Why a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// No `Stripe-Signature` header.
    #[error("missing Stripe-Signature header")]
    Missing,
    /// The header is not `t=…,v1=…`.
    #[error("malformed Stripe-Signature header: {0}")]
    Malformed(&'static str),
    /// The timestamp is further from now than the tolerance.
    #[error("signature timestamp is {0} s away from now, beyond the tolerance")]
    Stale(i64),
    /// No `v1` value matches any configured secret.
    #[error("no signature matches the configured webhook secrets")]
    Mismatch,
    /// No secret is configured, so nothing can be verified.
    #[error("no webhook secret is configured (stripe.webhook_secret)")]
    NoSecret,
}

/// A parsed `Stripe-Signature` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureHeader {
    /// The signed timestamp.
    pub timestamp: i64,
    /// The `v1` signatures, decoded.
    pub v1: Vec<[u8; 32]>,
}

impl SignatureHeader {
    /// Parses the header. Unknown schemes (`v0`) are skipped; invalid hex in
    /// a `v1` is an error.
    pub fn parse(header: &str) -> Result<Self, SignatureError> {
        let mut timestamp = None;
        let mut v1 = Vec::new();
        for item in header.split(',') {
            let (k, v) = item.trim().split_once('=').ok_or(SignatureError::Malformed("expected key=value pairs"))?;
            match k {
                "t" => {
                    if timestamp.is_some() {
                        return Err(SignatureError::Malformed("more than one t="));
                    }
                    let t: i64 = v.parse().map_err(|_| SignatureError::Malformed("t= is not a number"))?;
                    timestamp = Some(t);
                }
                "v1" => {
                    if v1.len() >= MAX_SIGNATURES {
                        return Err(SignatureError::Malformed("too many v1 signatures"));
                    }
                    let mut sig = [0u8; 32];
                    hex::decode_to_slice(v, &mut sig).map_err(|_| SignatureError::Malformed("v1= is not 64 hex digits"))?;
                    v1.push(sig);
                }
                _ => {}
            }
        }
        let timestamp = timestamp.ok_or(SignatureError::Malformed("no t="))?;
        if v1.is_empty() {
            return Err(SignatureError::Malformed("no v1="));
        }
        Ok(Self { timestamp, v1 })
    }
}

fn mac(secret: &str, timestamp: i64, body: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The hex HMAC-SHA256 of `"{timestamp}.{body}"` under `secret`.
pub fn compute(secret: &str, timestamp: i64, body: &[u8]) -> String {
    hex::encode(mac(secret, timestamp, body).finalize().into_bytes())
}

/// A complete header value, `t=…,v1=…`, as Stripe would send it.
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    format!("t={timestamp},v1={}", compute(secret, timestamp, body))
}

/// Verifies `header` over `body` against any of `secrets`, with `tolerance`
/// on either side of `now`. Comparisons are constant-time.
pub fn verify(
    header: Option<&str>,
    body: &[u8],
    secrets: &[String],
    tolerance: Duration,
    now: DateTime<Utc>,
) -> Result<(), SignatureError> {
    if secrets.is_empty() {
        return Err(SignatureError::NoSecret);
    }
    let parsed = SignatureHeader::parse(header.ok_or(SignatureError::Missing)?)?;
    let skew = now.timestamp().saturating_sub(parsed.timestamp);
    if skew.unsigned_abs() > tolerance.as_secs() {
        return Err(SignatureError::Stale(skew));
    }
    let expected = secrets.iter().map(|secret| mac(secret, parsed.timestamp, body).finalize().into_bytes());
    if matches_any(expected, &parsed.v1) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// Whether any `presented` signature equals any `expected` one. Every pair
/// is compared, each in constant time, so the answer's timing says nothing
/// about which secret or signature matched, or how much of one did. Every
/// signature scheme here (Stripe's, Standard Webhooks', Paddle's) checks
/// through this.
pub(crate) fn matches_any<E: AsRef<[u8]>, P: AsRef<[u8]>>(expected: impl IntoIterator<Item = E>, presented: &[P]) -> bool {
    let mut matched = subtle::Choice::from(0);
    for e in expected {
        for p in presented {
            matched |= e.as_ref().ct_eq(p.as_ref());
        }
    }
    bool::from(matched)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    const SECRET: &str = "whsec_test_secret";

    fn at(t: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(t, 0).unwrap()
    }

    #[test]
    fn known_vector() {
        // Computed independently, by openssl and by Python's hmac:
        //   printf '1700000000.{"id":"evt_1"}' | openssl dgst -sha256 -hmac whsec_test_secret
        assert_eq!(
            compute(SECRET, 1_700_000_000, br#"{"id":"evt_1"}"#),
            "248a374f50f943a28b0f6ab50faf9a7e7e29b710fa26df9fb1618b9bf8ea9c9a"
        );
    }

    #[test]
    fn accepts_any_matching_v1_and_any_secret() {
        let body = br#"{"id":"evt_1"}"#;
        let good = compute("whsec_new", 1000, body);
        let header = format!("t=1000,v0=abc,v1={},v1={good}", "0".repeat(64));
        let secrets = ["whsec_old".to_owned(), "whsec_new".to_owned()];
        assert_eq!(verify(Some(&header), body, &secrets, Duration::from_secs(300), at(1000)), Ok(()));
    }

    #[test]
    fn refuses_everything_else() {
        let body = br#"{"id":"evt_1"}"#;
        let secrets = [SECRET.to_owned()];
        let tol = Duration::from_secs(300);
        let ok = sign(SECRET, 1000, body);
        assert_eq!(verify(Some(&ok), body, &secrets, tol, at(1300)), Ok(()));
        assert_eq!(verify(Some(&ok), body, &secrets, tol, at(700)), Ok(()), "clock behind by the tolerance");
        assert_eq!(verify(Some(&ok), body, &secrets, tol, at(1301)), Err(SignatureError::Stale(301)));
        assert_eq!(verify(Some(&ok), body, &secrets, tol, at(699)), Err(SignatureError::Stale(-301)));
        assert_eq!(verify(Some(&ok), b"{\"id\":\"evt_2\"}", &secrets, tol, at(1000)), Err(SignatureError::Mismatch));
        assert_eq!(verify(Some(&ok), body, &["whsec_other".into()], tol, at(1000)), Err(SignatureError::Mismatch));
        assert_eq!(verify(None, body, &secrets, tol, at(1000)), Err(SignatureError::Missing));
        assert_eq!(verify(Some(&ok), body, &[], tol, at(1000)), Err(SignatureError::NoSecret));
        for bad in ["", "t=1000", "v1=00", "t=x,v1=00", "t=1000,v1=zz", "garbage", "t=1,t=2,v1=00"] {
            assert!(matches!(verify(Some(bad), body, &secrets, tol, at(1000)), Err(SignatureError::Malformed(_))), "{bad:?}");
        }
        let many = format!("t=1000{}", format!(",v1={}", "0".repeat(64)).repeat(9));
        assert!(matches!(SignatureHeader::parse(&many), Err(SignatureError::Malformed(_))));
    }
}
