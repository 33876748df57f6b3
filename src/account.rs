//! Account ids: the app's own tenant id, validated before it reaches a key.

use std::borrow::Borrow;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The longest account id accepted, in bytes.
pub const MAX_ACCOUNT_ID_LEN: usize = 128;

/// A validated account id: 1 to 128 bytes of `[A-Za-z0-9._:@-]`.
///
/// The character set leaves out `{`, `}`, spaces and `*`, so an id can never
/// change the Redis hash tag or pattern of the keys built from it.
/// Cloning is cheap (a reference count).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccountId(Arc<str>);

/// Why a string is not an account id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidAccountId {
    /// The id is empty.
    #[error("account id is empty")]
    Empty,
    /// The id is longer than [`MAX_ACCOUNT_ID_LEN`] bytes.
    #[error("account id is {0} bytes long; at most 128 are allowed")]
    TooLong(usize),
    /// The id holds a character outside `[A-Za-z0-9._:@-]`.
    #[error("account id contains {0:?} at byte {1}; only A-Z a-z 0-9 . _ : @ - are allowed")]
    BadChar(char, usize),
}

impl AccountId {
    /// Validates `id` and wraps it.
    pub fn new(id: &str) -> Result<Self, InvalidAccountId> {
        validate(id)?;
        Ok(Self(Arc::from(id)))
    }

    /// Wraps `id`, which the caller has just [validated](validate) (the
    /// gate validates before it knows whether it needs an owned id).
    pub(crate) fn validated(id: &str) -> Self {
        debug_assert!(validate(id).is_ok(), "{id:?} was not validated");
        Self(Arc::from(id))
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The bytes an account id may hold, one lookup per byte (on every
/// gated request): ASCII letters and digits, `.`, `_`, `:`, `@`, `-`.
const ALLOWED: [bool; 256] = {
    let mut allowed = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        allowed[b] = c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b':' | b'@' | b'-');
        b += 1;
    }
    allowed
};

/// Checks that `id` is a valid account id without allocating.
pub fn validate(id: &str) -> Result<(), InvalidAccountId> {
    if id.is_empty() {
        return Err(InvalidAccountId::Empty);
    }
    if id.len() > MAX_ACCOUNT_ID_LEN {
        return Err(InvalidAccountId::TooLong(id.len()));
    }
    match id.bytes().position(|b| !ALLOWED[usize::from(b)]) {
        None => Ok(()),
        Some(at) => Err(InvalidAccountId::BadChar(
            id[at..].chars().next().unwrap_or('?'),
            at,
        )),
    }
}

impl fmt::Debug for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for AccountId {
    type Err = InvalidAccountId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl TryFrom<&str> for AccountId {
    type Error = InvalidAccountId;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        Self::new(s)
    }
}

impl AsRef<str> for AccountId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

// `Hash` and `Eq` are those of the inner `str`, so maps keyed by `AccountId`
// can be queried with a borrowed `&str` (no allocation on the hot path).
impl Borrow<str> for AccountId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl Serialize for AccountId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for AccountId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        AccountId::new(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_alphabet() {
        for ok in ["acct_1", "a", "user@example.com", "org:42.team-x", &"x".repeat(128)] {
            assert!(AccountId::new(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn refuses_key_injection_and_garbage() {
        assert_eq!(AccountId::new(""), Err(InvalidAccountId::Empty));
        assert_eq!(AccountId::new(&"x".repeat(129)), Err(InvalidAccountId::TooLong(129)));
        for (bad, ch, at) in [
            ("a}b", '}', 1),
            ("{a}", '{', 0),
            ("a b", ' ', 1),
            ("a*", '*', 1),
            ("a\nb", '\n', 1),
            ("é", 'é', 0),
            ("a/b", '/', 1),
        ] {
            assert_eq!(AccountId::new(bad), Err(InvalidAccountId::BadChar(ch, at)), "{bad:?}");
        }
        // Every ASCII byte, and U+0080 to U+00FF: exactly the documented alphabet passes.
        for b in 0..=255u8 {
            let documented = b.is_ascii_alphanumeric() || b".:_@-".contains(&b);
            assert_eq!(validate(&format!("a{}", char::from(b))).is_ok(), documented, "byte {b}");
        }
        let msg = AccountId::new("a b").unwrap_err().to_string();
        assert!(msg.contains("only A-Z a-z 0-9"), "{msg}");
    }
}
