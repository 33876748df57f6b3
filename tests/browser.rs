//! The please-pay page and the banner in a real browser: headless Chromium
//! (Debian's `chromium`, installed by scripts/test.sh) loads the demo and
//! the test asserts on the DOM it rendered. Screenshots are kept under
//! `target/browser/` as artifacts.

#[macro_use]
mod common;

use std::path::PathBuf;
use std::process::Command;

fn chromium() -> String {
    let bin = std::env::var("CHROMIUM_BIN").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(std::path::Path::new(&bin).exists(), "{bin} is missing: scripts/test.sh installs Debian's chromium");
    bin
}

fn artifacts() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/browser");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs headless Chromium once with a fresh profile; returns stdout.
fn browse(url: &str, lang: &str, extra: &[String]) -> String {
    let profile = tempdir();
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--accept-lang={lang}"))
        .args(extra)
        .arg(url)
        .output()
        .expect("chromium runs");
    let _ = std::fs::remove_dir_all(&profile);
    assert!(out.status.success(), "chromium failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn tempdir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pastdue-chromium-{}-{}", std::process::id(), common::free_port()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn dom(url: &str, lang: &str) -> String {
    browse(url, lang, &["--dump-dom".into()])
}

fn screenshot(url: &str, lang: &str, name: &str, width: u32) {
    let path = artifacts().join(format!("{name}.png"));
    browse(url, lang, &[format!("--screenshot={}", path.display()), format!("--window-size={width},900")]);
    assert!(std::fs::metadata(&path).is_ok_and(|m| m.len() > 1000), "screenshot {name} was written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_renders_the_page_in_two_languages_and_the_banner_once() {
    let demo = common::start_demo(&[]);
    let http = reqwest::Client::new();
    for (account, days) in [("late-customer", 20), ("reminded", 0)] {
        let url = format!("{}/demo/invoice-failed?account={account}&days_ago={days}", demo.url);
        assert!(http.post(url).send().await.unwrap().status().is_success());
    }
    let blocked = format!("{}/?account=late-customer", demo.url);
    let reminded = format!("{}/?account=reminded", demo.url);

    let (url, demo_url) = (blocked.clone(), demo.url.clone());
    let (es, de, banner) = tokio::task::spawn_blocking(move || {
        let es = dom(&url, "es-MX,es");
        let de = dom(&url, "de");
        let banner = dom(&format!("{demo_url}/?account=reminded"), "en");
        (es, de, banner)
    })
    .await
    .unwrap();

    assert!(es.contains("<html lang=\"es\">"), "{es}");
    assert!(es.contains("49,00\u{a0}€") || es.contains("49,00&nbsp;€"), "Spanish amount");
    assert!(es.contains("Pagar 49,00"), "Spanish pay button");
    assert!(es.contains("href=\"/billing?account=late-customer&amp;invoice=in_demo\""), "pay link: {es}");
    assert!(!es.contains("<script"), "no JavaScript");

    assert!(de.contains("<html lang=\"de\">") && de.contains("jetzt bezahlen"), "German page");

    assert_eq!(banner.matches("id=\"pastdue-dismiss\"").count(), 1, "the banner, once: {banner}");
    assert!(banner.contains("Friendly reminder") && banner.contains("<h1>Dashboard</h1>"));

    tokio::task::spawn_blocking(move || {
        screenshot(&blocked, "es", "blocked-es-320", 320);
        screenshot(&blocked, "de", "blocked-de-1920", 1920);
        screenshot(&reminded, "en", "banner-en", 1280);
    })
    .await
    .unwrap();
}

/// A stage that closes `reports` (the demo's tagged route): chromium gets
/// the page naming the feature and the day the rest closes, in German,
/// while the dashboard of the same account still opens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_renders_a_closed_feature_in_german() {
    let dir = tempdir();
    let file = dir.join("closes.toml");
    std::fs::write(&file, common::LADDER_CLOSING_REPORTS).unwrap();
    let demo = common::start_demo(&[("PASTDUE_CONFIG", file.display().to_string())]);
    let http = reqwest::Client::new();
    let late = format!("{}/demo/invoice-failed?account=analyst&days_ago=15", demo.url);
    assert!(http.post(late).send().await.unwrap().status().is_success());
    let reports = format!("{}/api/reports?account=analyst", demo.url);
    let dashboard = format!("{}/?account=analyst", demo.url);
    let (page, home) = tokio::task::spawn_blocking({
        let (reports, dashboard) = (reports.clone(), dashboard.clone());
        move || (dom(&reports, "de"), dom(&dashboard, "de"))
    })
    .await
    .unwrap();
    assert!(page.contains("<html lang=\"de\">") && page.contains("reports ist bis zum Zahlungseingang pausiert"), "{page}");
    assert!(page.contains("Alles andere funktioniert weiter bis zum"), "{page}");
    assert!(page.contains("49,00"), "the amount: {page}");
    assert!(home.contains("<h1>Dashboard</h1>"), "the rest stays open: {home}");
    tokio::task::spawn_blocking(move || screenshot(&reports, "de", "feature-closed-de-1280", 1280)).await.unwrap();
}

/// The operator console in Chromium (playwright-core, tests/browser/):
/// sign in, find an account by e-mail, open it, preview what the customer
/// sees, record a promise and a note, allow it until a date and see the
/// stage change and the audit entry — all with JavaScript off; then
/// axe-core (WCAG 2.1 AA) on every page at 1280 and 320 px, light and
/// dark, with nothing scrolling sideways. Screenshots in target/browser/.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_works_a_ticket_in_the_console_and_axe_finds_nothing() {
    use pastdue::state::Change;
    let modules = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser/node_modules/playwright-core");
    assert!(std::path::Path::new(modules).exists(), "tests/browser/node_modules is missing: scripts/test.sh installs it (npm ci --prefix tests/browser)");
    let redis = common::RedisServer::start();
    let store = common::store_with(&redis.url(), common::relaxed()).await;
    let token = "console-browser-token-0123456789";
    let mut config = pastdue::Config::default();
    config.admin.tokens = vec![pastdue::admin::NamedToken::new("alice", token)];
    config.stripe.webhook_secret = "whsec_browser".into();
    let parts = pastdue::Pastdue::new(&config, store.clone()).build().unwrap();
    // Customers in every stage, and debts paid at each, for the charts.
    let now = chrono::Utc::now();
    let days = chrono::TimeDelta::days;
    let acct = |a: &str| pastdue::AccountId::new(a).unwrap();
    // Owing at Stripe and at Paddle: the preview lists both invoices.
    store.apply(&acct("acme"), None, &[common::unpaid("in_acme", 4_900, now - days(20)), common::unpaid("paddle:txn_01hacme", 1_500, now - days(3)), Change::ContactEmail("billing@acme.example".into())]).await.unwrap();
    for (i, late) in [1i64, 8, 9, 15, 25].into_iter().enumerate() {
        store.apply(&acct(&format!("customer-{i}")), None, &[common::unpaid(&format!("in_c{i}"), 1_200 * (i as i64 + 1), now - days(late))]).await.unwrap();
    }
    for (i, (started, took)) in [(80i64, 2i64), (60, 15), (40, 20), (35, 1), (10, 3)].into_iter().enumerate() {
        let id = format!("in_paid{i}");
        store.apply(&acct(&format!("payer-{i}")), None, &[common::unpaid(&id, 2_500, now - days(started)), common::settled(&id, now - days(started - took))]).await.unwrap();
    }
    pastdue::store::refresh_at_risk(store.as_ref(), parts.gate.policy(), now).await.unwrap();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().merge(parts.routes.clone());
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let out = artifacts();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser/console.mjs");
    let run = tokio::process::Command::new("node")
        .arg(script)
        .env("BASE", format!("http://{addr}/admin"))
        .env("TOKEN", token)
        .env("ACCOUNT", "acme")
        .env("EMAIL", "billing@acme.example")
        .env("OUT", &out)
        .env("CHROMIUM", chromium())
        .output()
        .await
        .expect("node runs (scripts/test.sh installs it)");
    server.abort();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&run.stderr));
    let report: serde_json::Value = serde_json::from_str(stdout.trim().lines().last().unwrap_or("{}")).unwrap();
    assert_eq!(report["ok"], true, "{stdout}");
    assert_eq!(report["pages"].as_array().map(Vec::len), Some(21), "7 pages × 3 views: {stdout}");
    assert!(std::fs::metadata(out.join("console-accounts-acme-320-light.png")).is_ok_and(|m| m.len() > 1000));
}
