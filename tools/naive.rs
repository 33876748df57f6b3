//! Load-test baseline "naive": what one writes without pastdue — a
//! middleware that does one Redis `GET` per request and answers 402 when
//! the account is marked blocked.
//!
//! `PASTDUE_SERVER__LISTEN` (default 127.0.0.1:3000) and
//! `PASTDUE_STORE__URL` (default redis://127.0.0.1:6379). An account is
//! blocked when the key `naive:<account>` holds `blocked`.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{routing::get, Json, Router};
use redis::aio::ConnectionManager;

async fn gate(State(redis): State<ConnectionManager>, req: Request, next: Next) -> Response {
    let Some(account) = req.headers().get("x-account-id").and_then(|v| v.to_str().ok()).map(str::to_owned) else {
        return next.run(req).await;
    };
    let mut conn = redis.clone();
    let status: Option<String> = redis::cmd("GET").arg(format!("naive:{account}")).query_async(&mut conn).await.unwrap_or(None);
    if status.as_deref() == Some("blocked") {
        return (StatusCode::PAYMENT_REQUIRED, Json(serde_json::json!({ "status": 402 }))).into_response();
    }
    next.run(req).await
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let listen = std::env::var("PASTDUE_SERVER__LISTEN").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let url = std::env::var("PASTDUE_STORE__URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let redis = redis::Client::open(url)?.get_connection_manager().await?;
    let app = Router::new()
        .route("/api/ping", get(|| async { Json(serde_json::json!({ "ok": true })) }))
        .layer(middleware::from_fn_with_state(redis, gate));
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!("naive listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
