//! Content negotiation from `Accept`: HTML for browsers, JSON for the rest.

use crate::i18n::parse_q;

/// Whether a client sending this `Accept` header prefers an HTML page over
/// `application/problem+json`.
///
/// Browsers name `text/html` explicitly and reach JSON only through `*/*`
/// with a lower weight, so they get HTML. `curl` (`*/*`), API clients
/// (`application/json`) and a missing header get JSON: a tie goes to JSON.
pub fn prefers_html(accept: Option<&str>) -> bool {
    let Some(accept) = accept else { return false };
    let html = quality(accept, "text", "html");
    let json = quality(accept, "application", "problem+json").max(quality(accept, "application", "json"));
    html > json
}

/// The weight (0-1000) the header gives `type/subtype`: that of the most
/// specific range that matches it, or 0.
fn quality(accept: &str, ty: &str, subtype: &str) -> u16 {
    let mut best: Option<(u8, u16)> = None; // (specificity, q)
    for range in accept.split(',').take(64) {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or("").trim();
        let Some((t, s)) = media.split_once('/') else { continue };
        let (t, s) = (t.trim(), s.trim());
        let specificity = match (t, s) {
            ("*", "*") => 1,
            (t, "*") if t.eq_ignore_ascii_case(ty) => 2,
            (t, s) if t.eq_ignore_ascii_case(ty) && s.eq_ignore_ascii_case(subtype) => 3,
            _ => continue,
        };
        let q = parts.find_map(|p| {
            let (k, v) = p.split_once('=')?;
            k.trim().eq_ignore_ascii_case("q").then(|| parse_q(v.trim()))
        });
        let q = q.unwrap_or(Some(1000)).unwrap_or(0);
        if best.is_none_or(|(sp, _)| specificity > sp) {
            best = Some((specificity, q));
        }
    }
    best.map_or(0, |(_, q)| q)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn browsers_get_html_and_api_clients_json() {
        let table = [
            (Some("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"), true), // Chrome
            (Some("text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8"), true), // Firefox
            (Some("*/*"), false),                                       // curl
            (None, false),
            (Some("application/json"), false),
            (Some("application/problem+json"), false),
            (Some("text/html;q=0.5, application/json"), false),
            (Some("text/html, application/json;q=0.9"), true),
            (Some("text/*"), true),
            (Some("text/html;q=0"), false),
            // JSON refused, but */* still admits problem+json at q=1: a tie, so JSON.
            (Some("application/json;q=0, */*"), false),
            (Some("TEXT/HTML"), true),
            (Some("garbage,,;;=q"), false),
            (Some("text/html;q=abc"), false),
        ];
        for (accept, html) in table {
            assert_eq!(prefers_html(accept), html, "{accept:?}");
        }
    }

    #[test]
    fn q_values() {
        assert_eq!(parse_q("1"), Some(1000));
        assert_eq!(parse_q("1.000"), Some(1000));
        assert_eq!(parse_q("0.8"), Some(800));
        assert_eq!(parse_q("0.125"), Some(125));
        assert_eq!(parse_q("0"), Some(0));
        for bad in ["1.5", "2", "0.1234", "-0.1", "", "x", ".5"] {
            assert_eq!(parse_q(bad), None, "{bad}");
        }
    }
}
