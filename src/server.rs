//! `pastdue serve`: everything one configuration describes, on one
//! listener, for apps in any language behind a reverse proxy.
//!
//! The routes are [`crate::Pastdue`]'s (Stripe webhook, pay and return
//! links, admin API — each when configured), the forward-auth endpoints
//! ([`crate::check`]: `check.path`, `check.page_path`), and `/healthz`,
//! `/readyz` (the store answers a ping) and `/metrics` (Prometheus text,
//! when a recorder handle is given). Background work (notices, sync, debt
//! sweep) runs while it serves; on shutdown in-flight requests finish,
//! then the background tasks stop (a notice claim they held lapses after
//! `notify.lease`, and another instance takes it over).

use std::future::Future;
use std::sync::Arc;

use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use http::StatusCode;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::clock::SharedClock;
use crate::config::Config;
use crate::settings::ConfigError;
use crate::store::Store;
use crate::{Parts, Pastdue};

/// The server's routes and background work, built from one configuration.
pub struct Server {
    /// Every route the server answers.
    pub router: Router,
    /// The gate and routes it was built from (for its background tasks).
    pub parts: Parts,
    /// What it serves, one line per feature, for the start-up message.
    pub summary: Vec<String>,
}

/// Builds the server `config` describes on `store`, reading "now" from
/// `clock`; `metrics` renders `/metrics` (404 without one).
pub fn build(
    config: &Config,
    store: Arc<dyn Store>,
    clock: SharedClock,
    metrics: Option<PrometheusHandle>,
) -> Result<Server, ConfigError> {
    let parts = Pastdue::new(config, store.clone())
        .with_clock(clock)
        .build()?;
    let check = crate::check::router(&config.check, parts.gate.clone())?;
    let router = Router::new()
        .merge(parts.routes.clone())
        .merge(check)
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz).with_state(store))
        .route("/metrics", get(render_metrics).with_state(metrics));
    Ok(Server {
        router,
        parts,
        summary: summary(config),
    })
}

/// Serves `server` on `listener` until `shutdown` completes; in-flight
/// requests finish first, then the background tasks stop.
pub async fn serve(
    server: Server,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let tasks = server.parts.spawn_background();
    let result = axum::serve(listener, server.router)
        .with_graceful_shutdown(shutdown)
        .await;
    for task in tasks {
        task.abort();
    }
    result
}

async fn readyz(State(store): State<Arc<dyn Store>>) -> impl IntoResponse {
    match store.ping().await {
        Ok(()) => (StatusCode::OK, "ready\n".to_owned()),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("store unavailable: {e}\n"),
        ),
    }
}

async fn render_metrics(State(handle): State<Option<PrometheusHandle>>) -> impl IntoResponse {
    match handle {
        Some(h) => (
            StatusCode::OK,
            [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            h.render(),
        ),
        None => (
            StatusCode::NOT_FOUND,
            [(http::header::CONTENT_TYPE, "text/plain")],
            "no metrics recorder installed\n".to_owned(),
        ),
    }
}

/// The billing providers the configuration turns on, and what each does:
/// `"stripe (webhook, API), paddle (webhook)"`, or `"none (…)"`.
pub fn providers(config: &Config) -> String {
    let list = [
        ("stripe", !config.stripe.secrets().is_empty(), config.stripe.api_key().is_some()),
        ("paddle", !config.paddle.secrets().is_empty(), config.paddle.api_key().is_some()),
        ("events", !config.events.secrets().is_empty(), false),
    ];
    let on: Vec<String> = list
        .iter()
        .filter(|(_, hook, api)| *hook || *api)
        .map(|(name, hook, api)| {
            let what: Vec<&str> = [(*hook, "webhook"), (*api, "API")].iter().filter(|(x, _)| *x).map(|(_, w)| *w).collect();
            format!("{name} ({})", what.join(", "))
        })
        .collect();
    if on.is_empty() {
        "none (set a webhook secret in [stripe], [paddle] or [events])".into()
    } else {
        on.join(", ")
    }
}

/// One line per thing the configuration turns on (or leaves off, saying
/// which key turns it on).
fn summary(config: &Config) -> Vec<String> {
    let on_off = |on: bool, yes: String, no: &str| if on { yes } else { format!("off ({no})") };
    let store = if config.store.url == "memory://" {
        "memory:// (state is lost on exit; set PASTDUE_STORE__URL=redis://… to keep and share it)"
            .to_owned()
    } else {
        config
            .store
            .url
            .rsplit('@')
            .next()
            .unwrap_or_default()
            .to_owned()
    };
    let account = if config.check.jwt_algorithm.is_empty() {
        format!("header {}", config.check.account_header)
    } else {
        format!(
            "verified {} JWT, claim {:?}",
            config.check.jwt_algorithm, config.check.jwt_claim
        )
    };
    vec![
        format!("store: {store}"),
        format!(
            "check: GET {} (account from {account}; blocked → {})",
            config.check.path, config.check.deny_status
        ),
        format!(
            "check exempt (the proxied app's paths that always pass): {}",
            if config.check.exempt.is_empty() { "none".to_owned() } else { config.check.exempt.join(", ") }
        ),
        format!("page: GET {}", config.check.page_path),
        format!(
            "stripe webhook: {}",
            on_off(
                !config.stripe.secrets().is_empty(),
                format!("POST {}", config.stripe.webhook_path),
                "set PASTDUE_STRIPE__WEBHOOK_SECRET"
            )
        ),
        format!(
            "paddle webhook: {}",
            on_off(
                !config.paddle.secrets().is_empty(),
                format!("POST {}", config.paddle.webhook_path),
                "set PASTDUE_PADDLE__WEBHOOK_SECRET"
            )
        ),
        format!(
            "events webhook (Standard Webhooks): {}",
            on_off(
                !config.events.secrets().is_empty(),
                format!("POST {}", config.events.webhook_path),
                "set PASTDUE_EVENTS__WEBHOOK_SECRET"
            )
        ),
        format!("providers: {}", providers(config)),
        format!(
            "pay links: {}",
            on_off(
                !config.stripe.portal_return_url.is_empty(),
                format!("GET {}", crate::stripe::PAY_PATH),
                "set PASTDUE_STRIPE__PORTAL_RETURN_URL and PASTDUE_LINKS__SECRET"
            )
        ),
        format!(
            "admin API: {}",
            on_off(
                !config.admin.all_tokens().is_empty(),
                config.admin.path.clone(),
                "set PASTDUE_ADMIN__TOKEN"
            )
        ),
        format!(
            "notices: {}",
            on_off(
                !config.notify.webhook_url.is_empty() || !config.notify.smtp_url.is_empty() || !config.notify.chat.is_empty(),
                "on".into(),
                "set PASTDUE_NOTIFY__WEBHOOK_URL or PASTDUE_NOTIFY__SMTP_URL, or add [[notify.chat]]"
            )
        ),
        format!(
            "stripe sync: {}",
            on_off(config.stripe.api_key().is_some(), "on".into(), "set PASTDUE_STRIPE__API_KEY")
        ),
        format!(
            "verify before blocking, debt sweep: {}",
            on_off(
                config.stripe.api_key().is_some() || config.paddle.api_key().is_some(),
                format!(
                    "on ({})",
                    [("stripe", config.stripe.api_key().is_some()), ("paddle", config.paddle.api_key().is_some())]
                        .iter()
                        .filter(|(_, on)| *on)
                        .map(|(name, _)| *name)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                "set PASTDUE_STRIPE__API_KEY or PASTDUE_PADDLE__API_KEY"
            )
        ),
        "health: GET /healthz, GET /readyz; metrics: GET /metrics".to_owned(),
    ]
}
