//! What the console's forms do: sign in and out, and every action on an
//! account, each through the admin API's own handler (same validation,
//! same audit entry) under the operator's name.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::Extension;
use serde_json::json;

use super::session::{csrf_ok, digest, same_origin, set_cookie};
use super::*;

/// The fields of a form body (the last of a repeated name wins).
fn fields(body: &Bytes) -> std::collections::HashMap<String, String> {
    form_urlencoded::parse(body).into_owned().collect()
}

/// Sign-in with a named admin token: a session cookie, then the overview.
/// A wrong token is counted and sets nothing; beyond a burst of failures,
/// failed sign-ins are answered `429` at once.
pub(super) async fn login(State(admin): State<Arc<Admin>>, headers: HeaderMap, body: Bytes) -> Response {
    let form = fields(&body);
    if !same_origin(&headers) {
        return refused(&admin, StatusCode::FORBIDDEN, None, "Sign-in refused", "This form did not come from the console's own page.", &format!("{}/login", ui(&admin)));
    }
    let presented = digest(form.get("token").map(String::as_str).unwrap_or(""));
    let mut who = None;
    for (known, name) in &admin.tokens {
        if bool::from(subtle::ConstantTimeEq::ct_eq(known.as_slice(), presented.as_slice())) {
            who = Some(name.clone());
        }
    }
    let Some(name) = who else {
        admin.auth_failures.increment(1);
        tracing::warn!("console: a sign-in with a wrong token was refused");
        let header = admin.console.sessions.by_header();
        if !admin.console.allow_failure() {
            let mut res = render(&admin, StatusCode::TOO_MANY_REQUESTS, "login.html", None, json!({ "error": "Too many failed sign-ins: try again in a minute.", "header": header }));
            res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
            return res;
        }
        return render(&admin, StatusCode::UNAUTHORIZED, "login.html", None, json!({ "error": "That token is not one of admin.tokens.", "header": header }));
    };
    let sessions = &admin.console.sessions;
    let value = sessions.issue(&name, admin.clock.now());
    let mut res = see_other(&format!("{}/", ui(&admin)));
    if let Ok(v) = HeaderValue::from_str(&set_cookie(Some(&value), &ui(&admin), sessions.ttl, &headers)) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    tracing::info!(operator = %name, "console: signed in");
    res
}

/// Sign-out: the cookie is cleared (a POST with the CSRF token).
pub(super) async fn logout(State(admin): State<Arc<Admin>>, headers: HeaderMap, body: Bytes) -> Response {
    let form = fields(&body);
    let login = format!("{}/login", ui(&admin));
    let op = admin.console.sessions.operator(&headers, admin.clock.now());
    if !same_origin(&headers) || op.as_ref().is_some_and(|op| !csrf_ok(op, form.get("csrf").map(String::as_str))) {
        return refused(&admin, StatusCode::FORBIDDEN, op.as_ref(), "Refused", "This form did not come from the console: nothing was changed.", &format!("{}/", ui(&admin)));
    }
    let mut res = see_other(&login);
    if let Ok(v) = HeaderValue::from_str(&set_cookie(None, &ui(&admin), Duration::ZERO, &headers)) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    res
}

/// An action on an account (`override`, `clear`, `promise`, `ladder`,
/// `contacts`, `notes`, `verify`): checked for a session, its CSRF token
/// and the console's origin, then done by the admin API's handler.
pub(super) async fn act(State(admin): State<Arc<Admin>>, headers: HeaderMap, Path((account, action)): Path<(String, String)>, body: Bytes) -> Response {
    let Some(op) = admin.console.sessions.operator(&headers, admin.clock.now()) else { return pages::to_login(&admin) };
    let form = fields(&body);
    let page = format!("{}/accounts/{}", ui(&admin), percent_encoding::utf8_percent_encode(&account, percent_encoding::NON_ALPHANUMERIC));
    if !same_origin(&headers) || !csrf_ok(&op, form.get("csrf").map(String::as_str)) {
        return refused(&admin, StatusCode::FORBIDDEN, Some(&op), "Refused", "This form did not come from the console (its origin or its token is not this session's): nothing was changed.", &page);
    }
    let text = |name: &str| form.get(name).map(|v| v.trim()).filter(|v| !v.is_empty()).map(str::to_owned);
    let caller = || Extension(Caller(op.name.clone()));
    let path = || axum::extract::Path(account.clone());
    let outcome: Result<&str, Failure> = match action.as_str() {
        "override" => async {
            let body = request(json!({ "mode": text("mode"), "until": text("until"), "reason": text("reason") }))?;
            set_override(State(admin.clone()), caller(), path(), AdminJson(body)).await.map(|_| "override")
        }
        .await,
        "clear" => remove_override(State(admin.clone()), caller(), path()).await.map(|_| "cleared"),
        "promise" => async {
            let body = request(json!({ "until": text("until"), "reason": text("reason"), "force": form.contains_key("force") }))?;
            add_promise(State(admin.clone()), caller(), path(), AdminJson(body)).await.map(|_| "promise")
        }
        .await,
        "ladder" => async {
            let body = request(json!({ "ladder": text("ladder"), "reason": text("reason") }))?;
            set_policy(State(admin.clone()), caller(), path(), AdminJson(body)).await.map(|_| "ladder")
        }
        .await,
        "contacts" => async {
            // Only what the operator changed: a value the form showed and
            // got back as it was (Stripe's phone, say) stays Stripe's, so
            // Stripe can still change or remove it.
            let mut body = serde_json::Map::new();
            for name in ["accountant", "account_manager", "timezone", "billing_phone"] {
                if text(name) != text(&format!("was_{name}")) {
                    body.insert(name.to_owned(), json!(text(name)));
                }
            }
            if body.is_empty() {
                return Ok("contacts-unchanged");
            }
            set_contacts(State(admin.clone()), caller(), path(), AdminJson(request(Value::Object(body))?)).await.map(|_| "contacts")
        }
        .await,
        "notes" => async {
            let body = request(json!({ "text": form.get("text") }))?;
            add_note(State(admin.clone()), caller(), path(), AdminJson(body)).await.map(|_| "note")
        }
        .await,
        "verify" => verify(&admin, &op, &account).await,
        _ => Err(Failure { status: StatusCode::NOT_FOUND, message: format!("there is no action {action:?}"), field: None }),
    };
    match outcome {
        Ok(done) => see_other(&format!("{page}?done={done}")),
        Err(f) => pages::account_page(&admin, &op, &account, f.status, None, Some(&f)).await,
    }
}

/// "Check with Stripe now": the gate's own verification, then what it
/// found. Audited as `stripe.checked`.
async fn verify(admin: &Arc<Admin>, op: &Operator, account: &str) -> Result<&'static str, Failure> {
    let id = parse_account(account)?;
    let Some(verifier) = &admin.console.verifier else {
        return Err(Failure { status: StatusCode::NOT_IMPLEMENTED, message: "checking with Stripe needs stripe.api_key".into(), field: None });
    };
    let before = admin.store.load(&id).await.map_err(unavailable)?;
    let asked = verifier.verify_now(&id).await;
    let after = admin.store.load(&id).await.map_err(unavailable)?;
    let owed = |s: &Option<crate::state::BillingState>| s.as_ref().map_or(0, |s| s.unpaid().len());
    let outcome = match (asked, owed(&after) < owed(&before)) {
        (_, true) => "verified-paid",
        (true, false) => "verified-owed",
        (false, false) => "verified-unchanged",
    };
    let entry = crate::store::AuditEntry {
        id: String::new(),
        at: admin.clock.now(),
        who: op.name.clone(),
        action: "stripe.checked".into(),
        account: Some(id.to_string()),
        before: json!({ "unpaid": owed(&before) }),
        after: json!({ "unpaid": owed(&after) }),
        reason: None,
    };
    admin.store.audit(&entry).await.map_err(unavailable)?;
    Ok(outcome)
}
