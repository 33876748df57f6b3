//! Paddle's signature: `Paddle-Signature: ts=<unix seconds>;h1=<hex>`,
//! where `h1` is the HMAC-SHA256 of `"{ts}:{raw body}"` keyed with the
//! notification destination's secret key (its UTF-8 bytes). During a
//! rotation a header may carry several `h1`. Pure: the time is passed in.
//!
//! Accepts exactly what Paddle's official SDKs accept, and no more: one
//! `ts`, lower-case hex `h1`s, no other keys, and a timestamp within the
//! tolerance either way (the SDKs check 5 seconds).

use std::time::Duration;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Most `h1` values one header may carry (one per active secret; a flood
/// of them is an attack on our CPU).
const MAX_SIGNATURES: usize = 8;

/// Why a notification's signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// No `Paddle-Signature` header.
    #[error("missing Paddle-Signature header")]
    Missing,
    /// The header is not `ts=…;h1=…`.
    #[error("malformed Paddle-Signature header")]
    Malformed,
    /// The timestamp is further from now than the tolerance.
    #[error("the Paddle-Signature timestamp is {0} s away from now, beyond the tolerance")]
    Stale(i64),
    /// No `h1` matches any configured secret.
    #[error("no signature matches the configured secrets")]
    Mismatch,
}

fn mac(secret: &str, ts: i64, body: &[u8]) -> String {
    let mut m = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    m.update(ts.to_string().as_bytes());
    m.update(b":");
    m.update(body);
    hex::encode(m.finalize().into_bytes())
}

/// The header Paddle sends for `body` at `ts`, signed with `secret`.
pub fn sign(secret: &str, ts: i64, body: &[u8]) -> String {
    format!("ts={ts};h1={}", mac(secret, ts, body))
}

/// Checks `header` for `body` at `now`: its `ts` within `tolerance`, and
/// one of its `h1` made with one of `secrets`, compared in constant time.
pub fn verify(secrets: &[String], header: &str, body: &[u8], now: DateTime<Utc>, tolerance: Duration) -> Result<(), SignatureError> {
    let mut ts = None;
    let mut presented = Vec::new();
    for pair in header.split(';') {
        let (key, value) = pair.split_once('=').ok_or(SignatureError::Malformed)?;
        match key {
            "ts" if ts.is_none() && !value.is_empty() && value.len() <= 12 && value.bytes().all(|b| b.is_ascii_digit()) => {
                ts = Some(value.parse::<i64>().map_err(|_| SignatureError::Malformed)?);
            }
            "h1" if value.len() == 64 && value.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) => {
                if presented.len() < MAX_SIGNATURES {
                    presented.push(value);
                }
            }
            _ => return Err(SignatureError::Malformed),
        }
    }
    let ts = ts.ok_or(SignatureError::Malformed)?;
    if presented.is_empty() {
        return Err(SignatureError::Malformed);
    }
    // Milliseconds: "5 s" means what the SDKs mean by it (now > ts + 5).
    let skew_ms = now.timestamp_millis().saturating_sub(ts.saturating_mul(1000));
    if skew_ms.unsigned_abs() > tolerance.as_millis().min(u64::MAX as u128) as u64 {
        return Err(SignatureError::Stale(skew_ms / 1000));
    }
    if crate::signature::matches_any(secrets.iter().map(|secret| mac(secret, ts, body)), &presented) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_and_verifies_with_rotation_and_tolerance() {
        let secrets = vec!["pdl_ntfset_old".to_owned(), "pdl_ntfset_new".to_owned()];
        let body = br#"{"event_id":"evt_1"}"#;
        let at = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let header = sign("pdl_ntfset_new", at.timestamp(), body);
        let tol = Duration::from_secs(5);
        assert_eq!(verify(&secrets, &header, body, at, tol), Ok(()));
        // Two h1 during a rotation: either may match.
        let both = format!("{header};h1={}", mac("pdl_ntfset_gone", at.timestamp(), body));
        assert_eq!(verify(&secrets, &both, body, at, tol), Ok(()));
        assert_eq!(verify(&secrets, &header, b"{}", at, tol), Err(SignatureError::Mismatch));
        assert_eq!(verify(&["other".into()], &header, body, at, tol), Err(SignatureError::Mismatch));
        let late = at + chrono::Duration::milliseconds(5_001);
        assert!(matches!(verify(&secrets, &header, body, late, tol), Err(SignatureError::Stale(_))));
        assert_eq!(verify(&secrets, &header, body, at + chrono::Duration::seconds(5), tol), Ok(()));
        for bad in ["", "ts=1", "h1=00", "ts=x;h1=ab", &header.to_uppercase(), &format!("{header};v2=abc"), &format!("ts=1;{header}")] {
            assert_eq!(verify(&secrets, bad, body, at, tol), Err(SignatureError::Malformed), "{bad}");
        }
    }
}
