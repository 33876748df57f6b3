//! The demo, both as a `Router` (no socket) and as the real binary over
//! loopback HTTP.

mod common;

#[path = "../examples/quickstart.rs"]
#[allow(dead_code, unreachable_pub)]
mod quickstart;

use std::sync::Arc;

use axum::body::Body;
use http::{Request, StatusCode};
use pastdue::{Config, MemoryStore};
use tower::ServiceExt;

#[tokio::test]
async fn app_reads_the_account_from_header_query_or_cookie() {
    let app = quickstart::app(&Config::default(), Arc::new(MemoryStore::new())).unwrap();
    let call = |req: Request<Body>| {
        let app = app.clone();
        async move { app.oneshot(req).await.unwrap() }
    };
    let fail = Request::post("/demo/invoice-failed?account=acme&days_ago=20").body(Body::empty()).unwrap();
    assert_eq!(call(fail).await.status(), StatusCode::OK);
    for req in [
        Request::get("/api/ping").header("x-account-id", "acme").body(Body::empty()).unwrap(),
        Request::get("/api/ping?account=acme").body(Body::empty()).unwrap(),
        Request::get("/api/ping").header("cookie", "account=acme").body(Body::empty()).unwrap(),
    ] {
        assert_eq!(call(req).await.status(), StatusCode::PAYMENT_REQUIRED);
    }
    let other = Request::get("/api/ping?account=someone-else").body(Body::empty()).unwrap();
    assert_eq!(call(other).await.status(), StatusCode::OK);
    let billing = Request::get("/billing?account=acme").body(Body::empty()).unwrap();
    assert_eq!(call(billing).await.status(), StatusCode::OK, "/billing is exempt");
}

const ADMIN: &str = "quickstart-admin-token-0123";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_binary_serves_over_http_on_redis() {
    let redis = common::RedisServer::start();
    // A loaded CI machine must not turn a slow read into fail-open here.
    let demo = common::start_demo(&[
        ("PASTDUE_STORE__URL", redis.url()),
        ("PASTDUE_STORE__READ_TIMEOUT", "2s".into()),
        ("PASTDUE_STRIPE__WEBHOOK_SECRET", "whsec_demo".into()),
        ("PASTDUE_ADMIN__TOKEN", ADMIN.into()),
        // Accounts at risk are counted every 60 polls: every 3 s here.
        ("PASTDUE_NOTIFY__POLL_INTERVAL", "50ms".into()),
    ]);
    let http = reqwest::Client::new();
    let get = |path: &str, account: Option<&str>| {
        let mut r = http.get(format!("{}{path}", demo.url));
        if let Some(a) = account {
            r = r.header("x-account-id", a);
        }
        r.send()
    };
    let health = get("/healthz", None).await.unwrap();
    assert_eq!(health.status(), 200);
    let ready = get("/readyz", None).await.unwrap();
    assert_eq!(ready.status(), 200);
    let ping = get("/api/ping", Some("acme")).await.unwrap();
    assert_eq!(ping.status(), 200);
    assert!(ping.headers().get("billing-stage").is_none());
    assert_eq!(ping.json::<serde_json::Value>().await.unwrap(), serde_json::json!({ "ok": true }));

    // On a shared store the shortcuts that mark payments need the admin
    // token: otherwise anyone could unblock any account.
    let stranger = http.post(format!("{}/demo/invoice-paid?account=acme", demo.url)).send().await.unwrap();
    assert_eq!(stranger.status(), 401);
    let failed = http.post(format!("{}/demo/invoice-failed?account=acme&days_ago=15", demo.url)).bearer_auth(ADMIN).send().await.unwrap();
    assert_eq!(failed.status(), 200);
    let mut stage = None;
    for _ in 0..200 {
        let r = get("/api/ping", Some("acme")).await.unwrap();
        stage = r.headers().get("billing-stage").map(|v| v.to_str().unwrap().to_owned());
        if stage.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(stage.as_deref(), Some("warning"));

    http.post(format!("{}/demo/invoice-failed?account=acme&days_ago=18", demo.url)).bearer_auth(ADMIN).send().await.unwrap();
    let mut blocked = None;
    for _ in 0..200 {
        let r = get("/api/ping", Some("acme")).await.unwrap();
        if r.status() == 402 {
            blocked = Some(r);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let blocked = blocked.expect("the account was suspended");
    assert_eq!(blocked.headers()["content-type"], "application/problem+json");
    let problem: serde_json::Value = blocked.json().await.unwrap();
    assert_eq!((problem["stage"].as_str(), problem["amount_due"].as_i64()), (Some("suspended"), Some(4900)));
    // State went through the real Redis.
    assert!(redis.cmd("KEYS *").contains("pastdue:{acme}:state"));

    // The Stripe webhook is mounted, verifies with the secret from the
    // environment, and its event reaches the gate.
    let now = chrono::Utc::now().timestamp();
    let event = serde_json::json!({
        "id": "evt_demo_1", "type": "invoice.payment_failed", "created": now - 20 * 86_400,
        "data": { "object": { "id": "in_w1", "customer": "cus_w", "amount_due": 2500, "currency": "usd",
                               "parent": { "subscription_details": { "metadata": { "account_id": "globex" } } } } }
    });
    let body = serde_json::to_vec(&event).unwrap();
    let sig = pastdue::signature::sign("whsec_demo", now, &body);
    let hook = http.post(format!("{}/webhooks/stripe", demo.url)).header("stripe-signature", sig).body(body.clone()).send().await.unwrap();
    assert_eq!(hook.status(), 200);
    let unsigned = http.post(format!("{}/webhooks/stripe", demo.url)).body(body).send().await.unwrap();
    assert_eq!(unsigned.status(), 400);
    let blocked = get("/api/ping", Some("globex")).await.unwrap();
    assert_eq!(blocked.status(), 402);

    // Prometheus text: decisions by stage and result, cache and webhook outcomes.
    let text = get("/metrics", None).await.unwrap().text().await.unwrap();
    for needle in [
        r#"pastdue_decisions_total{stage="suspended",action="block",result="deny"}"#,
        r#"pastdue_decisions_total{stage="active",action="allow",result="pass"}"#,
        "pastdue_cache_hits_total",
        "pastdue_cache_misses_total",
        r#"pastdue_webhooks_total{type="invoice.payment_failed",result="applied"} 1"#,
        r#"pastdue_webhooks_total{type="other",result="bad_signature"} 1"#,
        "pastdue_invalidation_resubscribes_total",
    ] {
        assert!(text.contains(needle), "/metrics lacks {needle}:\n{text}");
    }

    // Recovery figures: the accounts at risk (counted every few seconds
    // here), then globex pays and its episode is counted as ended.
    let mut text = String::new();
    for _ in 0..200 {
        text = get("/metrics", None).await.unwrap().text().await.unwrap();
        if text.contains(r#"pastdue_at_risk_amount{stage="suspended",currency="usd"} 2500"#) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(text.contains(r#"pastdue_at_risk_accounts{stage="suspended"} 2"#), "acme and globex are suspended:\n{text}");
    assert!(text.contains("# HELP pastdue_at_risk_accounts"), "{text}");
    let paid = serde_json::json!({
        "id": "evt_demo_2", "type": "invoice.paid", "created": now,
        "data": { "object": { "id": "in_w1", "customer": "cus_w", "status": "paid", "currency": "usd",
                               "parent": { "subscription_details": { "metadata": { "account_id": "globex" } } } } }
    });
    let body = serde_json::to_vec(&paid).unwrap();
    let sig = pastdue::signature::sign("whsec_demo", now, &body);
    assert_eq!(http.post(format!("{}/webhooks/stripe", demo.url)).header("stripe-signature", sig).body(body).send().await.unwrap().status(), 200);
    let text = get("/metrics", None).await.unwrap().text().await.unwrap();
    for needle in [
        r#"pastdue_episodes_ended_total{outcome="paid",stage="suspended"} 1"#,
        r#"pastdue_recovered_amount_total{currency="usd",stage="suspended"} 2500"#,
        "# HELP pastdue_episodes_ended_total",
    ] {
        assert!(text.contains(needle), "/metrics lacks {needle}:\n{text}");
    }

    // Readiness follows the store.
    drop(redis);
    let mut status = 200;
    for _ in 0..100 {
        status = get("/readyz", None).await.unwrap().status().as_u16();
        if status == 503 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(status, 503, "/readyz reports the store down");
    assert_eq!(get("/healthz", None).await.unwrap().status(), 200, "/healthz stays cheap and up");
}

/// The demo's well-known admin token never leaves loopback: on any other
/// address the demo refuses to start until a real token is set.
#[test]
fn the_demo_refuses_its_well_known_token_off_loopback() {
    let bin = common::demo_binary();
    let out = std::process::Command::new(&bin)
        .env("PASTDUE_SERVER__LISTEN", format!("0.0.0.0:{}", common::free_port()))
        .env_remove("PASTDUE_ADMIN__TOKEN")
        .env_remove("PASTDUE_CONFIG")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("well-known token") && err.contains("PASTDUE_ADMIN__TOKEN"), "{err}");
}

/// The demo tags `GET /api/reports` with the feature `reports`: its default
/// ladder closes nothing, so an account in `warning` still reads it; a
/// config whose `warning` closes `reports` answers it with the 402 (naming
/// the feature) while `/api/ping` of the same account passes.
#[tokio::test]
async fn the_demo_closes_reports_when_the_ladder_says_so() {
    let dir = std::env::temp_dir().join(format!("pastdue-reports-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("pastdue.toml");
    std::fs::write(&file, common::LADDER_CLOSING_REPORTS).unwrap();
    let http = reqwest::Client::new();
    for (closing, demo) in [(false, common::start_demo(&[])), (true, common::start_demo(&[("PASTDUE_CONFIG", file.display().to_string())]))] {
        let late = http.post(format!("{}/demo/invoice-failed?account=acme&days_ago=15", demo.url)).send().await.unwrap();
        assert_eq!(late.status(), 200);
        let get = |path: &str| http.get(format!("{}{path}", demo.url)).header("x-account-id", "acme").send();
        let ping = get("/api/ping").await.unwrap();
        assert_eq!((ping.status().as_u16(), ping.headers()["billing-stage"].to_str().unwrap()), (200, "warning"));
        let reports = get("/api/reports").await.unwrap();
        if !closing {
            assert_eq!(reports.status(), 200, "the default ladder closes nothing");
            continue;
        }
        assert_eq!(reports.status(), 402);
        let problem: serde_json::Value = reports.json().await.unwrap();
        assert_eq!((problem["feature"].as_str(), problem["stage"].as_str()), (Some("reports"), Some("warning")), "{problem}");
        assert!(problem["rest_closes_at"].is_string(), "{problem}");
    }
    std::fs::remove_dir_all(dir).ok();
}
