//! Paths that always pass the gate untouched.

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

/// A compiled list of exempt path globs (`gate.exempt`).
///
/// `*` matches within one path segment, `**` across segments: `/billing/**`
/// covers `/billing/pay` and `/billing/a/b`, `/billing` itself needs its own
/// entry.
#[derive(Clone, Debug)]
pub struct ExemptPaths {
    set: GlobSet,
    empty: bool,
    /// The literal start of every pattern (up to its first glob
    /// character), without those another one covers, sorted: a path that
    /// starts with none of them matches no pattern, and is answered
    /// without globbing. `None` when some pattern starts with a glob
    /// character.
    prefixes: Option<Prefixes>,
}

/// The literal starts of the patterns: sorted for a binary search, and
/// their second and third bytes as a set of 65,536 bits, so that most
/// paths no pattern covers (`/api/…` beside `/admin`) are turned away by
/// one bit, before any string is compared.
#[derive(Clone, Debug)]
struct Prefixes {
    sorted: Vec<Box<str>>,
    /// `None` when a prefix is one byte long (it leaves nothing to test).
    openings: Option<Box<[u64; 1024]>>,
}

impl Prefixes {
    fn new(sorted: Vec<Box<str>>) -> Self {
        let mut bits = Box::new([0u64; 1024]);
        let mut set = |a: u8, b: u8| {
            let pair = usize::from(a) << 8 | usize::from(b);
            bits[pair >> 6] |= 1 << (pair & 63);
        };
        for p in &sorted {
            match p.as_bytes() {
                [_, a, b, ..] => set(*a, *b),
                [_, a] => (0..=255).for_each(|b| set(*a, b)),
                _ => return Self { sorted, openings: None },
            }
        }
        Self { sorted, openings: Some(bits) }
    }

    /// Whether some prefix may start `path`: `false` is certain.
    fn may_start(&self, path: &str) -> bool {
        match (&self.openings, path.as_bytes()) {
            (Some(bits), [_, a, b, ..]) => {
                let pair = usize::from(*a) << 8 | usize::from(*b);
                bits[pair >> 6] & (1 << (pair & 63)) != 0
            }
            _ => true,
        }
    }
}

/// The part of `pattern` before its first glob metacharacter.
fn literal_prefix(pattern: &str) -> &str {
    let end = pattern.find(['*', '?', '[', '{', '\\']).unwrap_or(pattern.len());
    &pattern[..end]
}

fn prefixes<S: AsRef<str>>(patterns: &[S]) -> Option<Prefixes> {
    let mut all: Vec<&str> = patterns.iter().map(|p| literal_prefix(p.as_ref())).collect();
    if all.iter().any(|p| p.is_empty()) {
        return None;
    }
    all.sort_unstable();
    let mut kept: Vec<Box<str>> = Vec::new();
    for p in all {
        if !kept.iter().any(|k| p.starts_with(&**k)) {
            kept.push(p.into());
        }
    }
    Some(Prefixes::new(kept))
}

impl ExemptPaths {
    /// Compiles the patterns; the error names the bad one.
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<Self, globset::Error> {
        let mut builder = GlobSetBuilder::new();
        for p in patterns {
            builder.add(GlobBuilder::new(p.as_ref()).literal_separator(true).build()?);
        }
        Ok(Self { set: builder.build()?, empty: patterns.is_empty(), prefixes: prefixes(patterns) })
    }

    /// No exemptions.
    pub fn none() -> Self {
        Self { set: GlobSet::empty(), empty: true, prefixes: Some(Prefixes::new(Vec::new())) }
    }

    /// Whether `path` is exempt.
    pub fn matches(&self, path: &str) -> bool {
        if self.empty {
            return false;
        }
        if let Some(prefixes) = &self.prefixes {
            if !prefixes.may_start(path) || !starts_with_one(&prefixes.sorted, path) {
                return false;
            }
        }
        // A path with dot segments is never exempt: whatever resolves them
        // later (the app's router, an upstream server) would serve another
        // path than the one matched (`/billing/../api/x`).
        self.set.is_match(path) && !has_dot_segments(path)
    }
}

/// Whether `path` has a `.` or `..` segment as any server might read it:
/// percent-encoded (`%2e`, also encoded twice, `%252e`), between encoded or
/// back slashes (`%2f`, `\\`), with path parameters (`..;x`, which Tomcat
/// strips), or with trailing dots or blanks (`... `, which Windows servers
/// trim). A path whose decoding is not UTF-8 (an overlong `%c0%ae`) counts
/// too. Browsers resolve dot segments before sending; servers resolve them
/// differently after, so such a path is never taken at its word.
pub(crate) fn has_dot_segments(path: &str) -> bool {
    if !path.bytes().any(|b| b == b'.' || b == b'%') {
        return false;
    }
    // Nothing encoded (`/static/app.css`): the segments as they are.
    if !path.contains('%') {
        return has_dot_segment(path.as_bytes());
    }
    // Decoded until it stops changing (bounded): `%252e` is `%2e` is `.`.
    let mut decoded = path.as_bytes().to_vec();
    for _ in 0..3 {
        let next: Vec<u8> = percent_encoding::percent_decode(&decoded).collect();
        if next == decoded {
            break;
        }
        decoded = next;
    }
    if std::str::from_utf8(&decoded).is_err() {
        return true;
    }
    has_dot_segment(&decoded)
}

/// Whether a segment of `path` (split at `/` and `\\`, cut at `;`) is
/// only dots and blanks, with a dot.
fn has_dot_segment(path: &[u8]) -> bool {
    path.split(|b| *b == b'/' || *b == b'\\').any(|segment| {
        let segment = segment.split(|b| *b == b';').next().unwrap_or_default();
        segment.contains(&b'.') && segment.iter().all(|b| matches!(b, b'.' | b' ' | b'\t'))
    })
}

/// Whether `path` starts with one of `prefixes` (sorted, none starting
/// with another): a binary search, not a scan. A prefix of `path` sorts at
/// or before it, and every string between that prefix and `path` starts
/// with the prefix — so no other kept prefix can be there, and the greatest
/// prefix not after `path` is the only candidate.
fn starts_with_one(prefixes: &[Box<str>], path: &str) -> bool {
    let after = prefixes.partition_point(|p| **p <= *path);
    after > 0 && path.starts_with(&*prefixes[after - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_follow_path_segments() {
        let e = ExemptPaths::new(&["/billing", "/billing/**", "/static/*", "/healthz"]).unwrap();
        for yes in ["/billing", "/billing/pay", "/billing/a/b", "/static/app.css", "/healthz"] {
            assert!(e.matches(yes), "{yes}");
        }
        for no in ["/", "/billingx", "/api/billing", "/static/a/b.css", "/healthz/x"] {
            assert!(!e.matches(no), "{no}");
        }
        assert!(ExemptPaths::new(&["/a/[b"]).is_err());
    }

    #[test]
    fn dot_segments_are_never_exempt() {
        let e = ExemptPaths::new(&["/billing/**", "/static/**"]).unwrap();
        for attack in [
            "/billing/../api/projects",
            "/static/../api/projects",
            "/billing/%2e%2e/api/projects",
            "/billing/%2E%2e/api",
            "/billing/.%2e/api",
            "/billing/..%2fapi",
            "/billing/..\\api",
            "/billing/./x",
            "/billing/..",
            "/billing/..;/api/projects",
            "/billing/%2e%2e%3b/api",
            "/billing/%252e%252e/api",
            "/billing/%c0%ae%c0%ae/api",
            "/billing/..%20/api",
            "/billing/.../api",
        ] {
            assert!(has_dot_segments(attack), "{attack}");
            assert!(!e.matches(attack), "{attack}");
        }
        for fine in ["/billing/pay", "/billing/a.b", "/billing/.well-known", "/static/app.min.css", "/billing/%41", "/billing/caf%C3%A9", "/billing/x;v=1"] {
            assert!(!has_dot_segments(fine), "{fine}");
            assert!(e.matches(fine), "{fine}");
        }
    }

    proptest::proptest! {
        /// The binary search finds a prefix exactly when a scan does.
        #[test]
        fn the_prefix_search_agrees_with_a_scan(
            patterns in proptest::collection::vec("/[ab/]{0,4}", 1..8),
            path in "/[ab/]{0,6}",
        ) {
            let kept = prefixes(&patterns).unwrap();
            let scan = kept.sorted.iter().any(|p| path.starts_with(&**p));
            proptest::prop_assert_eq!(starts_with_one(&kept.sorted, &path), scan);
            // The bit set only ever turns away what no prefix starts.
            proptest::prop_assert!(kept.may_start(&path) || !scan);
            proptest::prop_assert_eq!(scan, patterns.iter().any(|p| path.starts_with(p.as_str())));
        }
    }

    /// The prefix test is only a shortcut: it never changes an answer.
    #[test]
    fn the_prefix_shortcut_agrees_with_the_globs() {
        let sets: [&[&str]; 6] = [
            &["/billing", "/billing/**", "/healthz", "/readyz", "/metrics", "/webhooks/**", "/admin", "/admin/**", "/static/**", "/favicon.ico"],
            &["/a*/x", "/a/{b,c}/**", "/q?", "/lit\\*eral"],
            &["**/*.css", "/api"],
            &["/x/[ab]", "/x/a/**"],
            &["/a*", "/billing/**"],
            &["/*", "/billing/**"],
        ];
        let paths = ["/", "/a", "/ab/x", "/a/b/c", "/a/c", "/q", "/qq", "/lit*eral", "/style.css", "/s/t.css", "/api", "/api/x",
            "/x/a", "/x/b", "/x/c", "/x/a/z", "/billing", "/billingx", "/billing/pay", "/admin/x", "/static/a/b", "/api/ping",
            "/ad", "/b", "/bi", "/zz", ""];
        for patterns in sets {
            let fast = ExemptPaths::new(patterns).unwrap();
            let mut builder = GlobSetBuilder::new();
            for p in patterns {
                builder.add(GlobBuilder::new(p).literal_separator(true).build().unwrap());
            }
            let slow = builder.build().unwrap();
            for path in paths {
                assert_eq!(fast.matches(path), slow.is_match(path), "{patterns:?} on {path}");
            }
        }
    }
}
