//! Finding the account a request belongs to.
//!
//! The built-in resolvers borrow from the request and never allocate.
//! Returning `None` means "no account": the request passes untouched.

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

/// Resolves the account of a request.
pub trait ResolveAccount: Send + Sync + 'static {
    /// The account id, or `None` when the request has none.
    fn resolve<'r>(&self, req: &RequestView<'r>) -> Option<Cow<'r, str>>;

    /// Tries `self`, then `other`.
    fn or<R: ResolveAccount>(self, other: R) -> Or<Self, R>
    where
        Self: Sized,
    {
        Or(self, other)
    }
}

impl<T: ResolveAccount + ?Sized> ResolveAccount for Arc<T> {
    fn resolve<'r>(&self, req: &RequestView<'r>) -> Option<Cow<'r, str>> {
        (**self).resolve(req)
    }
}

/// Reads a header (default `X-Account-Id`).
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
    fn resolve<'r>(&self, req: &RequestView<'r>) -> Option<Cow<'r, str>> {
        let v = req.headers.get(&self.0)?.to_str().ok()?.trim();
        (!v.is_empty()).then_some(Cow::Borrowed(v))
    }
}

/// Reads the [`AccountId`] an auth layer put into the request extensions.
#[derive(Debug, Clone, Copy, Default)]
pub struct ExtensionResolver;

impl ResolveAccount for ExtensionResolver {
    fn resolve<'r>(&self, req: &RequestView<'r>) -> Option<Cow<'r, str>> {
        req.extensions.get::<AccountId>().map(|a| Cow::Borrowed(a.as_str()))
    }
}

/// Takes the first label of the `Host` under a base domain:
/// `acme.app.example` with base `app.example` → `acme`.
#[derive(Debug, Clone)]
pub struct SubdomainResolver {
    base: String,
}

impl SubdomainResolver {
    /// Accounts are subdomains of `base` (e.g. `"app.example.com"`).
    pub fn new(base: impl Into<String>) -> Self {
        Self { base: base.into().trim_start_matches('.').to_ascii_lowercase() }
    }
}

impl ResolveAccount for SubdomainResolver {
    fn resolve<'r>(&self, req: &RequestView<'r>) -> Option<Cow<'r, str>> {
        let host = req
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri.host())?;
        let host = host.rsplit_once(':').map_or(host, |(h, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) { h } else { host }
        });
        let prefix = host.len().checked_sub(self.base.len() + 1)?;
        let (sub, rest) = host.split_at(prefix);
        if !rest.starts_with('.') || !rest[1..].eq_ignore_ascii_case(&self.base) {
            return None;
        }
        let label = sub.rsplit('.').next()?;
        (!label.is_empty() && !sub.contains('.')).then_some(Cow::Borrowed(label))
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
    fn resolve<'r>(&self, req: &RequestView<'r>) -> Option<Cow<'r, str>> {
        let seg = req.uri.path().trim_start_matches('/').split('/').nth(self.index)?;
        (!seg.is_empty()).then_some(Cow::Borrowed(seg))
    }
}

/// Reads a query parameter (`?account=acme`); for demos and links.
#[derive(Debug, Clone)]
pub struct QueryResolver(String);

impl QueryResolver {
    /// Reads the parameter `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Self(name.into())
    }
}

impl ResolveAccount for QueryResolver {
    fn resolve<'r>(&self, req: &RequestView<'r>) -> Option<Cow<'r, str>> {
        req.uri.query()?.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            (k == self.0 && !v.is_empty()).then_some(Cow::Borrowed(v))
        })
    }
}

/// Reads a cookie (`account=acme`).
#[derive(Debug, Clone)]
pub struct CookieResolver(String);

impl CookieResolver {
    /// Reads the cookie `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Self(name.into())
    }
}

impl ResolveAccount for CookieResolver {
    fn resolve<'r>(&self, req: &RequestView<'r>) -> Option<Cow<'r, str>> {
        req.headers.get_all(http::header::COOKIE).iter().find_map(|h| {
            h.to_str().ok()?.split(';').find_map(|c| {
                let (k, v) = c.trim().split_once('=')?;
                (k == self.0 && !v.is_empty()).then_some(Cow::Borrowed(v.trim_matches('"')))
            })
        })
    }
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
    fn resolve<'r>(&self, req: &RequestView<'r>) -> Option<Cow<'r, str>> {
        (self.0)(req).map(Cow::Owned)
    }
}

/// `a.or(b)`: the first resolver that finds an account wins.
#[derive(Debug, Clone)]
pub struct Or<A, B>(A, B);

impl<A: ResolveAccount, B: ResolveAccount> ResolveAccount for Or<A, B> {
    fn resolve<'r>(&self, req: &RequestView<'r>) -> Option<Cow<'r, str>> {
        self.0.resolve(req).or_else(|| self.1.resolve(req))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(r: &dyn ResolveAccount, req: &http::Request<()>) -> Option<String> {
        r.resolve(&RequestView::of(req)).map(Cow::into_owned)
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
            ("ACME.App.Example.com:8443", Some("ACME")),
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

        let c = CookieResolver::new("account");
        let req = get("/").header("cookie", "theme=dark; account=acme").body(()).unwrap();
        assert_eq!(resolve(&c, &req).as_deref(), Some("acme"));

        let chain = HeaderResolver::default().or(q).or(c);
        let req = get("/?account=q").header("cookie", "account=c").body(()).unwrap();
        assert_eq!(resolve(&chain, &req).as_deref(), Some("q"));

        let f = from_fn(|r| r.headers.get("x-org").map(|v| format!("org:{}", v.to_str().unwrap())));
        assert_eq!(resolve(&f, &get("/").header("x-org", "7").body(()).unwrap()).as_deref(), Some("org:7"));
    }
}
