//! The 402 answers: an HTML page for browsers, `application/problem+json`
//! (RFC 9457) for everyone else.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use chrono::Utc;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, VARY};
use http::{HeaderValue, Response, StatusCode};
use minijinja::Environment;
use serde::Serialize;

use super::PageConfig;
use crate::standing::{Action, Reason, Standing};
use crate::state::{BillingState, UpcomingDue};

/// The response header naming the account's stage.
pub const BILLING_STAGE: http::HeaderName = http::HeaderName::from_static("billing-stage");

/// The problem type URI for payment problems.
pub const PROBLEM_TYPE: &str = "https://docs.rs/pastdue/latest/pastdue/#payment-required";
/// The problem type URI for an ended subscription.
pub const ENDED_TYPE: &str = "https://docs.rs/pastdue/latest/pastdue/#subscription-ended";

const BUILTIN: &str = include_str!("../../templates/page.html");
const TEMPLATE: &str = "page.html";
const BUILTIN_BANNER: &str = include_str!("../../templates/banner.html");
const BANNER: &str = "banner.html";

/// Why a page template was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PageError {
    /// The template file could not be read.
    #[error("cannot read page template {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The template does not compile or fails on a sample standing.
    #[error("page template is invalid: {0}")]
    Template(String),
}

/// Renders the please-pay page. Built once at start-up; a template that
/// does not render a sample standing is refused there, not at the first
/// blocked request.
#[derive(Debug, Clone)]
pub struct PaymentPage {
    env: Environment<'static>,
    product_name: String,
    logo_url: Option<String>,
    support_email: String,
    portal_url: Option<String>,
    /// The mounted pay endpoint and the signer of its links.
    links: Option<(String, crate::links::LinkSigner)>,
    languages: crate::i18n::Languages,
    /// Stage name → the i18n key of what a notice for it was ("payment
    /// notice", "second warning"…), from the gate's ladder.
    kinds: Arc<HashMap<String, &'static str>>,
}

impl Default for PaymentPage {
    fn default() -> Self {
        Self::new(&PageConfig::default()).expect("the built-in page renders")
    }
}

/// The variables a page template sees.
#[derive(Serialize)]
struct PageContext<'a> {
    lang: &'a str,
    title: &'a str,
    product_name: &'a str,
    logo_url: Option<&'a str>,
    support_email: &'a str,
    account: &'a str,
    stage: &'a str,
    action: &'a str,
    reason: &'static str,
    read_only: bool,
    amount: Option<String>,
    amount_due: Option<i64>,
    currency: Option<crate::state::Currency>,
    invoice_number: Option<&'a str>,
    past_due_since: Option<String>,
    since: Option<String>,
    pay_url: Option<String>,
    update_payment_url: Option<String>,
    /// "Already paid? Check again": a form posting to `/billing/return`.
    check_url: Option<String>,
    /// When Stripe will try the card again, in the page's language.
    next_attempt: Option<String>,
    next_stage: Option<&'a str>,
    next_stage_at: Option<String>,
    notices: Vec<super::lists::NoticeView<'a>>,
    /// Every owed invoice when there are several (from one provider or
    /// more), each with its own pay link.
    invoices: Vec<super::lists::InvoiceView>,
    /// The feature a stage closed, when the request was for one.
    feature: Option<&'a str>,
    /// When the rest of the app closes too, in the page's language.
    rest_closes_at: Option<String>,
    /// The date the customer promised to pay by, in the page's language.
    promised: Option<String>,
    /// Every message of the chosen language, placeholders filled in.
    text: BTreeMap<&'a str, String>,
}

/// Whom an answer speaks to: the account, its standing, its stored
/// state and the visitor's languages — what every page, banner and
/// problem body needs, travelling together.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Customer<'a> {
    pub(crate) account: &'a str,
    pub(crate) standing: &'a Standing,
    pub(crate) state: Option<&'a BillingState>,
    pub(crate) accept_language: Option<&'a str>,
}

/// The messages a page template gets as `text.*`.
const TEXT_KEYS: [&str; 29] = [
    "title", "heading_block", "heading_feature", "feature_rest", "promised", "heading_read_only", "owed_to", "since", "invoice", "reassure", "pay_amount", "pay",
    "returns", "reminders", "spam", "canceled_heading", "canceled_body", "reactivate", "paused_heading",
    "paused_body", "add_payment_method", "unknown_heading", "unknown_body", "help", "update_payment_method",
    "check_again", "retry", "override_heading", "override_body",
];

impl PaymentPage {
    /// The page described by `[page]`: the built-in template, or the file
    /// named by `page.template`.
    pub fn new(config: &PageConfig) -> Result<Self, PageError> {
        let source = if config.template.is_empty() {
            BUILTIN.to_owned()
        } else {
            std::fs::read_to_string(&config.template)
                .map_err(|source| PageError::Read { path: config.template.clone(), source })?
        };
        let languages = crate::i18n::Languages::builtin().map_err(|e| PageError::Template(e.to_string()))?;
        let mut env = Environment::new();
        env.add_template_owned(TEMPLATE, source).map_err(|e| PageError::Template(e.to_string()))?;
        env.add_template_owned(BANNER, BUILTIN_BANNER.to_owned()).map_err(|e| PageError::Template(e.to_string()))?;
        let page = Self {
            env,
            product_name: config.product_name.clone(),
            // Checked like every rendered URL: anything but https (or http
            // on loopback, or a root-relative path) is dropped, with a warning.
            logo_url: Some(config.logo_url.as_str())
                .filter(|u| !u.is_empty())
                .and_then(|u| crate::href::checked(u, "page.logo_url"))
                .map(str::to_owned),
            support_email: config.support_email.clone(),
            portal_url: Some(config.billing_portal_url.as_str())
                .filter(|u| !u.is_empty())
                .and_then(|u| crate::href::checked(u, "page.billing_portal_url"))
                .map(str::to_owned),
            links: None,
            languages,
            kinds: Arc::default(),
        };
        page.validate()?;
        Ok(page)
    }

    /// Renders against a sample debt, in every language, so a template that
    /// fails at run time (an undefined filter, a bad loop) is refused now.
    fn validate(&self) -> Result<(), PageError> {
        let sample = sample_state();
        let now = Utc::now();
        let standing = Standing::evaluate(Some(&sample), &crate::Ladder::standard(), now + chrono::TimeDelta::days(20));
        let warning = Standing::evaluate(Some(&sample), &crate::Ladder::standard(), now + chrono::TimeDelta::days(15));
        for code in self.languages.codes() {
            let customer = Customer { account: "acct_sample", standing: &standing, state: Some(&sample), accept_language: None };
            self.try_render(customer, Some(code), None).map_err(PageError::Template)?;
            self.try_render(customer, Some(code), Some("reports")).map_err(PageError::Template)?;
            self.banner("acct_sample", &warning, Some(&sample), Some(code))?;
        }
        Ok(())
    }

    /// Replaces the banner with the template in the file `path`, validated
    /// (like the page) against a sample in every language.
    pub fn with_banner_template(mut self, path: &str) -> Result<Self, PageError> {
        let source = std::fs::read_to_string(path).map_err(|source| PageError::Read { path: path.to_owned(), source })?;
        self.env.add_template_owned(BANNER, source).map_err(|e| PageError::Template(e.to_string()))?;
        self.validate()?;
        Ok(self)
    }

    /// The reminder banner for a `notice` or `warn` standing, in the
    /// visitor's language.
    pub fn banner(&self, account: &str, standing: &Standing, state: Option<&BillingState>, accept_language: Option<&str>) -> Result<String, PageError> {
        let (lang, amount, date, message) = self.banner_parts(Customer { account, standing, state, accept_language });
        let ctx = minijinja::context! {
            action => standing.action().as_str(),
            stage => standing.stage().name(),
            next_stage_at => date,
            pay_url => self.pay_url(account, standing, state),
        };
        self.render_banner(lang, &amount, &date, message, ctx)
    }

    /// The banner template with what every banner has (language, message,
    /// amount, the button's and the dismiss label's text) and `ctx`.
    fn render_banner(&self, lang: &crate::i18n::Language, amount: &str, date: &str, message: String, ctx: minijinja::Value) -> Result<String, PageError> {
        let vars = [("product", self.product_name.as_str()), ("amount", amount), ("date", date)];
        let text: BTreeMap<&str, String> =
            ["banner_pay", "banner_dismiss"].iter().map(|k| (*k, lang.text(k, &vars))).collect();
        let ctx = minijinja::context! { lang => lang.code(), message => message, amount => amount, text => text, ..ctx };
        let template = self.env.get_template(BANNER).map_err(|e| PageError::Template(e.to_string()))?;
        template.render(ctx).map_err(|e| PageError::Template(e.to_string()))
    }

    /// The banner's message alone, as plain text ("Friendly reminder: your
    /// payment of €49.00 …"), in the visitor's language: what `/check`
    /// hands a proxy in `Billing-Banner`.
    #[cfg_attr(not(feature = "server"), allow(dead_code))]
    pub(crate) fn banner_text(&self, standing: &Standing, state: Option<&BillingState>, accept_language: Option<&str>) -> String {
        self.banner_parts(Customer { account: "", standing, state, accept_language }).3
    }

    /// The banner for a payment coming due (`banner.before_due`): "Your
    /// invoice of €49.00 to Acme is due on 3 December", with the invoice's
    /// own page as the pay button when it has one.
    pub(crate) fn due_banner(&self, due: &UpcomingDue, state: Option<&BillingState>, accept_language: Option<&str>) -> Result<String, PageError> {
        let (lang, amount, date, message) = self.due_banner_parts(due, state, accept_language);
        let ctx = minijinja::context! {
            action => Action::Allow.as_str(),
            stage => "active",
            due => true,
            due_at => date,
            pay_url => due.hosted_url.as_deref().and_then(|u| crate::href::checked(u, "upcoming invoice")),
        };
        self.render_banner(lang, &amount, &date, message, ctx)
    }

    /// The before-due banner's message alone, as plain text (for `/check`'s
    /// `Billing-Banner`).
    #[cfg_attr(not(feature = "server"), allow(dead_code))]
    pub(crate) fn due_banner_text(&self, due: &UpcomingDue, state: Option<&BillingState>, accept_language: Option<&str>) -> String {
        self.due_banner_parts(due, state, accept_language).3
    }

    fn due_banner_parts(&self, due: &UpcomingDue, state: Option<&BillingState>, accept_language: Option<&str>) -> (&crate::i18n::Language, String, String, String) {
        let lang = self.languages.choose(state.and_then(BillingState::language), accept_language);
        let amount = lang.money(due.amount_due, due.currency);
        let date = lang.date(due.due);
        let vars = [("product", self.product_name.as_str()), ("amount", amount.as_str()), ("date", date.as_str())];
        let message = lang.text("banner_due", &vars);
        (lang, amount, date, message)
    }

    /// The banner's language, amount, date and message.
    fn banner_parts(&self, Customer { standing, state, accept_language, .. }: Customer<'_>) -> (&crate::i18n::Language, String, String, String) {
        let lang = self.languages.choose(state.and_then(BillingState::language), accept_language);
        let amount = standing.amount_due().map(|(a, c)| lang.money(a, c)).unwrap_or_default();
        let date = standing.next().map(|(_, t)| lang.date(t)).unwrap_or_default();
        let vars = [("product", self.product_name.as_str()), ("amount", amount.as_str()), ("date", date.as_str())];
        let key = if standing.action() == Action::Warn { "banner_warn" } else { "banner_notice" };
        let message = lang.text(key, &vars);
        (lang, amount, date, message)
    }

    /// The languages the page speaks.
    pub fn languages(&self) -> &crate::i18n::Languages {
        &self.languages
    }

    fn try_render(&self, customer: Customer<'_>, language: Option<&str>, feature: Option<&str>) -> Result<String, String> {
        let Customer { account, standing, state, accept_language } = customer;
        let lang = self.languages.choose(language.or(state.and_then(BillingState::language)), accept_language);
        let invoice = state.and_then(BillingState::oldest_unpaid);
        let amount = standing.amount_due().map(|(a, c)| lang.money(a, c));
        // When Stripe tries the oldest invoice again, if it says (and it is still ahead).
        let next_attempt = invoice.and_then(|(_, i)| i.next_attempt).filter(|t| *t > Utc::now()).map(|t| lang.date(t));
        let notices = super::lists::notices(state, standing, lang, |stage| self.kind_of(stage));
        let invoices = super::lists::invoices(state, lang);
        let vars = [
            ("product", self.product_name.as_str()),
            ("amount", amount.as_deref().unwrap_or("")),
            ("date", &standing.past_due_since().map(|t| lang.date(t)).unwrap_or_default()),
            ("number", invoice.and_then(|(_, i)| i.number.as_deref()).unwrap_or("")),
            ("retry_date", &next_attempt.clone().unwrap_or_default()),
            ("email", "\u{0}"),
            ("feature", feature.unwrap_or("")),
            ("rest_date", &standing.blocks_at().map(|t| lang.date(t)).unwrap_or_default()),
            ("promise_date", &standing.promised().map(|t| lang.date(t)).unwrap_or_default()),
        ]
        .map(|(k, v)| (k, v.to_owned()));
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let mut text: BTreeMap<&str, String> = TEXT_KEYS.iter().map(|k| (*k, lang.text(k, &vars))).collect();
        // The e-mail address is a link: split the sentence around it.
        let help = lang.text("help", &vars);
        let (before, after) = help.split_once('\u{0}').unwrap_or((help.as_str(), ""));
        text.insert("help_before", before.to_owned());
        text.insert("help_after", after.to_owned());
        let title = text["title"].clone();
        let ctx = PageContext {
            lang: lang.code(),
            title: &title,
            product_name: &self.product_name,
            logo_url: self.logo_url.as_deref(),
            support_email: &self.support_email,
            account,
            stage: standing.stage().name(),
            action: standing.action().as_str(),
            reason: standing.reason().as_str(),
            read_only: standing.action() == Action::ReadOnly,
            amount,
            amount_due: standing.amount_due().map(|(a, _)| a),
            currency: standing.amount_due().map(|(_, c)| c),
            invoice_number: invoice.and_then(|(_, i)| i.number.as_deref()),
            past_due_since: standing.past_due_since().map(|t| lang.date(t)),
            since: standing.since().map(|t| lang.date(t)),
            pay_url: self.pay_url(account, standing, state),
            update_payment_url: self.update_payment_url(account, state),
            check_url: self.check_url(account, standing),
            next_attempt,
            next_stage: standing.next().map(|(s, _)| s.name()),
            next_stage_at: standing.next().map(|(_, t)| lang.date(t)),
            notices,
            invoices,
            feature,
            rest_closes_at: feature.and(standing.blocks_at()).map(|t| lang.date(t)),
            promised: standing.promised().map(|t| lang.date(t)),
            text,
        };
        let template = self.env.get_template(TEMPLATE).map_err(|e| e.to_string())?;
        template.render(&ctx).map_err(|e| e.to_string())
    }

    /// Links to the pay endpoint mounted at `path`, signing each link.
    /// Crate-private: only `stripe::with_pay_links`, which also returns the
    /// endpoint's router, sets it, so a page never links to a missing route.
    /// Names each notice on the page by what it was, from `ladder`'s stage
    /// actions (the gate calls this with its ladder).
    pub(crate) fn with_stage_kinds(mut self, policy: &crate::policy::Policy) -> Self {
        // A stage name two ladders share keeps the kind of the first.
        let mut kinds = HashMap::new();
        for (name, kind) in policy.stages().iter().rev().filter_map(|s| {
                let kind = match s.action() {
                    Action::Notice => "kind_notice",
                    Action::Warn => "kind_warning",
                    Action::ReadOnly | Action::Block => "kind_suspension",
                    Action::Allow => return None,
                };
                Some((s.name().to_owned(), kind))
            }) {
            kinds.insert(name, kind);
        }
        self.kinds = Arc::new(kinds);
        self
    }

    /// The i18n key naming what a notice for `stage` was.
    fn kind_of(&self, stage: &str) -> Option<&'static str> {
        if stage.starts_with("before_due_") {
            return Some("kind_before_due");
        }
        self.kinds.get(stage).copied()
    }

    #[cfg(feature = "stripe")]
    pub(crate) fn with_link_signer(mut self, path: &str, signer: crate::links::LinkSigner) -> Self {
        self.links = Some((path.to_owned(), signer));
        self
    }

    /// A signed link to the pay endpoint for `account`, if one is mounted
    /// and the account has a Stripe customer whose portal it can open
    /// (`state` unknown counts as yes).
    fn signed_pay_link(&self, account: &str, state: Option<&BillingState>, flow: Option<&str>) -> Option<String> {
        let (path, signer) = self.links.as_ref()?;
        if state.is_some_and(|s| s.customers().is_empty()) {
            return None;
        }
        let token = signer.sign(account, crate::links::Purpose::Pay, Utc::now());
        Some(match flow {
            Some(flow) => format!("{path}?t={token}&flow={flow}"),
            None => format!("{path}?t={token}"),
        })
    }

    /// The primary pay button: the oldest unpaid invoice's hosted page, else
    /// a signed link to the mounted pay endpoint, else `page.billing_portal_url`.
    fn pay_url(&self, account: &str, standing: &Standing, state: Option<&BillingState>) -> Option<String> {
        if let Some(url) = standing.pay_url() {
            return Some(url.to_owned());
        }
        self.signed_pay_link(account, state, None).or_else(|| self.portal_url.clone())
    }

    /// "Already paid? Check again", for a debt: a signed link to the return
    /// endpoint, mounted with the pay endpoint.
    fn check_url(&self, account: &str, standing: &Standing) -> Option<String> {
        let (_, signer) = self.links.as_ref()?;
        matches!(standing.reason(), Reason::Debt | Reason::Promised).then(|| {
            let token = signer.sign(account, crate::links::Purpose::Return, Utc::now());
            format!("{}?t={token}", crate::links::RETURN_PATH)
        })
    }

    /// The secondary "update payment method" link (a signed portal link).
    fn update_payment_url(&self, account: &str, state: Option<&BillingState>) -> Option<String> {
        self.signed_pay_link(account, state, Some("payment_method_update"))
    }

    /// The HTML page. Never fails: a template error at run time falls back
    /// to a plain built-in message (and is logged).
    ///
    /// The language is the account's own (`Change::Language`) when we speak
    /// it, else the best match for `accept_language`, else English.
    pub fn render(&self, account: &str, standing: &Standing, state: Option<&BillingState>, accept_language: Option<&str>) -> String {
        self.render_for(Customer { account, standing, state, accept_language }, None)
    }

    fn render_for(&self, customer: Customer<'_>, feature: Option<&str>) -> String {
        self.try_render(customer, None, feature).unwrap_or_else(|e| {
            tracing::error!(error = %e, "page template failed; serving the plain fallback");
            format!(
                "<!doctype html><html lang=\"en\"><meta charset=\"utf-8\"><title>Payment required</title><p>A payment to {} is required to continue. Please contact {}.</p></html>",
                minijinja_escape(&self.product_name),
                minijinja_escape(&self.support_email)
            )
        })
    }

    /// The `application/problem+json` body.
    pub fn problem(&self, account: &str, standing: &Standing) -> serde_json::Value {
        self.problem_with(Customer { account, standing, state: None, accept_language: None }, None)
    }

    fn problem_with(&self, customer: Customer<'_>, feature: Option<&str>) -> serde_json::Value {
        let Customer { account, standing, state, .. } = customer;
        if let Some(feature) = feature {
            let mut body = self.problem_with(customer, None);
            body["title"] = "Feature paused until payment".into();
            body["detail"] = match standing.blocks_at() {
                Some(t) => format!("{feature} is paused until the amount due is paid; the rest of the app stays open until {}.", t.to_rfc3339()),
                None => format!("{feature} is paused until the amount due is paid; the rest of the app stays open."),
            }
            .into();
            body["feature"] = feature.into();
            body["rest_closes_at"] = serde_json::to_value(standing.blocks_at()).unwrap_or_default();
            return body;
        }
        let ended = matches!(standing.reason(), Reason::Canceled | Reason::Paused);
        let (title, detail) = match standing.reason() {
            Reason::Canceled => ("Subscription ended", "The subscription for this account has ended. Reactivate it to continue."),
            Reason::Paused => ("Subscription paused", "The subscription is paused until a payment method is added."),
            Reason::StoreUnavailable | Reason::Unknown => (
                "Payment required",
                "The billing status of this account could not be confirmed.",
            ),
            // An admin's block on an account that owes nothing: no debt to
            // speak of, so none is claimed.
            Reason::Override(_) if standing.amount_due().is_none() => (
                "Access paused",
                "Access to this account has been paused by the provider's team; nothing is owed. Contact support to resolve it.",
            ),
            _ if standing.action() == Action::ReadOnly => (
                "Payment required",
                "This account is read-only until the amount due is paid; reads still work.",
            ),
            _ => ("Payment required", "Access is paused until the amount due is paid; it returns as soon as the payment clears."),
        };
        let suspended_since = matches!(standing.action(), Action::Block | Action::ReadOnly)
            .then(|| standing.since())
            .flatten();
        serde_json::json!({
            "type": if ended { ENDED_TYPE } else { PROBLEM_TYPE },
            "title": title,
            "status": 402,
            "detail": detail,
            "account": account,
            "stage": standing.stage().name(),
            "amount_due": standing.amount_due().map_or(0, |(a, _)| a),
            "currency": standing.amount_due().map(|(_, c)| c),
            "pay_url": self.pay_url(account, standing, state),
            "past_due_since": standing.past_due_since(),
            "suspended_since": suspended_since,
        })
    }

    /// The full 402 response, negotiated by `html`.
    pub fn respond<B: From<Bytes>>(
        &self,
        account: &str,
        standing: &Standing,
        state: Option<&BillingState>,
        html: bool,
        accept_language: Option<&str>,
    ) -> Response<B> {
        self.respond_for(Customer { account, standing, state, accept_language }, html, None)
    }

    /// The 402 for a request to `feature` (`Some`) that the stage closes,
    /// or for the whole app (`None`).
    pub(crate) fn respond_for<B: From<Bytes>>(&self, customer: Customer<'_>, html: bool, feature: Option<&str>) -> Response<B> {
        let standing = customer.standing;
        let (body, content_type) = if html {
            (Bytes::from(self.render_for(customer, feature)), "text/html; charset=utf-8")
        } else {
            let json = serde_json::to_vec(&self.problem_with(customer, feature)).unwrap_or_default();
            (Bytes::from(json), "application/problem+json")
        };
        let mut res = Response::new(B::from(body));
        *res.status_mut() = StatusCode::PAYMENT_REQUIRED;
        let h = res.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(VARY, HeaderValue::from_static("accept, accept-language"));
        h.insert(BILLING_STAGE, standing.stage().header_value().clone());
        res
    }
}

fn minijinja_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn sample_state() -> BillingState {
    use crate::state::{Change, Currency, NoticeSent, UnpaidInvoice};
    let since = Utc::now();
    let mut s = BillingState::default();
    s.apply(&Change::InvoiceUnpaid {
        id: "in_sample".into(),
        invoice: UnpaidInvoice {
            amount_due: 12_345,
            currency: Currency::new("eur").expect("valid"),
            hosted_url: Some("https://invoice.stripe.com/i/sample".into()),
            number: Some("SAMPLE-0001".into()),
            since,
            observed: since,
            uncollectible: false,
            next_attempt: None,
        },
    });
    s.apply(&Change::NoticeSent(NoticeSent {
        episode: since,
        stage: "notice".into(),
        channel: "email".into(),
        at: since,
        to: Some("billing@example.com".into()),
        refused: None,
    }));
    s
}
