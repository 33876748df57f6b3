//! `[gate]`, `[banner]` and `[page]`: the tower layer, the reminder banner
//! and the please-pay page.

use std::time::Duration;

use serde::Deserialize;

use crate::settings::{de_header_name, de_window};
use crate::standing::Action;

/// What the gate does when it cannot decide from data (`gate.unknown`,
/// `gate.on_store_error`): let the request through, or answer `402`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fallback {
    /// Let the request through (fail open).
    Allow,
    /// Answer 402 (fail closed).
    Block,
}

impl Fallback {
    /// The matching action.
    pub fn action(self) -> Action {
        match self {
            Fallback::Allow => Action::Allow,
            Fallback::Block => Action::Block,
        }
    }
}

/// `[gate]`: the tower layer.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct GateConfig {
    /// `account_header`: header the default resolver reads (checked once,
    /// when the configuration is read).
    #[serde(deserialize_with = "de_header_name")]
    pub account_header: http::HeaderName,
    /// `unknown`: policy for accounts the store has never heard of.
    pub unknown: Fallback,
    /// `on_store_error`: policy for uncached accounts while the store is down.
    pub on_store_error: Fallback,
    /// `exempt`: glob patterns of paths that pass untouched.
    pub exempt: Vec<String>,
    /// `missing_account`: what a gated request with no account gets.
    pub missing_account: MissingAccount,
}

/// `gate.missing_account`: what a gated request that resolves no account
/// gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MissingAccount {
    /// Pass untouched (counted in `pastdue_no_account_total`).
    Pass,
    /// Answer `401` problem+json: for apps whose every gated route needs an
    /// account.
    Deny,
}

/// `[banner]`: the optional reminder injected into the app's HTML.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct BannerConfig {
    /// `inject`: whether to inject it.
    pub inject: bool,
    /// `max_bytes`: largest response buffered for injection.
    pub max_bytes: usize,
    /// `template`: path of a template replacing the built-in banner.
    pub template: String,
    /// `before_due`: also show the banner to accounts in good standing
    /// with an invoice due within this window ("Your invoice of €49.00 is
    /// due on 3 December"); `false` or `"0s"` = off (default), `true` =
    /// 3 days, or a duration such as `"7d"`.
    #[serde(deserialize_with = "de_window")]
    pub before_due: Option<Duration>,
}

/// The before-due window `banner.before_due = true` means: the default
/// `[[reminders.before_due]]` lead, so the banner appears with the e-mail.
pub const BEFORE_DUE_DEFAULT: Duration = Duration::from_secs(3 * 86_400);

/// `[page]`: the please-pay page.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct PageConfig {
    /// `product_name`: who is asking.
    pub product_name: String,
    /// `logo_url`: the operator's logo (`""` = none).
    pub logo_url: String,
    /// `support_email`: where to reach a human.
    pub support_email: String,
    /// `billing_portal_url`: fallback pay link (`""` = none).
    pub billing_portal_url: String,
    /// `template`: path of a template replacing the built-in page (`""` = built-in).
    pub template: String,
}

/// The paths of pastdue's own routes: billing pages, health, metrics,
/// webhooks, the admin API, static assets.
pub const DEFAULT_EXEMPT: [&str; 10] =
    ["/billing", "/billing/**", "/healthz", "/readyz", "/metrics", "/webhooks/**", "/admin", "/admin/**", "/static/**", "/favicon.ico"];

impl Default for GateConfig {
    fn default() -> Self {
        Self {
            account_header: http::HeaderName::from_static("x-account-id"),
            unknown: Fallback::Allow,
            on_store_error: Fallback::Allow,
            exempt: DEFAULT_EXEMPT.iter().map(|p| (*p).to_owned()).collect(),
            missing_account: MissingAccount::Pass,
        }
    }
}

impl Default for BannerConfig {
    fn default() -> Self {
        Self { inject: false, max_bytes: 262_144, template: String::new(), before_due: None }
    }
}

impl Default for PageConfig {
    fn default() -> Self {
        Self {
            product_name: "Example SaaS".into(),
            logo_url: String::new(),
            support_email: "billing@example.com".into(),
            billing_portal_url: String::new(),
            template: String::new(),
        }
    }
}
