//! Injecting the reminder banner into the app's own HTML responses.

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, ETAG, LAST_MODIFIED};
use http::{HeaderValue, Response};
use http_body::Body;
use http_body_util::BodyExt;

/// Puts `banner` right after the `<body …>` tag of an HTML response.
///
/// Only a `200` `text/html` response that is not compressed
/// (`Content-Encoding`), not a range (`Content-Range`), and whose body has a
/// known size of at most `max_bytes` is touched: it is buffered, the banner
/// inserted once, and `Content-Length` set to the new size. Anything else —
/// `206`, `304`, JSON, gzip, a stream, a page with no `<body>` — passes as
/// it was.
///
/// A changed body is one account's: it is marked `Cache-Control: private`
/// (merged with what the app set: `public` and `s-maxage` go, `no-store`
/// and the rest stay), and its `ETag` and `Last-Modified` are dropped, since
/// they describe the body the app made, not this one.
pub(crate) async fn inject<B>(res: Response<B>, banner: &str, max_bytes: usize) -> Response<B>
where
    B: Body + From<Bytes>,
{
    let html = res
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.trim_start().to_ascii_lowercase().starts_with("text/html"));
    let size = res.body().size_hint().exact();
    if res.status() != http::StatusCode::OK
        || !html
        || res.headers().contains_key(CONTENT_ENCODING)
        || res.headers().contains_key(CONTENT_RANGE)
        || size.is_none_or(|n| n > max_bytes as u64)
    {
        return res;
    }
    let (mut parts, body) = res.into_parts();
    let bytes = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        // The app's own body failed; there is nothing left to pass on.
        Err(_) => {
            parts.headers.remove(CONTENT_LENGTH);
            return Response::from_parts(parts, B::from(Bytes::new()));
        }
    };
    let out = match body_tag_end(&bytes) {
        Some(at) => {
            let mut out = Vec::with_capacity(bytes.len() + banner.len());
            out.extend_from_slice(&bytes[..at]);
            out.extend_from_slice(banner.as_bytes());
            out.extend_from_slice(&bytes[at..]);
            let cache_control = private(parts.headers.get(CACHE_CONTROL).and_then(|v| v.to_str().ok()));
            if let Ok(v) = HeaderValue::from_str(&cache_control) {
                parts.headers.insert(CACHE_CONTROL, v);
            }
            parts.headers.remove(ETAG);
            parts.headers.remove(LAST_MODIFIED);
            Bytes::from(out)
        }
        None => bytes,
    };
    parts.headers.insert(CONTENT_LENGTH, HeaderValue::from(out.len()));
    Response::from_parts(parts, B::from(out))
}

/// The app's `Cache-Control` made private: `public` and `s-maxage` go
/// (they are for shared caches), everything else stays, `private` is added.
fn private(app: Option<&str>) -> String {
    let mut out = vec!["private".to_owned()];
    for directive in app.unwrap_or("").split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let name = directive.split('=').next().unwrap_or("").trim().to_ascii_lowercase();
        if !matches!(name.as_str(), "public" | "private" | "s-maxage") {
            out.push(directive.to_owned());
        }
    }
    out.join(", ")
}

/// The offset just after the `>` of the first `<body…>` tag, if any.
fn body_tag_end(html: &[u8]) -> Option<usize> {
    let start = html.windows(5).position(|w| w.eq_ignore_ascii_case(b"<body"))?;
    // `<body>` or `<body attr=…>`, not `<bodyguard>`.
    let next = *html.get(start + 5)?;
    if !(next == b'>' || next.is_ascii_whitespace() || next == b'/') {
        return None;
    }
    html[start..].iter().position(|&b| b == b'>').map(|i| start + i + 1)
}

#[cfg(test)]
mod tests {
    use super::{body_tag_end, private};

    #[test]
    fn cache_control_becomes_private() {
        assert_eq!(private(None), "private");
        assert_eq!(private(Some("public, max-age=60")), "private, max-age=60");
        assert_eq!(private(Some("no-store")), "private, no-store");
        assert_eq!(private(Some("Public, s-maxage=600, max-age=5, private")), "private, max-age=5");
    }

    #[test]
    fn finds_the_body_tag() {
        assert_eq!(body_tag_end(b"<html><body><p>"), Some(12));
        assert_eq!(body_tag_end(b"<HTML><BODY class=\"x\">hi"), Some(22));
        assert_eq!(body_tag_end(b"<html><p>no body</p>"), None);
        assert_eq!(body_tag_end(b"<bodyguard>"), None);
        assert_eq!(body_tag_end(b"<body"), None);
    }
}
