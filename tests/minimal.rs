//! The gate alone, as `--no-default-features` builds it: the memory store,
//! no Redis, Stripe, admin or notices. `.ci/run` runs this file in that
//! build; the other suites test the whole product.

use std::sync::Arc;

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use chrono::{TimeDelta, Utc};
use http::{Request, StatusCode};
use pastdue::gate::GateLayer;
use pastdue::state::{Change, Currency, UnpaidInvoice};
use pastdue::{AccountId, MemoryStore, Store};
use tower::ServiceExt;

#[tokio::test]
async fn a_gate_on_the_memory_store_blocks_and_passes() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let since = Utc::now() - TimeDelta::days(20);
    let debt = Change::InvoiceUnpaid {
        id: "in_1".into(),
        invoice: UnpaidInvoice {
            amount_due: 4_900,
            currency: Currency::new("eur").unwrap(),
            hosted_url: Some("https://invoice.stripe.com/i/in_1".into()),
            number: None,
            since,
            observed: since,
            uncollectible: false,
            next_attempt: None,
        },
    };
    store.apply(&AccountId::new("late").unwrap(), None, &[debt]).await.unwrap();
    let app = Router::new().route("/api/ping", get(|| async { "pong" })).layer(GateLayer::new(store));
    let ask = |account: &'static str| Request::get("/api/ping").header("x-account-id", account).body(Body::empty()).unwrap();

    let res = app.clone().oneshot(ask("late")).await.unwrap();
    assert_eq!(res.status(), StatusCode::PAYMENT_REQUIRED);
    assert_eq!(res.headers()["billing-stage"], "suspended");
    let res = app.clone().oneshot(ask("paying")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers().get("billing-stage").is_none());
}

/// The one builder works in every build, and refuses a setting whose
/// feature is not compiled in, naming it, rather than dropping it.
#[tokio::test]
async fn the_builder_refuses_what_this_build_cannot_serve() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let parts = pastdue::Pastdue::new(&pastdue::Config::default(), store.clone()).build().unwrap();
    assert!(parts.spawn_background().is_empty());
    let mut config = pastdue::Config::default();
    config.admin.token = "an-admin-token-0123456789".into();
    let built = pastdue::Pastdue::new(&config, store).build();
    if cfg!(feature = "admin") {
        assert!(built.is_ok());
    } else {
        let message = built.unwrap_err().to_string();
        assert!(message.contains("`admin`"), "{message}");
    }
}
