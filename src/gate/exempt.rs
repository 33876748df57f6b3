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
}

impl ExemptPaths {
    /// Compiles the patterns; the error names the bad one.
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<Self, globset::Error> {
        let mut builder = GlobSetBuilder::new();
        for p in patterns {
            builder.add(GlobBuilder::new(p.as_ref()).literal_separator(true).build()?);
        }
        Ok(Self { set: builder.build()?, empty: patterns.is_empty() })
    }

    /// No exemptions.
    pub fn none() -> Self {
        Self { set: GlobSet::empty(), empty: true }
    }

    /// Whether `path` is exempt.
    pub fn matches(&self, path: &str) -> bool {
        !self.empty && self.set.is_match(path)
    }
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
}
