//! The Standard Webhooks signature: `webhook-signature` holds one or more
//! space-separated `v1,<base64 HMAC-SHA256>` over `"{id}.{timestamp}.{body}"`,
//! keyed with the secret's bytes (`whsec_<base64>`). Pure: the time is
//! passed in.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Most signatures one header may carry (one per active secret; a flood
/// of them is an attack on our CPU).
const MAX_SIGNATURES: usize = 8;

/// Why a delivery's signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// A `webhook-id`, `webhook-timestamp` or `webhook-signature` header is missing.
    #[error("missing {0} header")]
    Missing(&'static str),
    /// A header is not what the standard says.
    #[error("malformed {0} header")]
    Malformed(&'static str),
    /// The timestamp is further from now than the tolerance.
    #[error("webhook-timestamp is {0} s away from now, beyond the tolerance")]
    Stale(i64),
    /// No `v1` signature matches any configured secret.
    #[error("no signature matches the configured secrets")]
    Mismatch,
    /// A configured secret is not `whsec_<base64>` of at least 24 bytes.
    #[error("a configured secret is not whsec_<base64> of at least 24 bytes")]
    BadSecret,
}

/// The shortest key accepted, in bytes (the standard's secrets have 24 to 64).
pub const MIN_KEY_BYTES: usize = 24;

/// The key bytes of a `whsec_<base64>` secret: at least [`MIN_KEY_BYTES`]
/// (an empty or short key would let anyone sign).
pub fn key(secret: &str) -> Result<Vec<u8>, SignatureError> {
    STANDARD.decode(secret.strip_prefix("whsec_").unwrap_or(secret)).ok().filter(|k| k.len() >= MIN_KEY_BYTES).ok_or(SignatureError::BadSecret)
}

/// `v1,<base64>`: the signature of `body` with `key`.
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    format!("v1,{}", STANDARD.encode(mac(key, id, timestamp, body)))
}

fn mac(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    m.update(id.as_bytes());
    m.update(b".");
    m.update(timestamp.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    m.finalize().into_bytes().to_vec()
}

/// Checks a delivery: `timestamp` within `tolerance` of `now`, and one of
/// the `signatures` made with one of `keys`, compared in constant time.
pub fn verify(keys: &[Vec<u8>], id: &str, timestamp: &str, signatures: &str, body: &[u8], now: DateTime<Utc>, tolerance: Duration) -> Result<(), SignatureError> {
    if id.is_empty() || id.len() > 255 || !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(SignatureError::Malformed("webhook-id"));
    }
    let ts: i64 = timestamp.trim().parse().map_err(|_| SignatureError::Malformed("webhook-timestamp"))?;
    let skew = now.timestamp().saturating_sub(ts);
    if skew.unsigned_abs() > tolerance.as_secs() {
        return Err(SignatureError::Stale(skew));
    }
    let presented: Vec<Vec<u8>> = signatures
        .split(' ')
        .filter_map(|s| s.split_once(','))
        .filter(|(version, _)| *version == "v1")
        .take(MAX_SIGNATURES)
        .filter_map(|(_, sig)| STANDARD.decode(sig).ok())
        .collect();
    if presented.is_empty() {
        return Err(SignatureError::Malformed("webhook-signature"));
    }
    if crate::signature::matches_any(keys.iter().map(|key| mac(key, id, ts, body)), &presented) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_standards_own_example_verifies() {
        // From the Standard Webhooks specification's test vectors.
        let key = key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        let sig = sign(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body);
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        let now = DateTime::from_timestamp(1614265330 + 10, 0).unwrap();
        let tol = Duration::from_secs(300);
        let keys = [key];
        assert_eq!(verify(&keys, "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", &format!("v1,bm90IGl0 {sig}"), body, now, tol), Ok(()));
        assert_eq!(verify(&keys, "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", &sig, b"{}", now, tol), Err(SignatureError::Mismatch));
        assert_eq!(verify(&keys, "msg_other", "1614265330", &sig, body, now, tol), Err(SignatureError::Mismatch));
        let late = DateTime::from_timestamp(1614265330 + 301, 0).unwrap();
        assert!(matches!(verify(&keys, "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", &sig, body, late, tol), Err(SignatureError::Stale(_))));
        assert_eq!(verify(&keys, "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", "v2,abc", body, now, tol), Err(SignatureError::Malformed("webhook-signature")));
    }
}
