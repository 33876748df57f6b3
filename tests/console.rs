//! The operator console as an attacker would try it, over the real router
//! on Redis: no session, forged or expired cookies, forms without (or with
//! another session's) CSRF token, cross-site posts, the cookie sent to the
//! JSON API, script in a note, a single-sign-on header nobody configured.
//! And the console doing what the API does, under the operator's name.

#[macro_use]
mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::Router;
use chrono::{TimeDelta, Utc};
use common::*;
use http::{header, Request, StatusCode};
use pastdue::clock::ManualClock;
use pastdue::state::Change;
use pastdue::{AccountId, Config, Store};
use tower::ServiceExt;

const ALICE: &str = "alice-console-token-0123456789";
const BOB: &str = "bob-console-token-0123456789ab";
const HOST: &str = "console.example";

struct App {
    router: Router,
    clock: ManualClock,
    store: Arc<dyn Store>,
    _redis: RedisServer,
}

async fn app_with(edit: impl FnOnce(&mut Config)) -> App {
    let redis = RedisServer::start();
    let mut c = Config::default();
    c.stripe.webhook_secret = "whsec_console".into();
    c.admin.tokens = vec![pastdue::admin::NamedToken::new("alice", ALICE), pastdue::admin::NamedToken::new("bob", BOB)];
    edit(&mut c);
    let store = store_with(&redis.url(), relaxed()).await;
    let clock = ManualClock::starting_at(Utc::now());
    let parts = pastdue::Pastdue::new(&c, store.clone()).with_clock(clock.shared()).build().unwrap();
    let since = Utc::now() - TimeDelta::days(20);
    let acme = AccountId::new("acme").unwrap();
    store.apply(&acme, None, &[unpaid("in_1", 4_900, since), Change::ContactEmail("billing@acme.example".into())]).await.unwrap();
    App { router: Router::new().merge(parts.routes.clone()), clock, store, _redis: redis }
}

async fn app() -> App {
    app_with(|_| {}).await
}

/// An answer: status, headers, body.
struct Answer {
    status: StatusCode,
    headers: http::HeaderMap,
    body: String,
}

impl App {
    async fn send(&self, req: Request<Body>) -> Answer {
        let res = self.router.clone().oneshot(req).await.unwrap();
        let (status, headers) = (res.status(), res.headers().clone());
        let bytes = axum::body::to_bytes(res.into_body(), usize::MAX).await.unwrap();
        Answer { status, headers, body: String::from_utf8_lossy(&bytes).into_owned() }
    }

    async fn get(&self, path: &str, cookie: Option<&str>) -> Answer {
        let mut req = Request::get(path).header(header::HOST, HOST);
        if let Some(c) = cookie {
            req = req.header(header::COOKIE, c);
        }
        self.send(req.body(Body::empty()).unwrap()).await
    }

    /// A form POST as the console's own page sends it (same origin).
    async fn post(&self, path: &str, cookie: Option<&str>, form: &[(&str, &str)], origin: Option<&str>) -> Answer {
        let body: String = form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
        let mut req = Request::post(path).header(header::HOST, HOST).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(o) = origin {
            req = req.header(header::ORIGIN, o);
        }
        if let Some(c) = cookie {
            req = req.header(header::COOKIE, c);
        }
        self.send(req.body(Body::from(body)).unwrap()).await
    }

    /// Signs in with `token`; the session cookie (`name=value`).
    async fn sign_in(&self, token: &str) -> String {
        let a = self.post("/admin/ui/login", None, &[("token", token)], Some(&format!("https://{HOST}"))).await;
        assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
        let set = a.headers[header::SET_COOKIE].to_str().unwrap().to_owned();
        set.split(';').next().unwrap().to_owned()
    }

    /// The CSRF token the account page's forms carry for this session.
    async fn csrf(&self, cookie: &str) -> String {
        let page = self.get("/admin/ui/accounts/acme", Some(cookie)).await;
        assert_eq!(page.status, StatusCode::OK);
        let at = page.body.find("name=\"csrf\" value=\"").expect("a form with a CSRF token") + 19;
        page.body[at..].split('"').next().unwrap().to_owned()
    }

    async fn notes(&self) -> usize {
        self.store.load(&AccountId::new("acme").unwrap()).await.unwrap().unwrap().notes().len()
    }
}

const PAGES: [&str; 6] = ["/admin/ui/", "/admin/ui/accounts?q=acme", "/admin/ui/accounts?stage=suspended", "/admin/ui/accounts/acme", "/admin/ui/accounts/acme/preview", "/admin/ui/audit"];

fn to_login(a: &Answer) -> bool {
    a.status == StatusCode::SEE_OTHER && a.headers.get(header::LOCATION).is_some_and(|l| l == "/admin/ui/login") && !a.body.contains("acme")
}

/// Without a session every page is the way to the sign-in page, never
/// data; with one, each answers, with headers that keep it out of caches
/// and frames.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_session_no_data() {
    let app = app().await;
    for page in PAGES {
        assert!(to_login(&app.get(page, None).await), "{page}");
        assert!(to_login(&app.get(page, Some("pastdue_session=")).await), "{page}: empty cookie");
    }
    let login = app.get("/admin/ui/login", None).await;
    assert_eq!(login.status, StatusCode::OK);
    assert!(login.body.contains("Admin token") && !login.body.contains("acme"));
    let cookie = app.sign_in(ALICE).await;
    for page in PAGES {
        let a = app.get(page, Some(&cookie)).await;
        assert_eq!(a.status, StatusCode::OK, "{page}: {}", a.body);
        assert_eq!(a.headers[header::CACHE_CONTROL], "no-store", "{page}");
        let csp = a.headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(csp.contains("default-src 'none'"), "{page}");
        if page.ends_with("/preview") {
            assert!(csp.contains("sandbox") && csp.contains("frame-ancestors 'self'"), "the preview frames only in the console: {csp}");
        } else {
            assert!(csp.contains("frame-ancestors 'none'") && a.headers[header::X_FRAME_OPTIONS] == "DENY", "{page}: never framed");
        }
    }
    let overview = app.get("/admin/ui/", Some(&cookie)).await;
    assert!(overview.body.contains("alice") && overview.body.contains("At risk now") && overview.body.contains("<svg"), "{}", overview.body);
    let found = app.get("/admin/ui/accounts?q=BILLING%40acme", Some(&cookie)).await;
    // Auto-escaping writes "/" as "&#x2f;" in attributes; browsers read it back.
    assert!(found.body.contains("ui/accounts/acme\"") && found.body.contains("billing@acme.example"), "search by e-mail: {}", found.body);
    let preview = app.get("/admin/ui/accounts/acme/preview", Some(&cookie)).await;
    assert!(preview.body.contains("€49.00") && preview.headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap().contains("sandbox"), "the 402 page, sandboxed");
}

/// The cookie: signed, HttpOnly, SameSite=Strict, scoped to the console,
/// Secure unless plain http on loopback, lasting admin.session_ttl. A wrong
/// token sets nothing and is counted; a forged, tampered or expired cookie
/// is no session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookies_are_signed_scoped_and_expire() {
    let app = app().await;
    let a = app.post("/admin/ui/login", None, &[("token", ALICE)], Some(&format!("https://{HOST}"))).await;
    let set = a.headers[header::SET_COOKIE].to_str().unwrap();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/admin/ui", "Max-Age=43200", "Secure"] {
        assert!(set.contains(attr), "{attr} in {set}");
    }
    let local = app
        .send(Request::post("/admin/ui/login").header(header::HOST, "127.0.0.1:8080").header(header::ORIGIN, "http://127.0.0.1:8080").body(Body::from(format!("token={ALICE}"))).unwrap())
        .await;
    assert!(!local.headers[header::SET_COOKIE].to_str().unwrap().contains("Secure"), "plain http on loopback");

    let proxied = app
        .send(Request::post("/admin/ui/login").header(header::HOST, "127.0.0.1:3000").header("x-forwarded-host", HOST).header(header::ORIGIN, format!("https://{HOST}")).body(Body::from(format!("token={ALICE}"))).unwrap())
        .await;
    assert!(proxied.headers[header::SET_COOKIE].to_str().unwrap().contains("Secure"), "a loopback Host behind a proxy is no loopback browser");
    let forged = app.post("/admin/ui/login", None, &[("token", ALICE)], Some("https://evil.example")).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN, "a cross-site sign-in (login CSRF) sets nothing");
    assert!(forged.headers.get(header::SET_COOKIE).is_none());

    // Wrong tokens: refused, counted, and after a burst of five, refused
    // at once with 429 (no guessing faster than one token every 2 s);
    // the right token still gets in.
    let mut statuses = Vec::new();
    for _ in 0..7 {
        let wrong = app.post("/admin/ui/login", None, &[("token", "not-a-token-at-all-0123456789")], Some(&format!("https://{HOST}"))).await;
        assert!(wrong.headers.get(header::SET_COOKIE).is_none());
        statuses.push(wrong.status);
    }
    assert_eq!(&statuses[..5], [StatusCode::UNAUTHORIZED; 5]);
    assert_eq!(statuses[6], StatusCode::TOO_MANY_REQUESTS);
    app.sign_in(ALICE).await;

    let cookie = app.sign_in(ALICE).await;
    let (head, sig) = cookie.rsplit_once('.').unwrap();
    let flipped = format!("{head}.{}{}", if sig.starts_with('A') { "B" } else { "A" }, &sig[1..]);
    assert!(to_login(&app.get("/admin/ui/", Some(&flipped)).await), "a tampered signature");
    // Bob's name in Alice's signed cookie.
    let parts: Vec<&str> = cookie.trim_start_matches("pastdue_session=").split('.').collect();
    use base64::Engine as _;
    let bob = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("bob");
    let renamed = format!("pastdue_session={}.{bob}.{}.{}.{}", parts[0], parts[2], parts[3], parts[4]);
    assert!(to_login(&app.get("/admin/ui/", Some(&renamed)).await), "a renamed session");
    let longer = format!("pastdue_session={}.{}.{}.{}.{}", parts[0], parts[1], parts[2].parse::<i64>().unwrap() + 86_400, parts[3], parts[4]);
    assert!(to_login(&app.get("/admin/ui/", Some(&longer)).await), "a lengthened session");
    assert_eq!(app.get("/admin/ui/", Some(&cookie)).await.status, StatusCode::OK);
    app.clock.advance(TimeDelta::hours(13));
    assert!(to_login(&app.get("/admin/ui/", Some(&cookie)).await), "expired after admin.session_ttl");
}

/// A form that changes something needs this session's CSRF token and the
/// console's origin; anything else changes nothing. The JSON API never
/// takes the cookie.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forms_need_the_sessions_token_and_the_consoles_origin() {
    let app = app().await;
    let alice = app.sign_in(ALICE).await;
    let bob = app.sign_in(BOB).await;
    let (alice_csrf, bob_csrf) = (app.csrf(&alice).await, app.csrf(&bob).await);
    assert_ne!(alice_csrf, bob_csrf);
    let same = format!("https://{HOST}");
    let note = "/admin/ui/accounts/acme/notes";
    for (csrf, origin, why) in [
        (None, Some(same.as_str()), "no token"),
        (Some(bob_csrf.as_str()), Some(same.as_str()), "another session's token"),
        (Some(alice_csrf.as_str()), Some("https://evil.example"), "a cross-site post"),
        (Some(alice_csrf.as_str()), Some("null"), "an opaque origin"),
        (Some(alice_csrf.as_str()), None, "no origin at all"),
    ] {
        let mut form = vec![("text", "called, pays Friday")];
        if let Some(c) = csrf {
            form.push(("csrf", c));
        }
        let a = app.post(note, Some(&alice), &form, origin).await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{why}: {}", a.body);
        assert_eq!(app.notes().await, 0, "{why}: nothing changed");
    }
    // The browser says it is same-site but not same-origin (a sibling
    // subdomain): refused.
    let sibling = app
        .send(Request::post(note).header(header::HOST, HOST).header(header::ORIGIN, &same).header("sec-fetch-site", "same-site").header(header::COOKIE, &alice).body(Body::from(format!("text=x&csrf={alice_csrf}"))).unwrap())
        .await;
    assert_eq!(sibling.status, StatusCode::FORBIDDEN);
    // The browser says it is cross-site: refused, whatever else it says.
    let body = format!("text=x&csrf={alice_csrf}");
    let cross = app
        .send(Request::post(note).header(header::HOST, HOST).header(header::ORIGIN, &same).header("sec-fetch-site", "cross-site").header(header::COOKIE, &alice).body(Body::from(body)).unwrap())
        .await;
    assert_eq!(cross.status, StatusCode::FORBIDDEN);
    assert_eq!(app.notes().await, 0);

    // An opaque origin with a same-origin Referer (a sandboxed document): refused.
    let opaque = app
        .send(Request::post(note).header(header::HOST, HOST).header(header::ORIGIN, "null").header(header::REFERER, format!("{same}/admin/ui/accounts/acme")).header(header::COOKIE, &alice).body(Body::from(format!("text=x&csrf={alice_csrf}"))).unwrap())
        .await;
    assert_eq!(opaque.status, StatusCode::FORBIDDEN);
    assert_eq!(app.notes().await, 0);
    // Without Origin, the Referer speaks; behind a proxy, X-Forwarded-Host.
    let by_referer = app
        .send(Request::post(note).header(header::HOST, HOST).header(header::REFERER, format!("{same}/admin/ui/accounts/acme")).header(header::COOKIE, &alice).body(Body::from(format!("text=by+referer&csrf={alice_csrf}"))).unwrap())
        .await;
    assert_eq!(by_referer.status, StatusCode::SEE_OTHER, "{}", by_referer.body);
    let proxied = app
        .send(Request::post(note).header(header::HOST, "127.0.0.1:3000").header("x-forwarded-host", HOST).header(header::ORIGIN, &same).header(header::COOKIE, &alice).body(Body::from(format!("text=behind+a+proxy&csrf={alice_csrf}"))).unwrap())
        .await;
    assert_eq!(proxied.status, StatusCode::SEE_OTHER, "{}", proxied.body);
    assert_eq!(app.notes().await, 2);

    // The real thing: a note, audited under Alice's name.
    let a = app.post(note, Some(&alice), &[("text", "called, pays Friday"), ("csrf", &alice_csrf)], Some(&same)).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    assert_eq!(a.headers[header::LOCATION], "/admin/ui/accounts/acme?done=note");
    assert_eq!(app.notes().await, 3);
    let audit = app.store.audit_log(Some(&AccountId::new("acme").unwrap()), None, 10).await.unwrap();
    assert_eq!((audit[0].who.as_str(), audit[0].action.as_str()), ("alice", "note.added"));

    // The cookie is not a bearer token.
    let api = app.get("/admin/accounts/acme", Some(&alice)).await;
    assert_eq!(api.status, StatusCode::UNAUTHORIZED, "the JSON API never takes the cookie");
    let api = app.send(Request::post("/admin/accounts/acme/notes").header(header::COOKIE, &alice).header(header::CONTENT_TYPE, "application/json").body(Body::from(r#"{"text":"x"}"#)).unwrap()).await;
    assert_eq!(api.status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.notes().await, 3);

    // Sign-out needs the token and the origin too, and ends the cookie.
    let out = app.post("/admin/ui/logout", None, &[], Some("https://evil.example")).await;
    assert_eq!(out.status, StatusCode::FORBIDDEN, "a cross-site sign-out clears nothing");
    let out = app.post("/admin/ui/logout", Some(&alice), &[("csrf", &bob_csrf)], Some(&same)).await;
    assert_eq!(out.status, StatusCode::FORBIDDEN);
    let out = app.post("/admin/ui/logout", Some(&alice), &[("csrf", &alice_csrf)], Some(&same)).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert!(out.headers[header::SET_COOKIE].to_str().unwrap().contains("Max-Age=0"));
}

/// What operators type is shown as text: a note or a contact holding HTML
/// and script renders escaped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_operators_type_renders_as_text() {
    let app = app().await;
    let alice = app.sign_in(ALICE).await;
    let csrf = app.csrf(&alice).await;
    let same = format!("https://{HOST}");
    let evil = "<script>alert(1)</script><img src=x onerror=alert(2)>";
    let a = app.post("/admin/ui/accounts/acme/notes", Some(&alice), &[("text", evil), ("csrf", &csrf)], Some(&same)).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    let refused = app.post("/admin/ui/accounts/acme/contacts", Some(&alice), &[("accountant", "\"><script>alert(3)</script>"), ("account_manager", ""), ("csrf", &csrf)], Some(&same)).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "not an address: refused with the API's message");
    assert!(refused.body.contains("accountant") && !refused.body.contains("<script>alert(3)"), "{}", refused.body);
    let page = app.get("/admin/ui/accounts/acme", Some(&alice)).await;
    assert!(page.body.contains("&lt;script&gt;alert(1)&lt;"), "escaped");
    assert!(!page.body.contains("<script>") && !page.body.contains("<img src=x"), "never markup");
    let reason = app.post("/admin/ui/accounts/acme/override", Some(&alice), &[("mode", "allow"), ("until", "1d"), ("reason", evil), ("csrf", &csrf)], Some(&same)).await;
    assert_eq!(reason.status, StatusCode::SEE_OTHER);
    for page in ["/admin/ui/audit", "/admin/ui/", "/admin/ui/accounts/acme"] {
        let p = app.get(page, Some(&alice)).await;
        assert!(!p.body.contains("<script>") && !p.body.contains("<img src=x"), "{page} escapes what operators typed");
    }
}

/// An action goes through the API's handler: allow until a date changes
/// the stage at once and is audited under the operator's name; a bad date
/// is refused with the API's message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_are_the_apis_under_the_operators_name() {
    let app = app().await;
    let alice = app.sign_in(ALICE).await;
    let csrf = app.csrf(&alice).await;
    let same = format!("https://{HOST}");
    let bad = app.post("/admin/ui/accounts/acme/override", Some(&alice), &[("mode", "allow"), ("until", "next tuesday"), ("reason", "x"), ("csrf", &csrf)], Some(&same)).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("Not done") && bad.body.contains("until"), "{}", bad.body);
    let ok = app.post("/admin/ui/accounts/acme/override", Some(&alice), &[("mode", "allow"), ("until", "7d"), ("reason", "paid by transfer"), ("csrf", &csrf)], Some(&same)).await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.body);
    let page = app.get("/admin/ui/accounts/acme?done=override", Some(&alice)).await;
    assert!(page.body.contains("Override set") && page.body.contains("<span class=\"stage\">active</span>"), "{}", page.body);
    let audit = app.get("/admin/ui/audit?who=alice", Some(&alice)).await;
    assert!(audit.body.contains("override.set") && audit.body.contains("paid by transfer"), "{}", audit.body);
    let none = app.get("/admin/ui/audit?who=bob", Some(&alice)).await;
    assert!(!none.body.contains("override.set"), "filtered by operator");
    let phish = app.get("/admin/ui/accounts/acme?done=Call+0900+now", Some(&alice)).await;
    assert!(!phish.body.contains("0900"), "a link cannot make the console say anything");
    let unknown = app.post("/admin/ui/accounts/acme/delete", Some(&alice), &[("csrf", &csrf)], Some(&same)).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
}

/// The single-sign-on header counts only when configured, and only for
/// the users listed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sso_header_counts_only_when_configured() {
    let plain = app().await;
    let req = |who: &str| Request::get("/admin/ui/").header(header::HOST, HOST).header("x-auth-request-email", who).body(Body::empty()).unwrap();
    assert!(to_login(&plain.send(req("alice@acme.example")).await), "ignored when not configured");
    let sso = app_with(|c| {
        c.admin.ui_user_header = "X-Auth-Request-Email".into();
        c.admin.ui_users = vec!["Alice@Acme.example".into()];
    })
    .await;
    let a = sso.send(req("alice@acme.example")).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert!(a.body.contains("alice@acme.example"));
    assert!(to_login(&sso.send(req("mallory@acme.example")).await), "not listed");
    // Sent twice (a client's copy beside the proxy's): nobody.
    let twice = Request::get("/admin/ui/").header(header::HOST, HOST).header("x-auth-request-email", "mallory@acme.example").header("x-auth-request-email", "alice@acme.example").body(Body::empty()).unwrap();
    assert!(to_login(&sso.send(twice).await), "a repeated header signs nobody in");
    // An unlisted user with a valid cookie is still refused: the proxy spoke.
    let cookie = sso.sign_in(ALICE).await;
    let both = Request::get("/admin/ui/").header(header::HOST, HOST).header("x-auth-request-email", "mallory@acme.example").header(header::COOKIE, &cookie).body(Body::empty()).unwrap();
    assert!(to_login(&sso.send(both).await));
    // Forms work under the header with its own CSRF token; the JSON API
    // does not take the header.
    let page = sso.send(req("alice@acme.example")).await;
    let at = page.body.find("name=\"csrf\" value=\"").unwrap() + 19;
    let csrf = page.body[at..].split('"').next().unwrap().to_owned();
    let post = |csrf: &str| {
        Request::post("/admin/ui/accounts/acme/notes").header(header::HOST, HOST).header(header::ORIGIN, format!("https://{HOST}")).header("x-auth-request-email", "alice@acme.example").body(Body::from(format!("text=sso&csrf={csrf}"))).unwrap()
    };
    assert_eq!(sso.send(post("forged")).await.status, StatusCode::FORBIDDEN);
    assert_eq!(sso.send(post(&csrf)).await.status, StatusCode::SEE_OTHER);
    let audit = sso.store.audit_log(Some(&AccountId::new("acme").unwrap()), None, 1).await.unwrap();
    assert_eq!(audit[0].who, "alice@acme.example", "audited under the proxy's name");
    let api = sso.send(Request::get("/admin/accounts/acme").header("x-auth-request-email", "alice@acme.example").body(Body::empty()).unwrap()).await;
    assert_eq!(api.status, StatusCode::UNAUTHORIZED);
}

/// An account owing at Stripe and at Paddle: the account page lists each
/// owed invoice with its own provider's pay link, oldest first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_owed_invoice_shows_its_own_pay_link() {
    let app = app().await;
    let mut paddle = unpaid("paddle:txn_01hacme", 1_500, Utc::now() - TimeDelta::days(3));
    if let Change::InvoiceUnpaid { invoice, .. } = &mut paddle {
        invoice.hosted_url = Some("https://pay.example.com/checkout?_ptxn=txn_01hacme".into());
    }
    app.store.apply(&AccountId::new("acme").unwrap(), None, &[paddle]).await.unwrap();
    let alice = app.sign_in(ALICE).await;
    let page = app.get("/admin/ui/accounts/acme", Some(&alice)).await.body.replace("&#x2f;", "/");
    let list = &page[page.find("Owed invoices").expect("the list")..];
    let stripe = list.find("https://invoice.stripe.com/i/in_1").expect("Stripe's pay link");
    let paddle = list.find("https://pay.example.com/checkout?_ptxn=txn_01hacme").expect("Paddle's pay link");
    assert!(stripe < paddle, "oldest first");
}

/// The contacts form sends back only what the operator changed: a phone
/// and zone Stripe gave stay Stripe's (so Stripe can still change them)
/// when only the accountant is edited; a zone typed in is validated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_contacts_form_changes_only_what_the_operator_changed() {
    use pastdue::state::ContactSource;
    let app = app().await;
    let acme = AccountId::new("acme").unwrap();
    let stripe_said = [
        Change::BillingPhone { phone: Some("+37120000000".into()), source: ContactSource::Stripe },
        Change::Timezone { zone: Some("Europe/Riga".into()), source: ContactSource::Stripe },
    ];
    app.store.apply(&acme, None, &stripe_said).await.unwrap();
    let alice = app.sign_in(ALICE).await;
    let csrf = app.csrf(&alice).await;
    let same = format!("https://{HOST}");
    let page = app.get("/admin/ui/accounts/acme", Some(&alice)).await;
    assert!(page.body.contains("name=\"was_billing_phone\" value=\"+37120000000\""), "the form remembers what it showed");
    let form = [("accountant", "acc@acme.example"), ("account_manager", ""), ("timezone", "Europe/Riga"), ("billing_phone", "+37120000000"), ("was_accountant", ""), ("was_account_manager", ""), ("was_timezone", "Europe/Riga"), ("was_billing_phone", "+37120000000"), ("csrf", &csrf)];
    let saved = app.post("/admin/ui/accounts/acme/contacts", Some(&alice), &form, Some(&same)).await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER);
    let state = app.store.load(&acme).await.unwrap().unwrap();
    assert_eq!(state.contact(pastdue::state::ContactRole::Accountant), Some("acc@acme.example"));
    assert_eq!(state.billing_phone().unwrap().source, ContactSource::Stripe, "untouched: still Stripe's");
    assert_eq!(state.timezone().unwrap().source, ContactSource::Stripe);
    // A zone typed in: validated, then the operator's.
    let bad = [("timezone", "Riga"), ("was_timezone", "Europe/Riga"), ("csrf", &csrf)];
    let refused = app.post("/admin/ui/accounts/acme/contacts", Some(&alice), &bad, Some(&same)).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(refused.body.contains("timezone"), "{}", refused.body);
    let good = [("timezone", "Asia/Kathmandu"), ("was_timezone", "Europe/Riga"), ("csrf", &csrf)];
    assert_eq!(app.post("/admin/ui/accounts/acme/contacts", Some(&alice), &good, Some(&same)).await.status, StatusCode::SEE_OTHER);
    let state = app.store.load(&acme).await.unwrap().unwrap();
    assert_eq!((state.timezone().unwrap().value.as_str(), state.timezone().unwrap().source), ("Asia/Kathmandu", ContactSource::Admin));
    assert_eq!(state.billing_phone().unwrap().source, ContactSource::Stripe);
}
