//! A small SaaS app wired with pastdue, the way a user would wire it.
//!
//! ```text
//! cargo run --example quickstart                                   # memory store
//! PASTDUE_STORE__URL=redis://127.0.0.1:6379 cargo run --example quickstart
//! ```
//!
//! The account comes from the `X-Account-Id` header, or (for a browser) an
//! `account` query parameter or cookie. `/demo/*` lets you walk an account
//! through the ladder without Stripe; it is part of this demo, not the crate.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{TimeDelta, Utc};
use pastdue::config::{Config, ConfigError};
use pastdue::gate::{CookieResolver, HeaderResolver, QueryResolver, ResolveAccount};
use pastdue::state::{Change, Currency, UnpaidInvoice};
use pastdue::store::Store;
use pastdue::{AccountId, Action, Parts, Pastdue, Standing};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

#[derive(Clone)]
struct AppState {
    store: Arc<dyn Store>,
    projects: Arc<Mutex<HashMap<String, Vec<String>>>>,
}

/// The whole app as a `Router`, so tests can drive it without a socket.
pub fn app(config: &Config, store: Arc<dyn Store>) -> Result<Router, ConfigError> {
    let config = demo_config(config);
    let parts = Pastdue::new(&config, store.clone()).build()?;
    Ok(routes(&config, store, parts))
}

/// The demo's own settings on top of the loaded ones.
fn demo_config(config: &Config) -> Config {
    let mut config = config.clone();
    config.gate.exempt.push("/demo/**".into());
    // The demo shows the injected reminder banner on its HTML pages.
    config.banner.inject = true;
    config
}

/// The demo app around the parts pastdue built from the config: one
/// builder wires the gate with every endpoint its pages link to (the
/// Stripe webhook, signed pay links and the admin API, each mounted when
/// the config turns it on).
fn routes(config: &Config, store: Arc<dyn Store>, parts: Parts) -> Router {
    let resolver = HeaderResolver::new(config.gate.account_header.clone())
        .or(QueryResolver::new("account"))
        .or(CookieResolver::new("account"));
    let gate = parts.gate.with_resolver(resolver);
    let state = AppState { store: store.clone(), projects: Arc::default() };
    // The /demo/* shortcuts record payments without Stripe: anyone who can
    // reach them can unblock any account. So they are open on the memory
    // store only; on Redis they need the admin token.
    let demo_guard = DemoGuard {
        open: config.store.url == "memory://",
        tokens: config.admin.all_tokens().iter().map(|t| Sha256::digest(t.token.expose().as_bytes()).into()).collect(),
    };
    let demo = Router::new()
        .route("/demo/invoice-failed", post(demo_invoice_failed))
        .route("/demo/invoice-paid", post(demo_invoice_paid))
        .route_layer(axum::middleware::from_fn_with_state(Arc::new(demo_guard), guard_demo));
    // A premium feature: a ladder stage with `closes = ["reports"]` answers
    // the 402 page here while the rest of the app stays open. (The default
    // ladder closes nothing.)
    let reports = Router::new().route("/api/reports", get(reports)).layer(pastdue::gate::feature("reports"));
    Router::new()
        .route("/", get(dashboard))
        .route("/api/projects", get(list_projects).post(create_project))
        .route("/api/ping", get(|| async { Json(serde_json::json!({ "ok": true })) }))
        .route("/billing", get(billing))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .merge(demo)
        .merge(reports)
        .layer(gate)
        .with_state(state)
        .merge(parts.routes)
}

/// Who may use the /demo/* shortcuts.
struct DemoGuard {
    /// On the memory store: anyone (it is a toy).
    open: bool,
    /// Otherwise: the admin tokens' SHA-256 digests.
    tokens: Vec<[u8; 32]>,
}

async fn guard_demo(State(g): State<Arc<DemoGuard>>, req: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    let presented = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| Sha256::digest(t.trim().as_bytes()));
    let allowed = g.open || presented.is_some_and(|d| g.tokens.iter().any(|k| bool::from(k.ct_eq(d.as_slice()))));
    if allowed {
        next.run(req).await
    } else {
        (StatusCode::UNAUTHORIZED, "the /demo/* shortcuts need the admin token on a shared store\n").into_response()
    }
}

/// The dashboard. The reminder banner is injected by the gate
/// (`[banner] inject = true`); the handler reads the same `Standing` to say
/// what it knows, the way an app renders its own notice.
async fn dashboard(standing: Option<Standing>, Query(q): Query<HashMap<String, String>>) -> Html<String> {
    let account = q.get("account").map(String::as_str).unwrap_or("(none)");
    let stage = standing.as_ref().map_or("no account", |s| s.stage().name());
    let owed = match standing.as_ref().and_then(|s| s.amount_due().map(|(a, c)| (s.action(), a, c))) {
        Some((Action::Notice | Action::Warn, a, c)) => format!("<p>Amount due: {}</p>", pastdue::money::format_money(a, c)),
        _ => String::new(),
    };
    Html(format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Dashboard</title></head>
<body><h1>Dashboard</h1><p>Account: <code>{account}</code> · stage: <code>{stage}</code></p>{owed}
<p><a href="/billing?account={account}">Billing</a></p></body></html>"#,
        account = html_escape(account)
    ))
}

/// Ready when the store answers (a ping, bounded by the store's timeouts).
async fn readyz(State(app): State<AppState>) -> impl IntoResponse {
    match app.store.ping().await {
        Ok(()) => (StatusCode::OK, Json(serde_json::json!({ "ready": true }))),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, Json(serde_json::json!({ "ready": false, "store": e.to_string() }))),
    }
}

/// The Prometheus exporter `main` installs (tests drive `app` without one).
static METRICS: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> = std::sync::OnceLock::new();

async fn metrics_text() -> impl IntoResponse {
    match METRICS.get() {
        Some(handle) => (StatusCode::OK, handle.render()),
        None => (StatusCode::NOT_FOUND, "no metrics exporter installed\n".to_owned()),
    }
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

async fn list_projects(State(app): State<AppState>, Query(q): Query<HashMap<String, String>>, headers: axum::http::HeaderMap) -> Json<Vec<String>> {
    let key = account_key(&headers, &q);
    Json(app.projects.lock().unwrap().get(&key).cloned().unwrap_or_default())
}

async fn reports(State(app): State<AppState>, Query(q): Query<HashMap<String, String>>, headers: axum::http::HeaderMap) -> Json<serde_json::Value> {
    let key = account_key(&headers, &q);
    let projects = app.projects.lock().unwrap().get(&key).map_or(0, Vec::len);
    Json(serde_json::json!({ "report": "projects", "projects": projects }))
}

#[derive(Deserialize)]
struct NewProject {
    name: String,
}

async fn create_project(
    State(app): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
    headers: axum::http::HeaderMap,
    Json(p): Json<NewProject>,
) -> impl IntoResponse {
    let key = account_key(&headers, &q);
    app.projects.lock().unwrap().entry(key).or_default().push(p.name.clone());
    (StatusCode::CREATED, Json(serde_json::json!({ "name": p.name })))
}

fn account_key(headers: &axum::http::HeaderMap, q: &HashMap<String, String>) -> String {
    headers
        .get("x-account-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| q.get("account").cloned())
        .unwrap_or_default()
}

async fn billing() -> Html<&'static str> {
    Html("<!doctype html><html lang=\"en\"><meta charset=\"utf-8\"><title>Billing</title><h1>Billing</h1><p>Invoices and payment methods live here. This page is exempt from the gate, so a suspended customer can always reach it.</p></html>")
}

#[derive(Deserialize)]
struct DemoInvoice {
    account: String,
    #[serde(default)]
    days_ago: i64,
    #[serde(default = "default_cents")]
    cents: i64,
    #[serde(default = "default_invoice")]
    invoice: String,
}

fn default_cents() -> i64 {
    4900
}

fn default_invoice() -> String {
    "in_demo".into()
}

async fn demo_invoice_failed(State(app): State<AppState>, Query(d): Query<DemoInvoice>) -> impl IntoResponse {
    let Ok(account) = AccountId::new(&d.account) else {
        return (StatusCode::BAD_REQUEST, "bad account id").into_response();
    };
    let since = Utc::now() - TimeDelta::days(d.days_ago);
    let change = Change::InvoiceUnpaid {
        id: d.invoice.clone(),
        invoice: UnpaidInvoice {
            amount_due: d.cents,
            currency: Currency::new("eur").expect("valid code"),
            hosted_url: Some(format!("/billing?account={}&invoice={}", d.account, d.invoice).into()),
            number: Some(format!("DEMO-{}", d.invoice)),
            since,
            observed: since,
            uncollectible: false,
            next_attempt: None,
        },
    };
    match app.store.apply(&account, None, &[change]).await {
        Ok(_) => (StatusCode::OK, "recorded a failed payment\n").into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}

async fn demo_invoice_paid(State(app): State<AppState>, Query(d): Query<DemoInvoice>) -> impl IntoResponse {
    let Ok(account) = AccountId::new(&d.account) else {
        return (StatusCode::BAD_REQUEST, "bad account id").into_response();
    };
    let change = Change::InvoiceSettled { id: d.invoice, at: Utc::now() };
    match app.store.apply(&account, None, &[change]).await {
        Ok(_) => (StatusCode::OK, "recorded the payment\n").into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}

/// The admin token the demo uses when none is configured (it says so, and
/// refuses it on any address but loopback).
const DEMO_ADMIN_TOKEN: &str = "demo-admin-token-not-a-secret";

/// `bytes` random bytes as hex, from the OS (for the demo's made-up secret).
fn random_hex(bytes: usize) -> String {
    use std::io::Read;
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut buf)).expect("the OS provides random bytes");
    hex::encode(buf)
}

#[allow(dead_code)]
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,pastdue=info".into()),
        )
        .init();
    // Before the gate is built: it registers its counters with this recorder.
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder()?;
    let _ = METRICS.set(handle);
    let mut config = Config::load()?;
    let demo_token = config.admin.all_tokens().is_empty();
    let loopback = config
        .server
        .listen
        .parse::<std::net::SocketAddr>()
        .map(|a| a.ip().is_loopback())
        .unwrap_or_else(|_| config.server.listen.starts_with("localhost:"));
    if demo_token && !loopback {
        return Err(format!(
            "refusing to serve the admin API with the demo's well-known token on {} (not a loopback address): set PASTDUE_ADMIN__TOKEN to a secret of at least 16 bytes",
            config.server.listen
        )
        .into());
    }
    let demo_links_secret = !config.stripe.portal_return_url.is_empty() && config.links.secret.is_empty();
    if demo_links_secret {
        // Pay links need a secret shared by every instance; a demo makes
        // one up (and says so), so its links die with the process.
        config.links.secret = random_hex(32).into();
    }
    if demo_token {
        // Never a silent default: the demo says loudly that it runs with a
        // well-known token, and a real deployment sets its own.
        config.admin.token = DEMO_ADMIN_TOKEN.into();
    }
    let store = pastdue::store::connect(&config.store).await?;
    let config = demo_config(&config);
    let parts = Pastdue::new(&config, store.clone()).build()?;
    // Stage notices (when a channel is configured, e.g.
    // PASTDUE_NOTIFY__WEBHOOK_URL) and the periodic Stripe sync.
    let _tasks = parts.spawn_background();
    let app = routes(&config, store, parts);
    let listener = tokio::net::TcpListener::bind(&config.server.listen).await?;
    let url = format!("http://{}", listener.local_addr()?);
    println!("pastdue quickstart listening on {url}");
    if config.store.url == "memory://" {
        println!("store: memory:// (state is lost on exit; set PASTDUE_STORE__URL=redis://127.0.0.1:6379 to share it)");
    } else {
        println!("store: {}", config.store.url.split('@').next_back().unwrap_or(""));
    }
    if config.stripe.secrets().is_empty() {
        println!("stripe webhooks: off (set PASTDUE_STRIPE__WEBHOOK_SECRET=whsec_… to mount {})", config.stripe.webhook_path);
    } else {
        println!("stripe webhooks: POST {url}{}", config.stripe.webhook_path);
    }
    if demo_links_secret {
        println!("pay links: signed with a random links.secret made up for this run (links stop working on restart; set PASTDUE_LINKS__SECRET, the same on every instance)");
    }
    if config.store.url == "memory://" {
        println!("/demo/* shortcuts: open to anyone (memory store only: they can mark any account paid)");
    } else {
        println!("/demo/* shortcuts: need 'Authorization: Bearer <admin token>' (anyone could otherwise mark any account paid)");
    }
    if demo_token {
        println!(
            "\n*** DEMO MODE: the admin API ({url}{}) accepts the well-known token {DEMO_ADMIN_TOKEN:?}.\n*** Set PASTDUE_ADMIN__TOKEN to a secret before exposing this anywhere.\n",
            config.admin.path
        );
    }
    println!(
        "operator console: {url}{}/ui/ (sign in with {})",
        config.admin.path,
        if demo_token { format!("the demo token {DEMO_ADMIN_TOKEN:?}") } else { "a token from admin.token or admin.tokens".to_owned() }
    );
    println!(
        r#"
Walk an account through the ladder:
  curl -s {url}/api/ping -H 'X-Account-Id: acme'                              # active: {{"ok":true}}
  curl -s -XPOST '{url}/demo/invoice-failed?account=acme&days_ago=0'           # payment failed today
  curl -si {url}/api/ping -H 'X-Account-Id: acme' | grep -i billing-stage      # Billing-Stage: notice
  curl -s -XPOST '{url}/demo/invoice-failed?account=acme&days_ago=15'          # backdate it 15 days
  curl -si {url}/api/ping -H 'X-Account-Id: acme' | grep -i billing-stage      # Billing-Stage: warning
  curl -s -XPOST '{url}/demo/invoice-failed?account=acme&days_ago=18'          # 18 days
  curl -s {url}/api/ping -H 'X-Account-Id: acme'                               # 402 problem+json
  open '{url}/?account=acme'                                                   # the please-pay page
  curl -s -XPOST '{url}/demo/invoice-paid?account=acme'                        # paid: access is back
  curl -s {url}/admin/accounts/acme -H 'Authorization: Bearer {token}'          # the admin view
  curl -s -XPUT {url}/admin/accounts/acme/override -H 'Authorization: Bearer {token}' \
       -H 'Content-Type: application/json' -d '{{"mode":"allow","until":null,"reason":"paying by wire"}}'
"#,
        token = if demo_token { DEMO_ADMIN_TOKEN } else { "$PASTDUE_ADMIN__TOKEN" }
    );
    axum::serve(listener, app).await?;
    Ok(())
}
