//! The admin API on the memory store and a real `redis-server`.

#[macro_use]
mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::Router;
use chrono::{TimeDelta, Utc};
use common::*;
use http::{Request, StatusCode};
use pastdue::config::{Config, NamedToken};
use pastdue::store::Store;
use pastdue::AccountId;
use serde_json::{json, Value};
use tower::ServiceExt;

const TOKEN: &str = "t0k3n-for-tests-0123";

fn config() -> Config {
    let mut c = Config::default();
    c.admin.token = TOKEN.into();
    c.admin.tokens = vec![NamedToken::new("alice", "alice-secret-0123456")];
    c
}

/// The admin config with a ladder in seconds: warning at 4 s, suspended at 8 s.
fn seconds_config() -> Config {
    let mut c = seconds_ladder(4, 8);
    c.admin.token = TOKEN.into();
    c.admin.tokens = vec![NamedToken::new("alice", "alice-secret-0123456")];
    c
}

/// The admin API as `c` configures it, on `store`.
fn admin_router(c: &Config, store: Arc<dyn pastdue::Store>) -> Result<Router, pastdue::config::ConfigError> {
    pastdue::admin::router(&c.admin, c.ladder()?, pastdue::stripe::Mapper::new(&c.stripe, store)?)
}

fn app(b: &Backend, c: &Config) -> Router {
    admin_router(c, b.store.clone()).unwrap()
}

async fn call(app: &Router, method: &str, path: &str, token: Option<&str>, body: Option<(&str, String)>) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let req = match body {
        Some((ct, text)) => req.header("content-type", ct).body(Body::from(text)).unwrap(),
        None => req.body(Body::empty()).unwrap(),
    };
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let bytes = axum::body::to_bytes(res.into_body(), usize::MAX).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

async fn put_override(app: &Router, account: &str, body: Value, token: &str) -> (StatusCode, Value) {
    call(app, "PUT", &format!("/admin/accounts/{account}/override"), Some(token), Some(("application/json", body.to_string()))).await
}

fn acct(id: &str) -> AccountId {
    AccountId::new(id).unwrap()
}

async fn owe_since(store: &Arc<dyn Store>, account: &str, since: chrono::DateTime<Utc>) {
    store.apply(&acct(account), None, &[unpaid("in_1", 1500, since)]).await.unwrap();
}

backend_suite!(
    auth_none_wrong_right_and_named,
    account_view_and_overrides,
    every_bad_input_names_its_field,
    overrides_expire_by_themselves,
    customer_links,
    listing_by_stage_follows_the_clock,
    listing_pages_without_gaps_or_repeats,
    audit_is_newest_first_and_pages,
    sync_without_a_key_is_501,
    customer_links_are_moves_and_admin_links_win,
    bearer_is_case_insensitive_and_failures_are_counted,
    contacts_by_role_and_admins_win_over_metadata,
    agenda_lists_what_comes_next_in_order,
);

/// The collector's calendar: stage changes, payments coming due and
/// overrides lapsing in a window, in time order, from the indexes.
async fn agenda_lists_what_comes_next_in_order(b: Backend) {
    let app = app(&b, &config());
    let now = Utc::now();
    // Enters warning (14 d) in 4 days and suspended (17 d) in 7 days + 1 h.
    owe_since(&b.store, "late", now - TimeDelta::days(10) + TimeDelta::hours(1)).await;
    b.store.apply(&acct("due"), None, &[upcoming("in_next", 4_900, now + TimeDelta::days(2), now)]).await.unwrap();
    let until = (now + TimeDelta::days(3)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    assert_eq!(put_override(&app, "ovr", json!({ "mode": "allow", "until": until, "reason": "promised" }), TOKEN).await.0, StatusCode::OK);

    let (status, v) = call(&app, "GET", "/admin/agenda", Some(TOKEN), None).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let events: Vec<(String, String, Option<String>)> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["account"].as_str().unwrap().to_owned(), i["event"].as_str().unwrap().to_owned(), i["stage"].as_str().map(str::to_owned)))
        .collect();
    assert_eq!(
        events,
        [("due".into(), "due".into(), None), ("ovr".into(), "override_expires".into(), None), ("late".into(), "stage".into(), Some("warning".to_owned()))],
        "the default window is 7 days: the suspension (7 days + 1 hour) is not in it"
    );
    assert_eq!(v["items"][0]["amount_due"], 4900);
    // A wider window shows the suspension too; limit truncates and says so.
    let to = (now + TimeDelta::days(8)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let (_, v) = call(&app, "GET", &format!("/admin/agenda?to={to}"), Some(TOKEN), None).await;
    assert_eq!(v["items"].as_array().unwrap().last().unwrap()["stage"], "suspended");
    let (_, v) = call(&app, "GET", &format!("/admin/agenda?to={to}&limit=2"), Some(TOKEN), None).await;
    assert_eq!((v["items"].as_array().unwrap().len(), v["truncated"].as_bool()), (2, Some(true)));
    // Bad input names its field.
    for (query, field) in [("from=yesterday", "from"), (&format!("from={to}&to={to}") as &str, "to"), ("limit=0", "limit"), ("to=2200-01-01T00:00:00Z", "to")] {
        let (status, v) = call(&app, "GET", &format!("/admin/agenda?{query}"), Some(TOKEN), None).await;
        assert_eq!((status, v["field"].as_str()), (StatusCode::BAD_REQUEST, Some(field)), "{query}: {v}");
    }
}

/// Contacts by role: from Stripe customer metadata (`[notify.metadata]`)
/// and the admin API; validated, audited, `null` removes, a field left out
/// stays; an admin's contact is never replaced by metadata.
async fn contacts_by_role_and_admins_win_over_metadata(b: Backend) {
    let mut c = config();
    c.stripe.webhook_secret = "whsec_contacts".into();
    let parts = pastdue::Pastdue::new(&c, b.store.clone()).build().unwrap();
    let app = parts.routes;
    let deliver = |id: &'static str, metadata: Value| {
        let mut meta = json!({ "account_id": "acme" });
        meta.as_object_mut().unwrap().extend(metadata.as_object().unwrap().clone());
        let body = serde_json::to_vec(&json!({
            "id": id, "type": "customer.updated", "created": Utc::now().timestamp(),
            "data": { "object": { "id": "cus_Contacts", "object": "customer", "email": "billing@client.test", "metadata": meta } }
        }))
        .unwrap();
        let sig = pastdue::signature::sign("whsec_contacts", Utc::now().timestamp(), &body);
        let req = Request::post("/webhooks/stripe").header("stripe-signature", sig).body(Body::from(body)).unwrap();
        let app = app.clone();
        async move { assert_eq!(app.oneshot(req).await.unwrap().status(), StatusCode::OK) }
    };
    let contacts = |app: Router| async move { call(&app, "GET", "/admin/accounts/acme", Some(TOKEN), None).await.1["contacts"].clone() };
    let put = |body: &str| {
        let app = app.clone();
        let body = body.to_owned();
        async move { call(&app, "PUT", "/admin/accounts/acme/contacts", Some(TOKEN), Some(("application/json", body))).await }
    };

    // From metadata; an address that is not one is ignored.
    deliver("evt_c1", json!({ "accountant_email": "acc@client.test", "account_manager_email": "not an address" })).await;
    assert_eq!(contacts(app.clone()).await, json!({ "billing": "billing@client.test", "accountant": "acc@client.test", "account_manager": null }));

    // From the admin API: validated, audited; a field left out stays.
    let (status, v) = put(r#"{"account_manager": "m@ops.test"}"#).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["contacts"], json!({ "billing": "billing@client.test", "accountant": "acc@client.test", "account_manager": "m@ops.test" }));
    let (_, log) = call(&app, "GET", "/admin/audit?account=acme", Some(TOKEN), None).await;
    assert_eq!(log["entries"][0]["action"], "contacts.set");
    assert_eq!(log["entries"][0]["after"]["account_manager"]["email"], "m@ops.test", "{log}");

    // An admin's accountant wins over later metadata, and over metadata
    // that no longer names one; metadata still removes its own.
    assert_eq!(put(r#"{"accountant": "a2@client.test"}"#).await.0, StatusCode::OK);
    deliver("evt_c2", json!({ "accountant_email": "old@client.test" })).await;
    deliver("evt_c3", json!({})).await;
    assert_eq!(contacts(app.clone()).await["accountant"], "a2@client.test");
    assert_eq!(contacts(app.clone()).await["account_manager"], "m@ops.test", "admin-set: metadata without the key keeps it");

    // null removes.
    let (_, v) = put(r#"{"accountant": null, "account_manager": null}"#).await;
    assert_eq!((v["contacts"]["accountant"].clone(), v["contacts"]["account_manager"].clone()), (Value::Null, Value::Null));

    // Bad input names its field; nothing changes.
    for (body, field) in [(r#"{"accountant": "nope"}"#, "accountant"), (r#"{"account_manager": "a b@c.test"}"#, "account_manager"), ("{}", "body"), (r#"{"accountant": 5}"#, "accountant"), (r#"{"boss": "b@c.test"}"#, "boss")] {
        let (status, v) = put(body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {v}");
        assert!(v["field"].as_str().is_some_and(|f| f.contains(field)) || v["error"].as_str().is_some_and(|e| e.contains(field)), "{body}: {v}");
    }
    assert_eq!(contacts(app.clone()).await["accountant"], Value::Null);
}

async fn customer_links_are_moves_and_admin_links_win(b: Backend) {
    let mut c = config();
    c.stripe.webhook_secret = "whsec_links".into();
    let admin = app(&b, &c);
    let hooks = pastdue::stripe::router(&c.stripe, b.store.clone()).unwrap();
    let deliver = |id: &str, account: &str| {
        let body = serde_json::to_vec(&json!({
            "id": id, "type": "customer.updated", "created": Utc::now().timestamp(),
            "data": { "object": { "id": "cus_Moving", "object": "customer", "email": "x@example.com", "metadata": { "account_id": account } } }
        }))
        .unwrap();
        let sig = pastdue::signature::sign("whsec_links", Utc::now().timestamp(), &body);
        let req = Request::post("/webhooks/stripe").header("stripe-signature", sig).body(Body::from(body)).unwrap();
        let hooks = hooks.clone();
        async move {
            let res = hooks.oneshot(req).await.unwrap();
            let v: Value = serde_json::from_slice(&axum::body::to_bytes(res.into_body(), usize::MAX).await.unwrap()).unwrap();
            v
        }
    };
    // Metadata puts the customer on account A.
    assert_eq!(deliver("evt_l1", "acct-a").await["account"], "acct-a");
    assert_eq!(b.store.customer_account("cus_Moving").await.unwrap(), Some(acct("acct-a")));
    // An admin moves it to B: A no longer lists it, the audit says from where.
    let body = Some(("application/json", r#"{"customer":"cus_Moving"}"#.to_owned()));
    let (status, v) = call(&admin, "POST", "/admin/accounts/acct-b/customers", Some(TOKEN), body).await;
    assert_eq!((status, v["customers"].clone()), (StatusCode::OK, json!(["cus_Moving"])));
    let (_, a) = call(&admin, "GET", "/admin/accounts/acct-a", Some(TOKEN), None).await;
    assert_eq!(a["customers"], json!([]));
    assert!(!b.store.load(&acct("acct-a")).await.unwrap().unwrap().customers().contains("cus_Moving"));
    let (_, log) = call(&admin, "GET", "/admin/audit?account=acct-b", Some(TOKEN), None).await;
    assert_eq!(log["entries"][0]["after"]["moved_from"], "acct-a", "{log}");
    let (_, log) = call(&admin, "GET", "/admin/audit?account=acct-a", Some(TOKEN), None).await;
    assert_eq!((log["entries"][0]["action"].as_str(), log["entries"][0]["after"]["moved_to"].as_str()), (Some("customer.moved"), Some("acct-b")));
    // Stale metadata still naming A does not move it back: the admin link
    // wins, the event applies to B, and B's view shows the conflict.
    assert_eq!(deliver("evt_l2", "acct-a").await["account"], "acct-b");
    assert_eq!(b.store.customer_account("cus_Moving").await.unwrap(), Some(acct("acct-b")));
    let (_, v) = call(&admin, "GET", "/admin/accounts/acct-b", Some(TOKEN), None).await;
    assert_eq!((v["link_conflicts"][0]["customer"].as_str(), v["link_conflicts"][0]["claimed_by"].as_str()), (Some("cus_Moving"), Some("acct-a")), "{v}");
    let (_, a) = call(&admin, "GET", "/admin/accounts/acct-a", Some(TOKEN), None).await;
    assert_eq!(a["customers"], json!([]));
}

async fn bearer_is_case_insensitive_and_failures_are_counted(b: Backend) {
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let app = metrics::with_local_recorder(&recorder, || app(&b, &config()));
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let req = Request::get("/admin/accounts/acme").header("authorization", format!("{scheme} {TOKEN}")).body(Body::empty()).unwrap();
        assert_eq!(app.clone().oneshot(req).await.unwrap().status(), StatusCode::OK, "{scheme}");
    }
    for _ in 0..3 {
        assert_eq!(call(&app, "GET", "/admin/accounts/acme", Some("not-the-token-at-all"), None).await.0, StatusCode::UNAUTHORIZED);
    }
    let failures: u64 = counter_total(&snapshotter, "pastdue_admin_auth_failures_total");
    assert_eq!(failures, 3);
}

#[tokio::test]
async fn short_admin_tokens_are_refused_at_start_up() {
    let mut c = Config::default();
    c.admin.token = "fifteen-bytes!!".into();
    let err = admin_router(&c, Arc::new(pastdue::MemoryStore::new())).unwrap_err().to_string();
    assert!(err.contains("admin.token") && err.contains("16 bytes"), "{err}");
    let err = Config::load_from(None, [("PASTDUE_ADMIN__TOKEN".to_owned(), "short".to_owned())]).unwrap_err().to_string();
    assert!(err.contains("admin.token"), "{err}");
    let mut c = config();
    c.admin.tokens = vec![NamedToken::new("bob", "tiny")];
    let err = admin_router(&c, Arc::new(pastdue::MemoryStore::new())).unwrap_err().to_string();
    assert!(err.contains("admin.tokens[0].token"), "{err}");
}

/// The audit entry is written with the change, or the change is not made:
/// with the account's audit stream unwritable, an override answers 503 and
/// the account is untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_audit_entry_no_change_on_redis() {
    let b = redis().await;
    let app = app(&b, &config());
    b.redis.as_ref().unwrap().cmd("SET pastdue:{acct-x}:audit not-a-stream");
    let (status, _) = put_override(&app, "acct-x", json!({ "mode": "allow", "until": null, "reason": "r" }), TOKEN).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(b.store.load(&acct("acct-x")).await.unwrap(), None, "nothing changed");
    b.redis.as_ref().unwrap().cmd("DEL pastdue:{acct-x}:audit");
    let (status, v) = put_override(&app, "acct-x", json!({ "mode": "allow", "until": null, "reason": "r" }), TOKEN).await;
    assert_eq!((status, v["override"]["mode"].as_str()), (StatusCode::OK, Some("allow")));
    let (_, log) = call(&app, "GET", "/admin/audit?account=acct-x", Some(TOKEN), None).await;
    assert_eq!((log["entries"][0]["action"].as_str(), &log["entries"][0]["before"]), (Some("override.set"), &Value::Null));
}

async fn auth_none_wrong_right_and_named(b: Backend) {
    let app = app(&b, &config());
    for token in [None, Some("wrong"), Some(""), Some("t0k3n-for-test"), Some("t0k3n-for-tests-and-more")] {
        let (status, v) = call(&app, "GET", "/admin/accounts/acme", token, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{token:?}");
        assert!(v["error"].is_string());
    }
    assert_eq!(call(&app, "GET", "/admin/accounts/acme", Some(TOKEN), None).await.0, StatusCode::OK);
    let body = json!({ "mode": "allow", "until": null, "reason": "paying by wire" });
    assert_eq!(put_override(&app, "acme", body, "alice-secret-0123456").await.0, StatusCode::OK);
    let (_, log) = call(&app, "GET", "/admin/audit?account=acme", Some(TOKEN), None).await;
    assert_eq!(log["entries"][0]["who"], "alice");
    assert!(admin_router(&Config::default(), b.store.clone()).is_err(), "no token, no admin API");
}

async fn account_view_and_overrides(b: Backend) {
    let app = app(&b, &config());
    let (status, v) = call(&app, "GET", "/admin/accounts/newbie", Some(TOKEN), None).await;
    assert_eq!((status, v["known"].as_bool(), v["stage"].as_str()), (StatusCode::OK, Some(false), Some("active")));

    owe_since(&b.store, "late", Utc::now() - TimeDelta::days(15)).await;
    let (_, v) = call(&app, "GET", "/admin/accounts/late", Some(TOKEN), None).await;
    assert_eq!((v["stage"].as_str(), v["action"].as_str(), v["amount_due"].as_i64()), (Some("warning"), Some("warn"), Some(1500)));
    assert_eq!(v["next_stage"], "suspended");
    assert!(v["next_stage_at"].is_string() && v["past_due_since"].is_string());
    assert_eq!(v["currency"], "eur");

    let until = (Utc::now() + TimeDelta::days(7)).to_rfc3339();
    let (status, v) = put_override(&app, "late", json!({ "mode": "allow", "until": until, "reason": "extension until payday" }), TOKEN).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((v["stage"].as_str(), v["override_active"].as_bool()), (Some("active"), Some(true)));
    assert_eq!(v["override"]["reason"], "extension until payday");
    assert_eq!(v["amount_due"], 1500, "the debt is still shown");

    // #26: `until` also takes a duration from now, as the CLI's --until does.
    let before = Utc::now();
    let (status, v) = put_override(&app, "late", json!({ "mode": "allow", "until": "7d", "reason": "extension until payday" }), TOKEN).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let until = chrono::DateTime::parse_from_rfc3339(v["override"]["until"].as_str().unwrap()).unwrap();
    assert!(until >= before + TimeDelta::days(7) && until <= Utc::now() + TimeDelta::days(7), "{until}");

    let (_, v) = put_override(&app, "late", json!({ "mode": "block", "reason": "chargeback" }), TOKEN).await;
    assert_eq!((v["stage"].as_str(), v["action"].as_str()), (Some("suspended"), Some("block")));

    let (status, v) = call(&app, "DELETE", "/admin/accounts/late/override", Some(TOKEN), None).await;
    assert_eq!((status, v["stage"].as_str(), v["override"].is_null()), (StatusCode::OK, Some("warning"), true));

    let (_, log) = call(&app, "GET", "/admin/audit?account=late", Some(TOKEN), None).await;
    let actions: Vec<_> = log["entries"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap().to_owned()).collect();
    assert_eq!(actions, ["override.removed", "override.set", "override.set", "override.set"]);
    let removed = &log["entries"][0];
    assert_eq!((removed["before"]["mode"].as_str(), removed["after"].is_null()), (Some("block"), true));
    assert_eq!(log["entries"][1]["reason"], "chargeback");
    assert_eq!(log["entries"][1]["before"]["mode"], "allow");
}

async fn every_bad_input_names_its_field(b: Backend) {
    let app = app(&b, &config());
    let past = (Utc::now() - TimeDelta::hours(1)).to_rfc3339();
    let json_cases = [
        (json!({ "mode": "pause", "reason": "x" }), "mode"),
        (json!({ "reason": "x" }), "mode"),
        (json!({ "mode": "allow", "until": "next tuesday", "reason": "x" }), "until"),
        (json!({ "mode": "allow", "until": 1700000000, "reason": "x" }), "until"),
        (json!({ "mode": "allow", "until": past, "reason": "x" }), "until"),
        (json!({ "mode": "allow", "reason": "" }), "reason"),
        (json!({ "mode": "allow", "reason": "   " }), "reason"),
        (json!({ "mode": "allow" }), "reason"),
        (json!(["mode", "allow"]), "body"),
    ];
    for (body, field) in json_cases {
        let (status, v) = put_override(&app, "acme", body.clone(), TOKEN).await;
        assert_eq!((status, v["field"].as_str()), (StatusCode::BAD_REQUEST, Some(field)), "{body}");
        assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()));
    }
    let (_, v) = put_override(&app, "acme", json!({ "mode": "allow", "until": "next tuesday", "reason": "x" }), TOKEN).await;
    let error = v["error"].as_str().unwrap();
    assert!(error.contains("RFC 3339") && error.contains("7d"), "says both forms: {error}");
    let raw_cases = [
        ("application/json", "{not json", "body"),
        ("text/plain", r#"{"mode":"allow","reason":"x"}"#, "content-type"),
        ("application/x-www-form-urlencoded", "mode=allow&reason=x", "content-type"),
    ];
    for (ct, text, field) in raw_cases {
        let (status, v) = call(&app, "PUT", "/admin/accounts/acme/override", Some(TOKEN), Some((ct, text.into()))).await;
        assert_eq!((status, v["field"].as_str()), (StatusCode::BAD_REQUEST, Some(field)), "{ct} {text}");
    }
    for path in ["/admin/accounts/a%7Db", "/admin/accounts/a%20b/override"] {
        let method = if path.ends_with("override") { "DELETE" } else { "GET" };
        let (status, v) = call(&app, method, path, Some(TOKEN), None).await;
        assert_eq!((status, v["field"].as_str()), (StatusCode::BAD_REQUEST, Some("account")), "{path}");
    }
    for (path, field) in [
        ("/admin/accounts", "stage"),
        ("/admin/accounts?stage=vacation", "stage"),
        ("/admin/accounts?stage=suspended&limit=0", "limit"),
        ("/admin/accounts?stage=suspended&limit=abc", "limit"),
        ("/admin/accounts?stage=suspended&cursor=xyz", "cursor"),
        ("/admin/audit?account=a%20b", "account"),
        ("/admin/audit?cursor=%3Cscript%3E", "cursor"),
    ] {
        let (status, v) = call(&app, "GET", path, Some(TOKEN), None).await;
        assert_eq!((status, v["field"].as_str()), (StatusCode::BAD_REQUEST, Some(field)), "{path}");
    }
    let (status, v) = call(&app, "POST", "/admin/accounts/acme/customers", Some(TOKEN), Some(("application/json", r#"{"customer":"evil}"}"#.into()))).await;
    assert_eq!((status, v["field"].as_str()), (StatusCode::BAD_REQUEST, Some("customer")));
    assert!(b.store.load(&acct("acme")).await.unwrap().is_none(), "nothing was written");
}

async fn overrides_expire_by_themselves(b: Backend) {
    let app = app(&b, &config());
    let until = (Utc::now() + TimeDelta::milliseconds(1500)).to_rfc3339();
    let (_, v) = put_override(&app, "brief", json!({ "mode": "block", "until": until, "reason": "cool-off" }), TOKEN).await;
    assert_eq!(v["stage"], "suspended");
    // No write happens; the override simply stops counting.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (_, v) = call(&app, "GET", "/admin/accounts/brief", Some(TOKEN), None).await;
        if v["stage"] == "active" {
            assert_eq!(v["override_active"], false);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the override never lapsed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn customer_links(b: Backend) {
    let app = app(&b, &config());
    let body = Some(("application/json", r#"{"customer":"cus_Abc123"}"#.to_owned()));
    let (status, v) = call(&app, "POST", "/admin/accounts/linked/customers", Some(TOKEN), body).await;
    assert_eq!((status, v["customers"].clone()), (StatusCode::OK, json!(["cus_Abc123"])));
    assert_eq!(b.store.customer_account("cus_Abc123").await.unwrap(), Some(acct("linked")));
    let (_, log) = call(&app, "GET", "/admin/audit?account=linked", Some(TOKEN), None).await;
    assert_eq!(log["entries"][0]["action"], "customer.linked");
    assert_eq!(log["entries"][0]["after"], json!(["cus_Abc123"]));
}

async fn list(app: &Router, stage: &str) -> Vec<String> {
    let (status, v) = call(app, "GET", &format!("/admin/accounts?stage={stage}&limit=100"), Some(TOKEN), None).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let mut names: Vec<_> = v["accounts"].as_array().unwrap().iter().map(|a| a["account"].as_str().unwrap().to_owned()).collect();
    names.sort();
    names
}

async fn listing_by_stage_follows_the_clock(b: Backend) {
    let app = app(&b, &seconds_config());
    let now = Utc::now();
    owe_since(&b.store, "fresh", now + TimeDelta::seconds(60)).await; // clock behind: notice
    owe_since(&b.store, "moving", now - TimeDelta::milliseconds(1500)).await; // notice now, warning in ~2.5 s
    owe_since(&b.store, "late", now - TimeDelta::seconds(30)).await;
    b.store.apply(&acct("gone"), None, &[subscription("sub_1", pastdue::state::SubscriptionStatus::Canceled, now)]).await.unwrap();
    b.store.apply(&acct("paid-up"), None, &[unpaid("in_9", 5, now), settled("in_9", now)]).await.unwrap();
    let (_, _) = put_override(&app, "blocked-by-admin", json!({ "mode": "block", "reason": "fraud review" }), TOKEN).await;
    let (_, _) = put_override(&app, "late", json!({ "mode": "allow", "reason": "wire transfer on its way" }), TOKEN).await;

    assert_eq!(list(&app, "notice").await, ["fresh", "moving"]);
    assert_eq!(list(&app, "warning").await, Vec::<String>::new());
    assert_eq!(list(&app, "suspended").await, ["blocked-by-admin"], "late has an allow override");
    assert_eq!(list(&app, "canceled").await, ["gone"]);

    // Only time passes: "moving" must now be listed as a warning.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while list(&app, "warning").await != ["moving"] {
        assert!(tokio::time::Instant::now() < deadline, "moving never showed up under warning");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(list(&app, "notice").await, ["fresh"]);
}

async fn listing_pages_without_gaps_or_repeats(b: Backend) {
    let app = app(&b, &config());
    let same_second = Utc::now() - TimeDelta::days(20);
    let mut expected = Vec::new();
    for i in 0..7 {
        let name = format!("debtor-{i}");
        // Several share one second: paging must still visit each once.
        let since = if i < 4 { same_second } else { same_second - TimeDelta::hours(i) };
        owe_since(&b.store, &name, since).await;
        expected.push(name);
    }
    let mut seen = Vec::new();
    let mut cursor = String::new();
    for _ in 0..10 {
        let path = format!("/admin/accounts?stage=suspended&limit=3&cursor={cursor}");
        let (status, v) = call(&app, "GET", &path, Some(TOKEN), None).await;
        assert_eq!(status, StatusCode::OK);
        let page = v["accounts"].as_array().unwrap();
        assert!(page.len() <= 3);
        seen.extend(page.iter().map(|a| a["account"].as_str().unwrap().to_owned()));
        match v["next_cursor"].as_str() {
            Some(c) => cursor = c.replace('|', "%7C").replace(':', "%3A"),
            None => break,
        }
    }
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), seen.len(), "no account twice: {seen:?}");
    assert_eq!(sorted, expected);
}

async fn audit_is_newest_first_and_pages(b: Backend) {
    let app = app(&b, &config());
    for i in 0..5 {
        put_override(&app, "audited", json!({ "mode": "allow", "reason": format!("reason {i}") }), TOKEN).await;
    }
    put_override(&app, "someone-else", json!({ "mode": "allow", "reason": "other" }), TOKEN).await;
    let mut reasons = Vec::new();
    let mut cursor = String::new();
    loop {
        let (_, v) = call(&app, "GET", &format!("/admin/audit?account=audited&limit=2&cursor={cursor}"), Some(TOKEN), None).await;
        reasons.extend(v["entries"].as_array().unwrap().iter().map(|e| e["reason"].as_str().unwrap().to_owned()));
        match v["next_cursor"].as_str() {
            Some(c) => cursor = c.to_owned(),
            None => break,
        }
    }
    assert_eq!(reasons, ["reason 4", "reason 3", "reason 2", "reason 1", "reason 0"]);
    let (_, global) = call(&app, "GET", "/admin/audit?limit=1", Some(TOKEN), None).await;
    assert_eq!(global["entries"][0]["account"], "someone-else", "the global log has every account");
}

async fn sync_without_a_key_is_501(b: Backend) {
    let app = app(&b, &config());
    let (status, v) = call(&app, "POST", "/admin/sync", Some(TOKEN), None).await;
    assert_eq!(status, StatusCode::NOT_IMPLEMENTED);
    assert!(v["error"].as_str().unwrap().contains("stripe.api_key"));
}

#[tokio::test]
async fn openapi_document_is_served_and_covers_every_route() {
    let b = memory().await;
    let app = app(&b, &config());
    let (status, doc) = call(&app, "GET", "/admin/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let paths = doc["paths"].as_object().unwrap();
    for p in ["/admin/accounts", "/admin/accounts/{account}", "/admin/accounts/{account}/override", "/admin/accounts/{account}/customers", "/admin/audit", "/admin/sync"] {
        assert!(paths.contains_key(p), "{p} missing from the document");
    }
    assert!(paths["/admin/accounts/{account}/override"]["put"].is_object());
    assert!(paths["/admin/accounts/{account}/override"]["delete"].is_object());
    // Mounted elsewhere, the document names the routes where they are.
    let mut moved = config();
    moved.admin.path = "/ops/billing".into();
    let app = admin_router(&moved, b.store.clone()).unwrap();
    let (status, doc) = call(&app, "GET", "/ops/billing/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.contains_key("/ops/billing/accounts/{account}/override") && !paths.keys().any(|p| p.starts_with("/admin")), "{paths:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_against_localstripe_runs_and_is_audited() {
    let b = memory().await;
    let ls = Localstripe::start();
    let mut c = config();
    c.stripe.api_key = "sk_test_admin".into();
    c.stripe.api_base = ls.url();
    let app = app(&b, &c);
    let (status, v) = call(&app, "POST", "/admin/sync", Some("alice-secret-0123456"), None).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["accounts_changed"], 0);
    let (_, log) = call(&app, "GET", "/admin/audit", Some(TOKEN), None).await;
    assert_eq!((log["entries"][0]["action"].as_str(), log["entries"][0]["who"].as_str()), (Some("sync"), Some("alice")));
}
