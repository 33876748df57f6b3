//! Finding the account a request belongs to.
//!
//! The built-in resolvers borrow from the request and allocate only when
//! they must decode (a percent-encoded query value, an upper-case host).
//! `Ok(None)` means "no account" (see `gate.missing_account`); an
//! [`Ambiguous`] request names more than one and is refused with a `400`.
//!
//! Each resolver reads its source the way the app's own extractor does, so
//! the gate and the handler can never disagree about whose request it is:
//! the query is decoded like axum's `Query`, hosts compare case-insensitively
//! and without a trailing dot, and a source that names the account twice
//! (`?account=a&account=b`, two `X-Account-Id` headers, two `account`
//! cookies) is ambiguous rather than "first one wins".

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use http::{Extensions, HeaderMap, HeaderName, Uri};

use crate::account::AccountId;

/// The parts of a request a resolver may look at.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'r> {
    /// The request URI.
    pub uri: &'r Uri,
    /// The request headers.
    pub headers: &'r HeaderMap,
    /// The request extensions (an auth layer's output lives here).
    pub extensions: &'r Extensions,
}

impl<'r> RequestView<'r> {
    /// A view of `req`.
    pub fn of<B>(req: &'r http::Request<B>) -> Self {
        Self { uri: req.uri(), headers: req.headers(), extensions: req.extensions() }
    }
}

/// A request that names its account more than once: refused (`400`), since
/// the gate and the app might each pick a different one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("ambiguous account: {0}")]
pub struct Ambiguous(pub &'static str);

/// What a resolver found: an account id, none, or an ambiguous request.
pub type Resolved<'r> = Result<Option<Cow<'r, str>>, Ambiguous>;

/// Resolves the account of a request.
pub trait ResolveAccount: Send + Sync + 'static {
    /// The account id, `Ok(None)` when the request has none, or
    /// [`Ambiguous`] when it names more than one.
    fn resolve<'r>(&self, req: &RequestView<'r>) -> Resolved<'r>;

    /// Tries `self`, then `other`.
    fn or<R: ResolveAccount>(self, other: R) -> Or<Self, R>
    where
        Self: Sized,
    {
        Or(self, other)
    }
}

impl<T: ResolveAccount + ?Sized> ResolveAccount for Arc<T> {
    fn resolve<'r>(&self, req: &RequestView<'r>) -> Resolved<'r> {
        (**self).resolve(req)
    }
}

/// Reads a header (default `X-Account-Id`).
///
/// **Any client can send this header.** Use it only behind a proxy or an
/// auth layer that sets it from a verified identity and strips the
/// client's own; otherwise use [`ExtensionResolver`].
#[derive(Debug, Clone)]
pub struct HeaderResolver(HeaderName);

impl HeaderResolver {
    /// Reads `name`.
    pub fn new(name: HeaderName) -> Self {
        Self(name)
    }
}

impl Default for HeaderResolver {
    fn default() -> Self {
        Self(HeaderName::from_static("x-account-id"))
    }
}

impl ResolveAccount for HeaderResolver {
    fn resolve<'r>(&self, req: &RequestView<'r>) -> Resolved<'r> {
        let mut values = req.headers.get_all(&self.0).iter();
        let Some(first) = values.next() else { return Ok(None) };
        if values.next().is_some() {
            return Err(Ambiguous("the account header is given more than once"));
        }
        // Visible ASCII and blanks only (`to_str`), so ASCII trimming is all.
        let v = first.to_str().map_or("", str::trim_ascii);
        Ok((!v.is_empty()).then_some(Cow::Borrowed(v)))
    }
}

/// Reads the [`AccountId`] an auth layer put into the request extensions.
#[derive(Debug, Clone, Copy, Default)]
pub struct ExtensionResolver;

impl ResolveAccount for ExtensionResolver {
    fn resolve<'r>(&self, req: &RequestView<'r>) -> Resolved<'r> {
        Ok(req.extensions.get::<AccountId>().map(|a| Cow::Borrowed(a.as_str())))
    }
}

/// Takes the first label of the `Host` under a base domain:
/// `acme.app.example` with base `app.example` → `acme`.
///
/// Hosts are case-insensitive and may end with a dot, so
/// `ACME.App.Example.` resolves to `acme` too: the label is lower-cased.
#[derive(Debug, Clone)]
pub struct SubdomainResolver {
    base: String,
}

impl SubdomainResolver {
    /// Accounts are subdomains of `base` (e.g. `"app.example.com"`).
    pub fn new(base: impl Into<String>) -> Self {
        Self { base: base.into().trim_start_matches('.').trim_end_matches('.').to_ascii_lowercase() }
    }

    fn label<'r>(&self, req: &RequestView<'r>) -> Option<&'r str> {
        let host = req
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri.host())?;
        let host = host.rsplit_once(':').map_or(host, |(h, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) { h } else { host }
        });
        // `acme.app.example.com.` is the same host as without the dot.
        let host = host.strip_suffix('.').unwrap_or(host);
        let prefix = host.len().checked_sub(self.base.len() + 1)?;
        let (sub, rest) = (host.get(..prefix)?, host.get(prefix..)?);
        if !rest.starts_with('.') || !rest[1..].eq_ignore_ascii_case(&self.base) {
            return None;
        }
        (!sub.is_empty() && !sub.contains('.')).then_some(sub)
    }
}

impl ResolveAccount for SubdomainResolver {
    fn resolve<'r>(&self, req: &RequestView<'r>) -> Resolved<'r> {
        Ok(self.label(req).map(|label| {
            if label.bytes().any(|b| b.is_ascii_uppercase()) {
                Cow::Owned(label.to_ascii_lowercase())
            } else {
                Cow::Borrowed(label)
            }
        }))
    }
}

/// Takes the path segment at `index` (0-based): with index 1,
/// `/accounts/acme/projects` → `acme`.
#[derive(Debug, Clone, Copy)]
pub struct PathSegmentResolver {
    index: usize,
}

impl PathSegmentResolver {
    /// The segment at `index`.
    pub fn new(index: usize) -> Self {
        Self { index }
    }
}

impl ResolveAccount for PathSegmentResolver {
    fn resolve<'r>(&self, req: &RequestView<'r>) -> Resolved<'r> {
        let seg = req.uri.path().trim_start_matches('/').split('/').nth(self.index);
        Ok(seg.filter(|s| !s.is_empty()).map(Cow::Borrowed))
    }
}

/// Reads a query parameter (`?account=acme`); for demos and links.
///
/// Names and values are decoded exactly as axum's `Query` decodes them
/// (`application/x-www-form-urlencoded`: `%6F` is `o`, `+` is a space), so
/// `?acc%6Funt=x` names the account `x` for the gate as for the handler. A
/// parameter given twice is [`Ambiguous`].
#[derive(Debug, Clone)]
pub struct QueryResolver(String);

impl QueryResolver {
    /// Reads the parameter `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Self(name.into())
    }
}

impl ResolveAccount for QueryResolver {
    fn resolve<'r>(&self, req: &RequestView<'r>) -> Resolved<'r> {
        let Some(query) = req.uri.query() else { return Ok(None) };
        let mut found = None;
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            if k == self.0.as_str() {
                if found.is_some() {
                    return Err(Ambiguous("the account query parameter is given more than once"));
                }
                found = Some(v);
            }
        }
        Ok(found.filter(|v| !v.is_empty()))
    }
}

/// Reads a cookie (`account=acme`), as [`cookie`] reads it.
#[derive(Debug, Clone)]
pub struct CookieResolver(String);

impl CookieResolver {
    /// Reads the cookie `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Self(name.into())
    }

    /// The cookie's name.
    pub fn name(&self) -> &str {
        &self.0
    }
}

impl ResolveAccount for CookieResolver {
    fn resolve<'r>(&self, req: &RequestView<'r>) -> Resolved<'r> {
        match cookie(req.headers, &self.0) {
            Ok(found) => Ok(found.map(Cow::Borrowed)),
            Err(CookieError::Repeated) => Err(Ambiguous("the account cookie is given more than once")),
            Err(CookieError::Unreadable) => Err(Ambiguous("the account cookie cannot be read")),
            Err(_) => Err(Ambiguous("another cookie is spelled so that some frameworks read it as the account cookie")),
        }
    }
}

/// Why a cookie cannot name one value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CookieError {
    /// The cookie is sent more than once (a sibling subdomain can plant a
    /// second cookie of the same name): ambiguous, not "first one wins".
    #[error("the cookie is given more than once")]
    Repeated,
    /// The cookie is there, but its value is not text.
    #[error("the cookie's value cannot be read")]
    Unreadable,
    /// Another cookie's name is one some frameworks read as this one
    /// (`jwt\u{a0}` trimmed by Python, `access.token` renamed by PHP).
    #[error("another cookie is spelled so that some frameworks read it as this one")]
    Disguised,
}

/// The value of the cookie `name` in every `Cookie` header of `headers`,
/// read the way mainstream frameworks read it (Werkzeug/Flask, Express's
/// `cookie`, Django, Rails), so the gate and the app behind it always see
/// the same cookie:
///
/// - pairs are split at `;`, each at its first `=`; names and values are
///   trimmed of blanks (`jwt =x` is the cookie `jwt`), a value in double
///   quotes loses them;
/// - a pair that is not `name=value`, or has bytes that are not UTF-8 (a
///   Latin-1 `lang=é`), is skipped without discarding the rest of the
///   header;
/// - the cookie given twice is [`CookieError::Repeated`], and a value of
///   its own that is not UTF-8 [`CookieError::Unreadable`]: neither is
///   ever "no cookie".
///
/// `Ok(None)` when no pair is named `name`, or its value is empty.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h str>, CookieError> {
    let mut found = None;
    for header in headers.get_all(http::header::COOKIE) {
        for pair in header.as_bytes().split(|b| *b == b';') {
            let Some(eq) = pair.iter().position(|b| *b == b'=') else { continue };
            let pair_name = pair[..eq].trim_ascii();
            if pair_name != name.as_bytes() {
                // Only a name with such bytes can be read differently.
                let odd = pair_name.iter().any(|b| *b >= 0x80 || matches!(b, b'.' | b' ' | b'[' | b'%'));
                if odd && read_as(pair_name, name) {
                    return Err(CookieError::Disguised);
                }
                continue;
            }
            if found.is_some() {
                return Err(CookieError::Repeated);
            }
            let value = std::str::from_utf8(pair[eq + 1..].trim_ascii()).map_err(|_| CookieError::Unreadable)?;
            let value = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(value);
            found = Some(value);
        }
    }
    Ok(found.filter(|v| !v.is_empty()))
}

/// Whether some framework reads the cookie name `raw` as `name`: Python's
/// `str.strip()` trims Unicode blanks (`jwt\u{a0}`, read as UTF-8 by
/// Werkzeug and as Latin-1 by Starlette), PHP turns `.`, ` ` and `[` into
/// `_`, old Rack percent-decodes names.
fn read_as(raw: &[u8], name: &str) -> bool {
    let latin1: String = raw.iter().map(|b| char::from(*b)).collect();
    let utf8 = String::from_utf8_lossy(raw);
    let decoded = percent_encoding::percent_decode(raw).decode_utf8_lossy();
    let read = |spelled: &str| {
        let trimmed = spelled.trim_matches(char::is_whitespace);
        trimmed == name || trimmed.replace(['.', ' ', '['], "_") == name
    };
    read(&latin1) || read(&utf8) || read(&decoded)
}

/// A closure: anything the built-in resolvers do not cover.
pub struct FnResolver<F>(F);

/// Wraps `f` as a resolver.
pub fn from_fn<F>(f: F) -> FnResolver<F>
where
    F: Fn(&RequestView<'_>) -> Option<String> + Send + Sync + 'static,
{
    FnResolver(f)
}

impl<F> fmt::Debug for FnResolver<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FnResolver")
    }
}

impl<F> ResolveAccount for FnResolver<F>
where
    F: Fn(&RequestView<'_>) -> Option<String> + Send + Sync + 'static,
{
    fn resolve<'r>(&self, req: &RequestView<'r>) -> Resolved<'r> {
        Ok((self.0)(req).map(Cow::Owned))
    }
}

/// `a.or(b)`: the first resolver that finds an account wins; an ambiguous
/// answer from `a` is final (it never falls through to `b`).
#[derive(Debug, Clone)]
pub struct Or<A, B>(A, B);

impl<A: ResolveAccount, B: ResolveAccount> ResolveAccount for Or<A, B> {
    fn resolve<'r>(&self, req: &RequestView<'r>) -> Resolved<'r> {
        match self.0.resolve(req)? {
            Some(found) => Ok(Some(found)),
            None => self.1.resolve(req),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(r: &dyn ResolveAccount, req: &http::Request<()>) -> Option<String> {
        r.resolve(&RequestView::of(req)).expect("not ambiguous").map(Cow::into_owned)
    }

    fn get(uri: &str) -> http::request::Builder {
        http::Request::get(uri)
    }

    #[test]
    fn each_resolver_finds_its_account() {
        let req = get("/x").header("x-account-id", " acme ").body(()).unwrap();
        assert_eq!(resolve(&HeaderResolver::default(), &req).as_deref(), Some("acme"));
        assert_eq!(resolve(&HeaderResolver::default(), &get("/").body(()).unwrap()), None);

        let mut req = get("/").body(()).unwrap();
        req.extensions_mut().insert(AccountId::new("from-auth").unwrap());
        assert_eq!(resolve(&ExtensionResolver, &req).as_deref(), Some("from-auth"));

        let sub = SubdomainResolver::new("app.example.com");
        for (host, want) in [
            ("acme.app.example.com", Some("acme")),
            ("ACME.App.Example.com:8443", Some("acme")),
            ("acme.app.example.com.", Some("acme")),
            ("Acme.APP.example.com.:443", Some("acme")),
            ("app.example.com", None),
            ("a.b.app.example.com", None),
            ("acme.evil-app.example.com", None),
            ("acmeapp.example.com", None),
        ] {
            let req = get("/").header("host", host).body(()).unwrap();
            assert_eq!(resolve(&sub, &req).as_deref(), want, "{host}");
        }

        let seg = PathSegmentResolver::new(1);
        assert_eq!(resolve(&seg, &get("/accounts/acme/projects").body(()).unwrap()).as_deref(), Some("acme"));
        assert_eq!(resolve(&seg, &get("/accounts").body(()).unwrap()), None);

        let q = QueryResolver::new("account");
        assert_eq!(resolve(&q, &get("/?x=1&account=acme").body(()).unwrap()).as_deref(), Some("acme"));
        assert_eq!(resolve(&q, &get("/?accountx=acme").body(()).unwrap()), None);

        // Decoded like axum's `Query`: the handler would see these too.
        assert_eq!(resolve(&q, &get("/?acc%6Funt=victim").body(()).unwrap()).as_deref(), Some("victim"));
        assert_eq!(resolve(&q, &get("/?account=a%40b").body(()).unwrap()).as_deref(), Some("a@b"));
        for twice in ["/?account=paying&account=victim", "/?account=paying&acc%6Funt=victim", "/?account=&account=x"] {
            let req = get(twice).body(()).unwrap();
            assert_eq!(q.resolve(&RequestView::of(&req)), Err(Ambiguous("the account query parameter is given more than once")), "{twice}");
        }

        let c = CookieResolver::new("account");
        let req = get("/").header("cookie", "account=a").header("cookie", "account=b").body(()).unwrap();
        assert!(c.resolve(&RequestView::of(&req)).is_err());
        let req = get("/").header("x-account-id", "a").header("x-account-id", "b").body(()).unwrap();
        assert!(HeaderResolver::default().resolve(&RequestView::of(&req)).is_err());
        let req = get("/").header("cookie", "theme=dark; account=acme").body(()).unwrap();
        assert_eq!(resolve(&c, &req).as_deref(), Some("acme"));

        let chain = HeaderResolver::default().or(q).or(c);
        let req = get("/?account=q").header("cookie", "account=c").body(()).unwrap();
        assert_eq!(resolve(&chain, &req).as_deref(), Some("q"));

        let f = from_fn(|r| r.headers.get("x-org").map(|v| format!("org:{}", v.to_str().unwrap())));
        assert_eq!(resolve(&f, &get("/").header("x-org", "7").body(()).unwrap()).as_deref(), Some("org:7"));
    }

    #[test]
    fn cookies_read_as_frameworks_read_them() {
        let headers = |values: &[&[u8]]| {
            let mut h = HeaderMap::new();
            for v in values {
                h.append(http::header::COOKIE, http::HeaderValue::from_bytes(v).unwrap());
            }
            h
        };
        // What Werkzeug (Flask), Express and Django read as jwt=tok.
        for header in [
            &b"jwt=tok"[..],
            b"jwt =tok",
            b" jwt = tok ",
            b"jwt=\"tok\"",
            b"lang=\xe9; jwt=tok",
            b"lang=\xc3\xa9; jwt=tok",
            b"broken; jwt=tok",
            b"=x; jwt=tok;",
            b"a=1;jwt=tok;b=2",
        ] {
            assert_eq!(cookie(&headers(&[header]), "jwt"), Ok(Some("tok")), "{}", String::from_utf8_lossy(header));
        }
        assert_eq!(cookie(&headers(&[b"a=1", b"jwt=tok"]), "jwt"), Ok(Some("tok")), "over several headers");
        assert_eq!(cookie(&headers(&[b"jwtx=tok; xjwt=tok"]), "jwt"), Ok(None));
        assert_eq!(cookie(&headers(&[b"jwt="]), "jwt"), Ok(None));
        assert_eq!(cookie(&headers(&[b"jwt=a; jwt =b"]), "jwt"), Err(CookieError::Repeated));
        assert_eq!(cookie(&headers(&[b"jwt=a", b"jwt=a"]), "jwt"), Err(CookieError::Repeated));
        assert_eq!(cookie(&headers(&[b"jwt=\xe9t"]), "jwt"), Err(CookieError::Unreadable));
        // Names some framework reads as `jwt` (or `access_token`) while a
        // plain reading does not: refused, whatever the order.
        for disguised in [&b"jwt\xc2\xa0=S; jwt=G"[..], b"jwt=G; jwt\xc2\xa0=S", b"jwt=G; jwt\xa0=S", b"%6Awt=S; jwt=G", b"jwt\xe3\x80\x80=S"] {
            assert_eq!(cookie(&headers(&[disguised]), "jwt"), Err(CookieError::Disguised), "{}", String::from_utf8_lossy(disguised));
        }
        assert_eq!(cookie(&headers(&[b"access.token=S; access_token=G"]), "access_token"), Err(CookieError::Disguised));
        assert_eq!(cookie(&headers(&[b"access[token=S"]), "access_token"), Err(CookieError::Disguised));
    }
}
