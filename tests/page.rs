//! The please-pay page in every language, for every kind of 402.

mod common;

use chrono::{TimeDelta, Utc};
use common::*;
use pastdue::config::Config;
use pastdue::gate::{Languages, PaymentPage};
use pastdue::state::{Change, NoticeSent, Override, OverrideMode, SubscriptionStatus};
use pastdue::{BillingState, Ladder, Standing};

fn state(changes: &[Change]) -> BillingState {
    let mut s = BillingState::default();
    for c in changes {
        s.apply(c);
    }
    s
}

/// What a browser reads: minijinja escapes '/' and quotes in attributes.
fn text(html: &str) -> String {
    html.replace("&#x2f;", "/").replace("&#x27;", "'").replace("&quot;", "\"")
}

#[test]
fn every_language_renders_every_kind_of_402() {
    let page = PaymentPage::default();
    let langs = Languages::builtin().unwrap();
    let since = Utc::now() - TimeDelta::days(20);
    let debt = state(&[
        unpaid("in_1", 123_456, since),
        Change::NoticeSent(NoticeSent { episode: since, stage: "notice".into(), channel: "email".into(), at: since, to: Some("billing@acme.test".into()), refused: None }),
    ]);
    let canceled = state(&[subscription("sub_1", SubscriptionStatus::Canceled, since)]);
    let paused = state(&[subscription("sub_1", SubscriptionStatus::Paused, since)]);
    let blocked_by_admin = state(&[Change::SetOverride(Override { mode: OverrideMode::Block, until: None, reason: "r".into(), by: "a".into(), at: since })]);
    let ladder = Ladder::standard();
    let now = Utc::now();
    for code in langs.codes() {
        let lang = langs.get(code).unwrap();
        for (kind, s) in [("debt", Some(&debt)), ("canceled", Some(&canceled)), ("paused", Some(&paused)), ("override", Some(&blocked_by_admin)), ("unknown", None)] {
            let standing = if kind == "unknown" { Standing::unavailable(&ladder, pastdue::Action::Block) } else { Standing::evaluate(s, &ladder, now) };
            let html = text(&page.render("acme", &standing, s, Some(code)));
            assert!(html.contains(&format!("<html lang=\"{code}\">")), "{code}/{kind}");
            assert!(html.contains("billing@example.com"), "{code}/{kind}: support contact");
            assert!(!html.contains("{product}") && !html.contains("{amount}") && !html.contains("{date}"), "{code}/{kind}: unfilled placeholder");
            assert!(!html.contains("<script"), "{code}/{kind}");
            if kind == "debt" {
                let amount = lang.money(123_456, pastdue::state::Currency::new("eur").unwrap());
                assert!(html.contains(&amount), "{code}: amount {amount}");
                assert!(html.contains(&lang.date(since)), "{code}: since");
                assert!(html.contains("billing@acme.test"), "{code}: the reminder sent");
                assert!(html.contains("https://invoice.stripe.com/i/in_1"), "{code}: pay link");
            }
            if kind == "canceled" {
                assert!(!html.contains(&lang.money(123_456, pastdue::state::Currency::new("eur").unwrap())), "{code}: canceled is not debt");
            }
            if kind == "override" {
                // #26: an admin's block on an account that owes nothing has
                // its own words, never "until a payment is made".
                let body = lang.text("override_body", &[]);
                assert!(html.contains(&body), "{code}: {body}");
                assert!(!html.contains(&lang.text("heading_block", &[])), "{code}: not the debt heading");
            }
        }
    }
}

#[test]
fn the_page_names_who_is_asking() {
    let mut config = Config::default();
    config.page.product_name = "Globex Analytics".into();
    config.page.logo_url = "/static/logo.svg".into();
    let page = PaymentPage::new(&config.page).unwrap();
    let s = state(&[unpaid("in_1", 4_900, Utc::now() - TimeDelta::days(20))]);
    let standing = Standing::evaluate(Some(&s), &Ladder::standard(), Utc::now());
    let html = text(&page.render("acme", &standing, Some(&s), None));
    assert!(html.contains("<img class=\"logo\" src=\"/static/logo.svg\"") && html.contains("Globex Analytics"), "{html}");
    let plain = PaymentPage::default().render("acme", &standing, Some(&s), None);
    assert!(!plain.contains("<img"), "no logo configured, no image request");
}

#[test]
fn the_page_speaks_the_visitors_language() {
    let page = PaymentPage::default();
    let s = state(&[unpaid("in_1", 4_900, Utc::now() - TimeDelta::days(20))]);
    let standing = Standing::evaluate(Some(&s), &Ladder::standard(), Utc::now());
    let es = page.render("acme", &standing, Some(&s), Some("es-MX,es;q=0.9,en;q=0.5"));
    assert!(es.contains("<html lang=\"es\">") && es.contains("49,00\u{a0}€") && es.contains("Pagar"));
    let de = page.render("acme", &standing, Some(&s), Some("de-AT"));
    assert!(de.contains("<html lang=\"de\">") && de.contains("49,00\u{a0}€ jetzt bezahlen"), "{de}");
    let unknown = page.render("acme", &standing, Some(&s), Some("tlh"));
    assert!(unknown.contains("<html lang=\"en\">") && unknown.contains("€49.00"));
    // The account's own language beats the browser's.
    let mut with_lang = s.clone();
    with_lang.apply(&Change::Language("it".into()));
    let it = page.render("acme", &standing, Some(&with_lang), Some("fr"));
    assert!(it.contains("<html lang=\"it\">"));
}

#[test]
fn operator_templates_are_checked_at_start_up() {
    let dir = std::env::temp_dir().join(format!("pastdue-page-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.html");
    std::fs::write(&good, "<html lang=\"{{ lang }}\"><h1>{{ text.heading_block }}</h1><p>{{ amount }} · {{ account }}</p><a href=\"{{ pay_url }}\">{{ text.pay }}</a></html>").unwrap();
    let mut config = Config::default();
    config.page.template = good.to_string_lossy().into_owned();
    let page = PaymentPage::new(&config.page).expect("a good template is accepted");
    let s = state(&[unpaid("in_1", 100, Utc::now() - TimeDelta::days(20))]);
    let standing = Standing::evaluate(Some(&s), &Ladder::standard(), Utc::now());
    let html = text(&page.render("acme", &standing, Some(&s), Some("fr")));
    assert!(html.contains("<html lang=\"fr\"><h1>L'accès est suspendu jusqu'au paiement</h1><p>1,00\u{a0}€ · acme</p>"), "{html}");

    for (name, body) in [("syntax", "{% if %}"), ("runtime", "{{ amount | no_such_filter }}"), ("loop", "{% for x in 5 %}{{ x }}{% endfor %}")] {
        let bad = dir.join(format!("{name}.html"));
        std::fs::write(&bad, body).unwrap();
        config.page.template = bad.to_string_lossy().into_owned();
        assert!(PaymentPage::new(&config.page).is_err(), "{name} template accepted");
    }
    config.page.template = "/nonexistent/page.html".into();
    assert!(PaymentPage::new(&config.page).unwrap_err().to_string().contains("/nonexistent/page.html"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Only https (or loopback http, or own-origin paths) is ever rendered as a
/// link or image: unsafe URLs in config are dropped at start-up, and one
/// already in stored state (written by an older version) is not rendered.
#[test]
fn unsafe_urls_from_config_or_stored_state_are_never_rendered() {
    let mut config = Config::default();
    config.page.logo_url = "javascript:alert(1)".into();
    config.page.billing_portal_url = "data:text/html,<script>alert(1)</script>".into();
    let page = PaymentPage::new(&config.page).unwrap();
    // Stored before the check existed: built from JSON, not through apply.
    let since = (Utc::now() - TimeDelta::days(20)).to_rfc3339();
    let stored: BillingState = serde_json::from_value(serde_json::json!({
        "unpaid": { "in_old": { "amount_due": 4900, "currency": "eur", "hosted_url": "javascript:alert(document.cookie)",
                                "since": since, "observed": since } }
    }))
    .unwrap();
    for now in [Utc::now(), Utc::now() - TimeDelta::days(10)] {
        let standing = Standing::evaluate(Some(&stored), &Ladder::standard(), now);
        assert_eq!(standing.pay_url(), None);
        let html = text(&page.render("acct", &standing, Some(&stored), None));
        let banner = page.banner("acct", &standing, Some(&stored), None).unwrap();
        let json = page.problem("acct", &standing).to_string();
        for out in [&html, &banner, &json] {
            assert!(!out.contains("javascript:") && !out.contains("data:text"), "{out}");
        }
    }
    // Applying such a fact through the model drops the URL (never stored).
    let mut fresh = BillingState::default();
    let mut change = unpaid("in_1", 100, Utc::now());
    if let Change::InvoiceUnpaid { invoice, .. } = &mut change {
        invoice.hosted_url = Some("javascript:alert(1)".into());
    }
    fresh.apply(&change);
    assert_eq!(fresh.unpaid().get("in_1").unwrap().hosted_url, None);
}

/// `examples/custom_page.html`, the custom-page example's template, is
/// accepted and served: the gate answers a blocked account with it, in the
/// visitor's language, with the pay link checked like the built-in page's.
#[tokio::test]
async fn the_custom_page_example_renders_through_the_gate() {
    use tower::ServiceExt;
    let mut config = Config::default();
    config.page.template = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/custom_page.html").into();
    let b = memory().await;
    let account = pastdue::AccountId::new("acme").unwrap();
    b.store.apply(&account, None, &[unpaid("in_1", 4_900, Utc::now() - TimeDelta::days(20))]).await.unwrap();
    let gate = pastdue::gate::GateLayer::from_config(&config, b.store.clone()).expect("the example's template is accepted");
    let app = axum::Router::new().route("/api/ping", axum::routing::get(|| async { "pong" })).layer(gate);
    let req = http::Request::get("/api/ping")
        .header("x-account-id", "acme")
        .header("accept", "text/html")
        .header("accept-language", "de")
        .body(axum::body::Body::empty())
        .unwrap();
    let res = app.oneshot(req).await.unwrap();
    assert_eq!(res.status(), http::StatusCode::PAYMENT_REQUIRED);
    let body = axum::body::to_bytes(res.into_body(), 1 << 20).await.unwrap();
    let html = String::from_utf8(body.to_vec()).unwrap();
    assert!(html.contains(r#"data-brand="acme-billing""#), "{html}");
    assert!(html.contains("Der Zugang ist bis zur Zahlung pausiert"), "{html}");
    assert!(html.contains("49,00"), "{html}");
}

/// The page says when Stripe will try the card again, when it said so (and
/// the date is still ahead), in the visitor's language; not otherwise.
#[test]
fn the_page_says_when_the_card_is_tried_again() {
    let page = PaymentPage::default();
    let since = Utc::now() - TimeDelta::days(20);
    let retry = Utc::now() + TimeDelta::days(3);
    let mut owed = unpaid("in_1", 4_900, since);
    if let Change::InvoiceUnpaid { invoice, .. } = &mut owed {
        invoice.next_attempt = Some(retry);
    }
    let s = state(&[owed]);
    let standing = Standing::evaluate(Some(&s), &Ladder::standard(), Utc::now());
    let langs = Languages::builtin().unwrap();
    let en = text(&page.render("acme", &standing, Some(&s), Some("en")));
    assert!(en.contains(&format!("We will try your card again on {}.", langs.choose(None, Some("en")).date(retry))), "{en}");
    let de = text(&page.render("acme", &standing, Some(&s), Some("de")));
    assert!(de.contains("erneut, Ihre Karte zu belasten"), "{de}");
    let without = state(&[unpaid("in_1", 4_900, since)]);
    let plain = page.render("acme", &Standing::evaluate(Some(&without), &Ladder::standard(), Utc::now()), Some(&without), Some("en"));
    assert!(!plain.contains("try your card again"), "{plain}");
}
