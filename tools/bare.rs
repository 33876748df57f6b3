//! Load-test baseline "bare": the demo's `/api/ping` with no gate at all.
//! `PASTDUE_SERVER__LISTEN` picks the address (default 127.0.0.1:3000).

use axum::{routing::get, Json, Router};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let listen = std::env::var("PASTDUE_SERVER__LISTEN").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let app = Router::new().route("/api/ping", get(|| async { Json(serde_json::json!({ "ok": true })) }));
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!("bare listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
