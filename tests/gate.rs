//! The gate end to end through axum apps, on the memory store and a real
//! `redis-server`.

#[macro_use]
mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use chrono::{TimeDelta, Utc};
use common::*;
use http::{Request, StatusCode};
use pastdue::config::{Config, Fallback};
use pastdue::gate::{ExtensionResolver, GateLayer, SubdomainResolver};
use pastdue::state::{Change, Override, OverrideMode};
use pastdue::store::Store;
use pastdue::{AccountId, Action, Ladder, Standing};
use tower::ServiceExt;

fn acct(id: &str) -> AccountId {
    AccountId::new(id).unwrap()
}

/// notice at 0, warn at 1 day, read_only at 2 days, block at 3 days.
fn every_action_ladder() -> Ladder {
    Ladder::new([
        ("notice", Duration::ZERO, Action::Notice),
        ("warning", Duration::from_secs(86_400), Action::Warn),
        ("read-only", Duration::from_secs(2 * 86_400), Action::ReadOnly),
        ("suspended", Duration::from_secs(3 * 86_400), Action::Block),
    ])
    .unwrap()
}

/// A handler that reports what the gate told it.
async fn report(standing: Option<Standing>) -> String {
    match standing {
        Some(s) => format!("stage={} action={}", s.stage().name(), s.action()),
        None => "no standing".into(),
    }
}

fn app(gate: GateLayer) -> Router {
    Router::new()
        .route("/api/thing", get(report).post(report))
        .route("/billing", get(report))
        .route("/healthz", get(report))
        .layer(gate)
}

/// Records a debt whose first failure was `days` days ago.
async fn owe(store: &Arc<dyn Store>, account: &str, days: i64) {
    let since = Utc::now() - TimeDelta::days(days) - TimeDelta::minutes(1);
    store.apply(&acct(account), None, &[unpaid("in_1", 1200, since)]).await.unwrap();
}

struct Reply {
    status: StatusCode,
    stage: Option<String>,
    content_type: String,
    cache_control: Option<String>,
    body: String,
}

async fn send(app: &Router, req: Request<Body>) -> Reply {
    let res = app.clone().oneshot(req).await.unwrap();
    let header = |name: &str| res.headers().get(name).map(|v| v.to_str().unwrap().to_owned());
    let (status, stage, content_type, cache_control) =
        (res.status(), header("billing-stage"), header("content-type").unwrap_or_default(), header("cache-control"));
    let bytes = axum::body::to_bytes(res.into_body(), usize::MAX).await.unwrap();
    Reply { status, stage, content_type, cache_control, body: String::from_utf8(bytes.to_vec()).unwrap() }
}

fn req(method: &str, path: &str, account: Option<&str>, accept: Option<&str>) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(path);
    if let Some(a) = account {
        b = b.header("x-account-id", a);
    }
    if let Some(a) = accept {
        b = b.header("accept", a);
    }
    b.body(Body::empty()).unwrap()
}

backend_suite!(
    each_action_end_to_end,
    browsers_get_the_page_and_api_clients_problem_json,
    exempt_paths_and_requests_without_account_pass_untouched,
    resolvers_header_extension_subdomain,
    a_write_is_seen_by_the_next_request,
    invalid_account_ids_get_a_clear_400,
    canceled_gets_its_own_words,
);

async fn each_action_end_to_end(b: Backend) {
    let app = app(GateLayer::new(b.store.clone()).with_ladder(every_action_ladder()));
    for (account, days) in [("n", 0), ("w", 1), ("r", 2), ("s", 3)] {
        owe(&b.store, account, days).await;
    }
    let table = [
        ("fine", "GET", StatusCode::OK, None, "stage=active action=allow"),
        ("n", "GET", StatusCode::OK, Some("notice"), "stage=notice action=notice"),
        ("n", "POST", StatusCode::OK, Some("notice"), "stage=notice action=notice"),
        ("w", "POST", StatusCode::OK, Some("warning"), "stage=warning action=warn"),
        ("r", "GET", StatusCode::OK, Some("read-only"), "stage=read-only action=read_only"),
        ("r", "POST", StatusCode::PAYMENT_REQUIRED, Some("read-only"), ""),
        ("s", "GET", StatusCode::PAYMENT_REQUIRED, Some("suspended"), ""),
        ("s", "POST", StatusCode::PAYMENT_REQUIRED, Some("suspended"), ""),
    ];
    // Twice: the first round fills the cache, the second is served from it.
    for round in 0..2 {
        for (account, method, status, stage, body) in table {
            let r = send(&app, req(method, "/api/thing", Some(account), None)).await;
            assert_eq!(r.status, status, "round {round} {account} {method}");
            assert_eq!(r.stage.as_deref(), stage, "round {round} {account} {method}");
            if status == StatusCode::OK {
                assert_eq!(r.body, body);
            } else {
                assert_eq!(r.cache_control.as_deref(), Some("no-store"));
            }
        }
    }
}

async fn browsers_get_the_page_and_api_clients_problem_json(b: Backend) {
    let mut config = Config::default();
    config.page.product_name = "Acme Analytics".into();
    config.page.support_email = "help@acme.test".into();
    let gate = GateLayer::from_config(&config, b.store.clone()).unwrap();
    let app = app(gate);
    owe(&b.store, "late", 18).await;
    let chrome = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8";
    let page = send(&app, req("GET", "/api/thing", Some("late"), Some(chrome))).await;
    assert_eq!(page.status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(page.content_type, "text/html; charset=utf-8");
    let since = (Utc::now() - TimeDelta::days(18) - TimeDelta::minutes(1)).format("%-d %B %Y").to_string();
    // What a browser reads: minijinja escapes '/' in attributes.
    let text = page.body.replace("&#x2f;", "/");
    for needle in [
        "€12.00",
        "Acme Analytics",
        "help@acme.test",
        "href=\"https://invoice.stripe.com/i/in_1\"",
        since.as_str(),
        "N-in_1",
        "<html lang=\"en\">",
    ] {
        assert!(text.contains(needle), "page lacks {needle:?}");
    }
    assert!(!page.body.contains("<script"), "no JavaScript on the page");

    for accept in [None, Some("*/*"), Some("application/json")] {
        let api = send(&app, req("GET", "/api/thing", Some("late"), accept)).await;
        assert_eq!(api.status, StatusCode::PAYMENT_REQUIRED);
        assert_eq!(api.content_type, "application/problem+json");
        let v: serde_json::Value = serde_json::from_str(&api.body).unwrap();
        let mut keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        assert_eq!(
            keys,
            ["account", "amount_due", "currency", "detail", "past_due_since", "pay_url", "stage", "status", "suspended_since", "title", "type"]
        );
        assert_eq!(v["status"], 402);
        assert_eq!(v["account"], "late");
        assert_eq!(v["stage"], "suspended");
        assert_eq!(v["amount_due"], 1200);
        assert_eq!(v["currency"], "eur");
        assert_eq!(v["pay_url"], "https://invoice.stripe.com/i/in_1");
        let past_due: chrono::DateTime<Utc> = v["past_due_since"].as_str().unwrap().parse().unwrap();
        let suspended: chrono::DateTime<Utc> = v["suspended_since"].as_str().unwrap().parse().unwrap();
        assert_eq!(suspended - past_due, TimeDelta::days(17));
        assert!(v["type"].as_str().unwrap().starts_with("https://"));
    }
}

async fn exempt_paths_and_requests_without_account_pass_untouched(b: Backend) {
    let app = app(GateLayer::new(b.store.clone()));
    owe(&b.store, "late", 30).await;
    for path in ["/billing", "/healthz"] {
        let r = send(&app, req("GET", path, Some("late"), None)).await;
        assert_eq!((r.status, r.stage.as_deref(), r.body.as_str()), (StatusCode::OK, None, "no standing"), "{path}");
    }
    let r = send(&app, req("GET", "/api/thing", None, None)).await;
    assert_eq!((r.status, r.stage.as_deref(), r.body.as_str()), (StatusCode::OK, None, "no standing"));
    let r = send(&app, req("GET", "/api/thing", Some("late"), None)).await;
    assert_eq!(r.status, StatusCode::PAYMENT_REQUIRED);
    // Dot segments never make a gated route exempt: the gate decides on the
    // path the router routes on, and an upstream that resolves them would
    // serve /api/thing.
    for dots in ["/billing/../api/thing", "/billing/%2e%2e/api/thing", "/webhooks/../api/thing"] {
        let r = send(&app, req("GET", dots, Some("late"), None)).await;
        assert_eq!(r.status, StatusCode::PAYMENT_REQUIRED, "{dots}");
    }
}

async fn resolvers_header_extension_subdomain(b: Backend) {
    owe(&b.store, "acme", 30).await;
    // Extension: an auth layer of the app's own puts the AccountId there.
    let gate = GateLayer::new(b.store.clone()).with_resolver(ExtensionResolver);
    let ext_app = app(gate).layer(axum::middleware::from_fn(
        |mut req: Request<Body>, next: axum::middleware::Next| async move {
            if req.headers().contains_key("authorization") {
                req.extensions_mut().insert(AccountId::new("acme").unwrap());
            }
            next.run(req).await
        },
    ));
    let mut authed = req("GET", "/api/thing", None, None);
    authed.headers_mut().insert("authorization", "Bearer x".parse().unwrap());
    assert_eq!(send(&ext_app, authed).await.status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(send(&ext_app, req("GET", "/api/thing", Some("acme"), None)).await.status, StatusCode::OK, "the extension resolver ignores the header");

    let sub_app = app(GateLayer::new(b.store.clone()).with_resolver(SubdomainResolver::new("app.test")));
    let host = |h: &str| Request::get("/api/thing").header("host", h).body(Body::empty()).unwrap();
    assert_eq!(send(&sub_app, host("acme.app.test")).await.status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(send(&sub_app, host("other.app.test")).await.status, StatusCode::OK);
    assert_eq!(send(&sub_app, host("app.test")).await.body, "no standing");

    let header_app = app(GateLayer::new(b.store.clone()));
    assert_eq!(send(&header_app, req("GET", "/api/thing", Some("acme"), None)).await.status, StatusCode::PAYMENT_REQUIRED);
}

async fn a_write_is_seen_by_the_next_request(b: Backend) {
    let app = app(GateLayer::new(b.store.clone()));
    assert_eq!(send(&app, req("GET", "/api/thing", Some("acme"), None)).await.status, StatusCode::OK);
    let block = Change::SetOverride(Override {
        mode: OverrideMode::Block,
        until: None,
        reason: "chargeback".into(),
        by: "test".into(),
        at: Utc::now(),
    });
    b.store.apply(&acct("acme"), None, &[block]).await.unwrap();
    let mut last = StatusCode::OK;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    while tokio::time::Instant::now() < deadline {
        last = send(&app, req("GET", "/api/thing", Some("acme"), None)).await.status;
        if last == StatusCode::PAYMENT_REQUIRED {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(last, StatusCode::PAYMENT_REQUIRED, "the override reached the gate within 1 s");
    b.store.apply(&acct("acme"), None, &[Change::ClearOverride]).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    while tokio::time::Instant::now() < deadline {
        last = send(&app, req("GET", "/api/thing", Some("acme"), None)).await.status;
        if last == StatusCode::OK {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(last, StatusCode::OK, "blocking stops the moment it is lifted");
}

async fn invalid_account_ids_get_a_clear_400(b: Backend) {
    let app = app(GateLayer::new(b.store.clone()));
    let r = send(&app, req("GET", "/api/thing", Some("a}b"), None)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.content_type, "application/problem+json");
    assert!(r.body.contains("invalid account id"), "{}", r.body);
}

async fn canceled_gets_its_own_words(b: Backend) {
    let app = app(GateLayer::new(b.store.clone()));
    b.store
        .apply(&acct("gone"), None, &[subscription("sub_1", pastdue::state::SubscriptionStatus::Canceled, Utc::now())])
        .await
        .unwrap();
    let page = send(&app, req("GET", "/api/thing", Some("gone"), Some("text/html"))).await;
    assert_eq!((page.status, page.stage.as_deref()), (StatusCode::PAYMENT_REQUIRED, Some("canceled")));
    assert!(page.body.contains("subscription has ended"));
    assert!(!page.body.contains("owed"), "canceled is not debt");
    let api = send(&app, req("GET", "/api/thing", Some("gone"), None)).await;
    let v: serde_json::Value = serde_json::from_str(&api.body).unwrap();
    assert_eq!((v["stage"].as_str(), v["amount_due"].as_i64()), (Some("canceled"), Some(0)));
    assert_eq!(v["type"], pastdue::gate::ENDED_TYPE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_one_redis_and_see_each_others_writes() {
    let server = RedisServer::start();
    two_instances(&server.url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_one_redis_cluster_and_see_each_others_writes() {
    let cluster = RedisCluster::start();
    two_instances(&cluster.url()).await;
}

/// Two gates, each with its own connection, listener and cache.
async fn two_instances(url: &str) {
    let (store_a, store_b) = (store_with(url, relaxed()).await, store_with(url, relaxed()).await);
    let app_b = app(GateLayer::new(store_b));
    // B caches "active" first, so only an invalidation can change its mind.
    for _ in 0..3 {
        assert_eq!(send(&app_b, req("GET", "/api/thing", Some("shared"), None)).await.status, StatusCode::OK);
    }
    let started = std::time::Instant::now();
    owe(&store_a, "shared", 30).await;
    let mut status = StatusCode::OK;
    while started.elapsed() < Duration::from_secs(1) && status == StatusCode::OK {
        status = send(&app_b, req("GET", "/api/thing", Some("shared"), None)).await.status;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "instance B saw A's write within 1 s (took {:?})", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_keeps_cached_decisions_and_applies_the_policy_to_the_rest() {
    let mut server = RedisServer::start();
    let store = store_at(&server.url()).await;
    owe(&store, "late", 30).await;
    let fail_open = app(GateLayer::new(store.clone()));
    let mut config = Config::default();
    config.gate.on_store_error = Fallback::Block;
    let fail_closed = app(GateLayer::from_config(&config, store.clone()).unwrap());
    for app in [&fail_open, &fail_closed] {
        assert_eq!(send(app, req("GET", "/api/thing", Some("late"), None)).await.status, StatusCode::PAYMENT_REQUIRED);
        assert_eq!(send(app, req("GET", "/api/thing", Some("fine"), None)).await.status, StatusCode::OK);
    }

    server.stop();
    // Wait until the listener noticed (it marks every entry unverified), so
    // the requests below really exercise the outage path.
    let down = redis_is_down(&store).await;
    assert!(down);
    for round in 0..3 {
        for (app, uncached) in [(&fail_open, StatusCode::OK), (&fail_closed, StatusCode::PAYMENT_REQUIRED)] {
            let late = send(app, req("GET", "/api/thing", Some("late"), None)).await;
            assert_eq!(late.status, StatusCode::PAYMENT_REQUIRED, "round {round}: cached debt still blocks");
            let fine = send(app, req("GET", "/api/thing", Some("fine"), None)).await;
            assert_eq!(fine.status, StatusCode::OK, "round {round}: cached good standing still passes");
            let new = send(app, req("GET", "/api/thing", Some("never-seen"), None)).await;
            assert_eq!(new.status, uncached, "round {round}: uncached follows on_store_error");
        }
    }

    server.restart();
    // Everything resumes by itself: a write after the restart reaches the gate.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while store.apply(&acct("late"), None, &[settled("in_1", Utc::now())]).await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "store did not come back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The restarted Redis is empty, so "late" is now unknown → allowed.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let s = send(&fail_open, req("GET", "/api/thing", Some("late"), None)).await.status;
        if s == StatusCode::OK {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the gate never saw the post-restart state");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn redis_is_down(store: &Arc<dyn Store>) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while tokio::time::Instant::now() < deadline {
        if store.ping().await.is_err() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

/// The reminder banner goes into the app's HTML, once, and nowhere else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_banner_is_injected_into_html_only() {
    use axum::response::{Html, IntoResponse};
    let b = memory().await;
    owe(&b.store, "reminded", 0).await; // notice
    owe(&b.store, "warned", 15).await; // warning
    let page = "<!doctype html><html><head><title>x</title></head><body class=\"app\"><h1>Dashboard</h1></body></html>";
    let app = Router::new()
        .route("/html", get(move || async move { Html(page) }))
        .route("/json", get(|| async { axum::Json(serde_json::json!({ "body": "<body>" })) }))
        .route("/gzip", get(move || async move { ([("content-encoding", "gzip"), ("content-type", "text/html")], page).into_response() }))
        .route("/stream", get(move || async move {
            let chunks = futures_util::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from(page))]);
            ([("content-type", "text/html")], Body::from_stream(chunks)).into_response()
        }))
        .layer(GateLayer::new(b.store.clone()).with_banner(Some(64 * 1024)));
    let get_page = |path: &str, account: &str, lang: &str| {
        Request::get(path).header("x-account-id", account).header("accept-language", lang).body(Body::empty()).unwrap()
    };

    let res = app.clone().oneshot(get_page("/html", "reminded", "en")).await.unwrap();
    let declared: usize = res.headers()["content-length"].to_str().unwrap().parse().unwrap();
    let body = String::from_utf8(axum::body::to_bytes(res.into_body(), usize::MAX).await.unwrap().to_vec()).unwrap();
    assert_eq!(declared, body.len(), "Content-Length matches the new body");
    assert_eq!(body.matches("id=\"pastdue-dismiss\"").count(), 1, "exactly one banner");
    assert!(body.starts_with("<!doctype html><html><head><title>x</title></head><body class=\"app\"><input type=\"checkbox\" id=\"pastdue-dismiss\""));
    assert!(body.contains("€12.00") && body.contains("Friendly reminder") && body.contains("<h1>Dashboard</h1>"));
    assert!(!body.contains("<script"));

    let res = app.clone().oneshot(get_page("/html", "warned", "de")).await.unwrap();
    let body = String::from_utf8(axum::body::to_bytes(res.into_body(), usize::MAX).await.unwrap().to_vec()).unwrap();
    assert!(body.contains("pastdue-warn") && body.contains("12,00\u{a0}€") && body.contains("lang=\"de\""), "{body}");

    for (path, account) in [("/json", "reminded"), ("/gzip", "reminded"), ("/stream", "reminded"), ("/html", "paying-customer")] {
        let res = app.clone().oneshot(get_page(path, account, "en")).await.unwrap();
        let body = axum::body::to_bytes(res.into_body(), usize::MAX).await.unwrap();
        assert!(!String::from_utf8_lossy(&body).contains("pastdue-banner"), "{path} for {account} must pass untouched");
    }
}

/// `banner.before_due`: an account in good standing sees "your invoice is
/// due on …" in the days before an invoice it pays itself falls due — in
/// its language, with the invoice's own page as the button — and never a
/// gate: no `Billing-Stage`, the handler still sees `active`. Automatic
/// renewals, dues beyond the window and paid invoices show nothing. Real
/// Redis, so the payment reaches the gate as an invalidation; the clock is
/// moved, not waited for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_before_due_banner_reminds_without_gating() {
    use axum::response::Html;
    use pastdue::clock::{Clock, ManualClock};
    let b = redis().await;
    let clock = ManualClock::starting_at(Utc::now());
    let now = clock.now();
    let days = |d: i64| now + TimeDelta::days(d);
    b.store.apply(&acct("soon"), None, &[upcoming("in_soon", 4_900, days(2), now)]).await.unwrap();
    b.store.apply(&acct("later"), None, &[upcoming("in_later", 1_200, days(10), now)]).await.unwrap();
    b.store.apply(&acct("renewing"), None, &[upcoming("upcoming:sub_1", 4_900, days(1), now)]).await.unwrap();
    let page = "<!doctype html><html><body><h1>Dashboard</h1></body></html>";
    let app = |gate: GateLayer| {
        Router::new()
            .route("/html", get(move || async move { Html(page) }))
            .route("/api/thing", get(report))
            .layer(gate.with_clock(clock.shared()).with_banner(Some(64 * 1024)))
    };
    let with_due = app(GateLayer::new(b.store.clone()).with_before_due_banner(Some(Duration::from_secs(3 * 86_400))));
    let without = app(GateLayer::new(b.store.clone()));
    let html = |account: &str, lang: &str| {
        Request::get("/html").header("x-account-id", account).header("accept-language", lang).body(Body::empty()).unwrap()
    };

    let r = send(&with_due, html("soon", "de")).await;
    assert_eq!((r.status, r.stage.as_deref()), (StatusCode::OK, None), "a reminder never gates");
    assert_eq!(r.body.matches("id=\"pastdue-dismiss\"").count(), 1, "one banner: {}", r.body);
    assert!(r.body.contains("Ihre Rechnung über 49,00\u{a0}€") && r.body.contains(" fällig."), "{}", r.body);
    assert!(r.body.contains("href=\"https:&#x2f;&#x2f;invoice.stripe.com&#x2f;i&#x2f;in_soon\""), "the invoice's own page: {}", r.body);
    assert_eq!(r.cache_control.as_deref(), Some("private"));
    let r = send(&with_due, html("soon", "en")).await;
    assert!(r.body.contains("Your invoice of €49.00 to ") && r.body.contains(" is due on "), "{}", r.body);
    // What the handler sees is still good standing.
    let r = send(&with_due, req("GET", "/api/thing", Some("soon"), None)).await;
    assert_eq!((r.status, r.stage, r.body.as_str()), (StatusCode::OK, None, "stage=active action=allow"));

    for (app, account, why) in [
        (&without, "soon", "off unless configured"),
        (&with_due, "later", "due beyond the window"),
        (&with_due, "renewing", "Stripe charges a renewal itself"),
        (&with_due, "paying", "nothing due"),
    ] {
        let r = send(app, html(account, "en")).await;
        assert_eq!(r.status, StatusCode::OK);
        assert!(!r.body.contains("pastdue-banner"), "{why}: {}", r.body);
    }

    // A week later the second invoice is in the window: time alone, no write.
    clock.advance(TimeDelta::days(8));
    let r = send(&with_due, html("later", "en")).await;
    assert!(r.body.contains("Your invoice of €12.00"), "{}", r.body);

    // Paid: the banner goes with the invalidation.
    b.store.apply(&acct("later"), None, &[settled("in_later", clock.now())]).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while send(&with_due, html("later", "en")).await.body.contains("pastdue-banner") {
        assert!(tokio::time::Instant::now() < deadline, "the paid invoice is still announced");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// An injected banner makes the body one account's: never cached as a
/// shared page, never validated against the app's own body, and only ever
/// put into a full `200`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_banner_makes_a_response_private_and_only_touches_200s() {
    use axum::response::{Html, IntoResponse};
    let b = memory().await;
    owe(&b.store, "reminded", 0).await;
    let page = "<!doctype html><html><body><h1>Reports</h1></body></html>";
    let app = Router::new()
        .route("/public", get(move || async move {
            ([("cache-control", "public, max-age=60"), ("etag", "\"v1\""), ("last-modified", "Sun, 22 Nov 2026 10:00:00 GMT")], Html(page)).into_response()
        }))
        .route("/no-store", get(move || async move { ([("cache-control", "no-store")], Html(page)).into_response() }))
        .route("/partial", get(move || async move {
            (StatusCode::PARTIAL_CONTENT, [("content-range", "bytes 0-56/100")], Html(page)).into_response()
        }))
        .route("/not-modified", get(|| async { (StatusCode::NOT_MODIFIED, [("etag", "\"v1\"")], Html("")).into_response() }))
        .route("/not-found", get(move || async move { (StatusCode::NOT_FOUND, Html(page)).into_response() }))
        .layer(GateLayer::new(b.store.clone()).with_banner(Some(64 * 1024)));
    let get_page = |path: &str| Request::get(path).header("x-account-id", "reminded").body(Body::empty()).unwrap();

    let res = app.clone().oneshot(get_page("/public")).await.unwrap();
    assert_eq!(res.headers()["cache-control"], "private, max-age=60");
    assert!(res.headers().get("etag").is_none() && res.headers().get("last-modified").is_none());
    let body = String::from_utf8(axum::body::to_bytes(res.into_body(), usize::MAX).await.unwrap().to_vec()).unwrap();
    assert!(body.contains("pastdue-banner"));

    let res = app.clone().oneshot(get_page("/no-store")).await.unwrap();
    assert_eq!(res.headers()["cache-control"], "private, no-store");

    for (path, status) in [("/partial", StatusCode::PARTIAL_CONTENT), ("/not-modified", StatusCode::NOT_MODIFIED), ("/not-found", StatusCode::NOT_FOUND)] {
        let res = app.clone().oneshot(get_page(path)).await.unwrap();
        assert_eq!(res.status(), status);
        let headers = res.headers().clone();
        let body = axum::body::to_bytes(res.into_body(), usize::MAX).await.unwrap();
        assert!(!String::from_utf8_lossy(&body).contains("pastdue-banner"), "{path} passes untouched");
        assert!(headers.get("cache-control").is_none(), "{path} keeps the app's headers");
        if path == "/not-modified" {
            assert_eq!(headers["etag"], "\"v1\"");
        }
    }
}

/// The query resolver reads the query as axum's `Query` does, so neither an
/// encoded name nor a repeated parameter reaches a blocked account's
/// handler with the gate's blessing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_query_resolver_cannot_be_steered() {
    use pastdue::gate::{QueryResolver, ResolveAccount};
    let b = redis().await;
    owe(&b.store, "victim", 30).await; // suspended
    let gate = GateLayer::new(b.store.clone()).with_resolver(QueryResolver::new("account").or(pastdue::gate::HeaderResolver::default()));
    // The handler reads the account the way apps do: axum's Query.
    let app = Router::new()
        .route("/api/thing", get(|q: axum::extract::Query<std::collections::HashMap<String, String>>| async move { format!("serving {:?}", q.get("account")) }))
        .layer(gate);
    let r = send(&app, req("GET", "/api/thing?acc%6Funt=victim", None, None)).await;
    assert_eq!(r.status, StatusCode::PAYMENT_REQUIRED, "{}", r.body);
    for uri in ["/api/thing?account=paying&account=victim", "/api/thing?account=victim&acc%6Funt=paying"] {
        let r = send(&app, req("GET", uri, None, None)).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{uri}: {}", r.body);
        assert_eq!(r.content_type, "application/problem+json");
        assert!(r.body.contains("ambiguous account"), "{}", r.body);
    }
    // Two X-Account-Id headers are just as ambiguous.
    let twice = Request::get("/api/thing").header("x-account-id", "paying").header("x-account-id", "victim").body(Body::empty()).unwrap();
    assert_eq!(send(&app, twice).await.status, StatusCode::BAD_REQUEST);
    let r = send(&app, req("GET", "/api/thing?account=paying", None, None)).await;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "serving Some(\"paying\")"));
}

/// Hosts are case-insensitive and may end with a dot: the subdomain
/// resolver finds the same (blocked) account behind every spelling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_subdomain_resolver_reads_every_spelling_of_a_host() {
    let b = redis().await;
    owe(&b.store, "acme", 30).await;
    let app = app(GateLayer::new(b.store.clone()).with_resolver(SubdomainResolver::new("app.example.com")));
    for host in ["acme.app.example.com", "ACME.app.example.com", "acme.app.example.com.", "Acme.App.Example.Com.:443"] {
        let r = send(&app, Request::get("/api/thing").header("host", host).body(Body::empty()).unwrap()).await;
        assert_eq!(r.status, StatusCode::PAYMENT_REQUIRED, "{host}");
    }
}

/// An auth layer added inside the gate (so it runs after it) leaves the gate
/// blind: every request passes ungated. The gate counts such requests,
/// warns once after 1,000, and `missing_account = "deny"` refuses them.
#[tokio::test]
async fn a_gate_that_never_sees_an_account_says_so() {
    use pastdue::config::MissingAccount;
    use std::sync::Mutex;
    let b = memory().await;
    owe(&b.store, "blocked-co", 30).await;
    // The app's auth: puts the AccountId into the extensions.
    let auth = axum::middleware::from_fn(|mut req: axum::extract::Request, next: axum::middleware::Next| async move {
        req.extensions_mut().insert(AccountId::new("blocked-co").unwrap());
        next.run(req).await
    });
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let gate = metrics::with_local_recorder(&recorder, || GateLayer::new(b.store.clone()).with_resolver(ExtensionResolver));
    let right: Router = Router::new().route("/api/thing", get(report)).layer(gate.clone()).layer(auth.clone());
    assert_eq!(send(&right, req("GET", "/api/thing", None, None)).await.status, StatusCode::PAYMENT_REQUIRED);

    // Capture warnings while the misordered app serves 1,000+ requests.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Lines {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let lines = Lines::default();
    let writer = lines.clone();
    let subscriber = tracing_subscriber::fmt().with_writer(move || writer.clone()).with_max_level(tracing::Level::WARN).finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    // A fresh gate (the one above already saw an account).
    let gate = metrics::with_local_recorder(&recorder, || GateLayer::new(b.store.clone()).with_resolver(ExtensionResolver));
    // Wrong: `.layer(auth)` first puts auth *inside* the gate.
    let misordered_fresh: Router = Router::new().route("/api/thing", get(report)).layer(auth.clone()).layer(gate);
    for _ in 0..1_005 {
        let r = send(&misordered_fresh, req("GET", "/api/thing", None, None)).await;
        assert_eq!(r.status, StatusCode::OK, "passes ungated: the mistake the warning is for");
    }
    let log = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
    assert_eq!(log.matches("not one named an account").count(), 1, "one warning: {log}");
    let unresolved: u64 = counter_total(&snapshotter, "pastdue_no_account_total");
    assert_eq!(unresolved, 1_005);

    // With "deny", the same mistake is a 401, not an open door.
    let strict = GateLayer::new(b.store.clone()).with_resolver(ExtensionResolver).with_missing_account(MissingAccount::Deny);
    let denied: Router = Router::new().route("/api/thing", get(report)).route("/healthz", get(report)).layer(auth).layer(strict);
    let r = send(&denied, req("GET", "/api/thing", None, None)).await;
    assert_eq!((r.status, r.content_type.as_str()), (StatusCode::UNAUTHORIZED, "application/problem+json"));
    assert_eq!(send(&denied, req("GET", "/healthz", None, None)).await.status, StatusCode::OK, "exempt paths still pass");
    // And from config.
    let cfg = Config::load_from(None, [("PASTDUE_GATE__MISSING_ACCOUNT".to_owned(), "deny".to_owned())]).unwrap();
    assert_eq!(cfg.gate.missing_account, MissingAccount::Deny);
    assert!(Config::load_from(None, [("PASTDUE_GATE__MISSING_ACCOUNT".to_owned(), "maybe".to_owned())]).is_err());
}

/// `with_cache` rebuilds the cache from `[cache]` settings on the same
/// store: still fed by invalidations, so a debt recorded after the first
/// lookup blocks the next request.
#[tokio::test]
async fn a_gate_built_from_typed_settings_keeps_its_cache_honest() {
    let b = memory().await;
    let mut cache = Config::default().cache;
    cache.capacity = 16;
    cache.ttl = std::time::Duration::from_secs(3_600);
    let gate = GateLayer::new(b.store.clone()).with_cache(&cache);
    let app: Router = Router::new().route("/api/thing", get(report)).layer(gate);
    assert_eq!(send(&app, req("GET", "/api/thing", Some("later-late"), None)).await.status, StatusCode::OK);
    owe(&b.store, "later-late", 30).await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let status = send(&app, req("GET", "/api/thing", Some("later-late"), None)).await.status;
        if status == StatusCode::PAYMENT_REQUIRED {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the invalidation never reached the rebuilt cache");
        tokio::task::yield_now().await;
    }
}

/// #26: constructors do no hidden work. A gate (and its cache) built where
/// no Tokio runtime runs does not panic; its listener starts with the first
/// store read, on the runtime serving it, and a write after that is never
/// served stale.
#[test]
fn a_gate_is_built_without_a_runtime() {
    let store: Arc<dyn Store> = Arc::new(pastdue::MemoryStore::new());
    let gate = GateLayer::new(store.clone());
    let app = app(gate);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        assert_eq!(send(&app, req("GET", "/api/thing", Some("late"), None)).await.status, StatusCode::OK, "unknown: passes, and cached");
        owe(&store, "late", 30).await;
        // The listener applies the write's invalidation on its turn.
        let status = status_once_heard(&app, "late", StatusCode::PAYMENT_REQUIRED).await;
        assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "the write evicted the cached pass");
    });
}

/// The cache's listener belongs to the runtime that first read the store.
/// When that runtime is gone, the next read on another runtime starts it
/// again (forgetting what was cached, since writes may have gone unheard):
/// a write after that is never served stale.
#[test]
fn the_listener_comes_back_on_a_new_runtime() {
    let store: Arc<dyn Store> = Arc::new(pastdue::MemoryStore::new());
    let app = app(GateLayer::new(store.clone()));
    let first = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    first.block_on(async {
        assert_eq!(send(&app, req("GET", "/api/thing", Some("late"), None)).await.status, StatusCode::OK);
    });
    drop(first); // its listener task goes with it
    let second = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    second.block_on(async {
        // A write while nobody listened: the restarted listener starts from
        // an empty cache, so the next request reads it.
        owe(&store, "late", 30).await;
        assert_eq!(send(&app, req("GET", "/api/other", Some("other"), None)).await.status, StatusCode::NOT_FOUND, "a read restarts the listener");
        assert_eq!(send(&app, req("GET", "/api/thing", Some("late"), None)).await.status, StatusCode::PAYMENT_REQUIRED);
        // And it hears writes again.
        store.apply(&AccountId::new("late").unwrap(), None, &[settled("in_1", Utc::now())]).await.unwrap();
        let status = status_once_heard(&app, "late", StatusCode::OK).await;
        assert_eq!(status, StatusCode::OK, "the payment was heard");
    });
}

/// The status `account`'s request gets once it is `want`, polled on a
/// current-thread runtime (yielding lets the listener run), or the last
/// one seen after 1,000 tries.
async fn status_once_heard(app: &Router, account: &str, want: StatusCode) -> StatusCode {
    let mut status = send(app, req("GET", "/api/thing", Some(account), None)).await.status;
    for _ in 0..1_000 {
        if status == want {
            break;
        }
        tokio::task::yield_now().await;
        status = send(app, req("GET", "/api/thing", Some(account), None)).await.status;
    }
    status
}
