//! Injecting the reminder banner into the app's own HTML responses.

use bytes::Bytes;
use http::header::{CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderValue, Response};
use http_body::Body;
use http_body_util::BodyExt;

/// Puts `banner` right after the `<body …>` tag of an HTML response.
///
/// Only a `text/html` response that is not compressed (`Content-Encoding`)
/// and whose body has a known size of at most `max_bytes` is touched: it is
/// buffered, the banner inserted once, and `Content-Length` set to the new
/// size. Anything else — JSON, gzip, a stream, a page with no `<body>` —
/// passes as it was.
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
    if !html || res.headers().contains_key(CONTENT_ENCODING) || size.is_none_or(|n| n > max_bytes as u64) {
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
            Bytes::from(out)
        }
        None => bytes,
    };
    parts.headers.insert(CONTENT_LENGTH, HeaderValue::from(out.len()));
    Response::from_parts(parts, B::from(out))
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
    use super::body_tag_end;

    #[test]
    fn finds_the_body_tag() {
        assert_eq!(body_tag_end(b"<html><body><p>"), Some(12));
        assert_eq!(body_tag_end(b"<HTML><BODY class=\"x\">hi"), Some(22));
        assert_eq!(body_tag_end(b"<html><p>no body</p>"), None);
        assert_eq!(body_tag_end(b"<bodyguard>"), None);
        assert_eq!(body_tag_end(b"<body"), None);
    }
}
