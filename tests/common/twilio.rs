//! A stand-in for Twilio's Messages API, built from Twilio's documented
//! shapes (and checked with Twilio's own Python client by
//! `tests/twilio/client.py`): `POST /2010-04-01/Accounts/{sid}/Messages.json`
//! with form fields and HTTP basic auth answers `201` with a Message
//! resource; `GET …/Messages/{MessageSid}.json` reads it back; errors are
//! Twilio's `{code, message, more_info, status}`. Twilio's magic test
//! numbers give its errors: `+15005550001` invalid (21211), `+15005550002`
//! unroutable (21612), `+15005550003` no permission for the region
//! (21408), `+15005550004` unsubscribed (21610), `+15005550009` not a
//! mobile (21614).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use serde_json::{json, Value};

pub const TWILIO_SID: &str = "AC0123456789abcdef0123456789abcdef";
pub const TWILIO_TOKEN: &str = "twilio-auth-token-for-tests";

/// One message Twilio accepted.
#[derive(Clone, Debug)]
pub struct Texted {
    pub sid: String,
    pub to: String,
    pub from: String,
    pub body: String,
}

#[derive(Default)]
struct Inner {
    accepted: Vec<Texted>,
    requests: usize,
    /// Answer `429` this many more times.
    busy: usize,
}

/// The stand-in, serving on a loopback port until the test ends.
#[derive(Clone)]
pub struct Twilio {
    pub base: String,
    inner: Arc<Mutex<Inner>>,
}

fn error(status: StatusCode, code: u32, message: &str) -> Response {
    (status, Json(json!({ "code": code, "message": message, "more_info": format!("https://www.twilio.com/docs/errors/{code}"), "status": status.as_u16() }))).into_response()
}

fn authorized(headers: &HeaderMap, sid: &str) -> bool {
    let want = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{TWILIO_SID}:{TWILIO_TOKEN}")));
    sid == TWILIO_SID && headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(want.as_str())
}

/// Segments as carriers count them (GSM-7: 160, then 153 each; else
/// UCS-2: 70, then 67), no character split across two.
pub fn sms_segments(text: &str) -> usize {
    const GSM: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
    const EXT: &str = "^{}\\[~]|€";
    let gsm = text.chars().all(|c| GSM.contains(c) || EXT.contains(c));
    let widths: Vec<usize> = text.chars().map(|c| if gsm { if EXT.contains(c) { 2 } else { 1 } } else { c.len_utf16() }).collect();
    let (single, per) = if gsm { (160, 153) } else { (70, 67) };
    if widths.iter().sum::<usize>() <= single {
        return 1;
    }
    let mut segments = vec![0usize];
    for w in widths {
        if segments.last().unwrap() + w > per {
            segments.push(0);
        }
        *segments.last_mut().unwrap() += w;
    }
    segments.len()
}

fn resource(m: &Texted) -> Value {
    let now = chrono::Utc::now().to_rfc2822();
    json!({
        "account_sid": TWILIO_SID, "api_version": "2010-04-01", "body": m.body,
        "date_created": now, "date_sent": null, "date_updated": now,
        "direction": "outbound-api", "error_code": null, "error_message": null,
        "from": m.from, "messaging_service_sid": null, "num_media": "0",
        "num_segments": sms_segments(&m.body).to_string(), "price": null, "price_unit": "USD",
        "sid": m.sid, "status": "queued", "to": m.to,
        "subresource_uris": { "media": format!("/2010-04-01/Accounts/{TWILIO_SID}/Messages/{}/Media.json", m.sid) },
        "uri": format!("/2010-04-01/Accounts/{TWILIO_SID}/Messages/{}.json", m.sid),
    })
}

async fn create(State(t): State<Twilio>, Path(sid): Path<String>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let mut inner = t.inner.lock().unwrap();
    inner.requests += 1;
    if !authorized(&headers, &sid) {
        return error(StatusCode::UNAUTHORIZED, 20003, "Authenticate");
    }
    if inner.busy > 0 {
        inner.busy -= 1;
        return error(StatusCode::TOO_MANY_REQUESTS, 20429, "Too Many Requests");
    }
    let form: HashMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
    let (Some(to), Some(from), Some(text)) = (form.get("To"), form.get("From"), form.get("Body")) else {
        return match (form.get("To"), form.get("From")) {
            (None, _) => error(StatusCode::BAD_REQUEST, 21604, "A 'To' phone number is required."),
            (_, None) => error(StatusCode::BAD_REQUEST, 21603, "A 'From' phone number is required."),
            _ => error(StatusCode::BAD_REQUEST, 21602, "Message body is required."),
        };
    };
    let refusal = match to.as_str() {
        "+15005550001" => Some((21211, format!("The 'To' number {to} is not a valid phone number."))),
        "+15005550002" => Some((21612, format!("The 'To' phone number: {to}, is not currently reachable using the 'From' phone number: {from} via SMS."))),
        "+15005550003" => Some((21408, format!("Permission to send an SMS has not been enabled for the region indicated by the 'To' number: {to}."))),
        "+15005550004" => Some((21610, "Attempt to send to unsubscribed recipient".to_owned())),
        "+15005550009" => Some((21614, format!("'To' number {to} is not a valid mobile number"))),
        t if !(t.starts_with('+') && (9..=16).contains(&t.len()) && t[1..].bytes().all(|b| b.is_ascii_digit())) => Some((21211, format!("The 'To' number {to} is not a valid phone number."))),
        _ => None,
    };
    if let Some((code, message)) = refusal {
        return error(StatusCode::BAD_REQUEST, code, &message);
    }
    if text.chars().count() > 1600 {
        return error(StatusCode::BAD_REQUEST, 21617, "The concatenated message body exceeds the 1600 character limit.");
    }
    let m = Texted { sid: format!("SM{:032x}", rand_id()), to: to.clone(), from: from.clone(), body: text.clone() };
    inner.accepted.push(m.clone());
    (StatusCode::CREATED, Json(resource(&m))).into_response()
}

fn rand_id() -> u128 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos());
    (u128::from(h.finish()) << 64) | u128::from(std::collections::hash_map::RandomState::new().build_hasher().finish())
}

async fn fetch(State(t): State<Twilio>, Path((sid, file)): Path<(String, String)>, headers: HeaderMap) -> Response {
    if !authorized(&headers, &sid) {
        return error(StatusCode::UNAUTHORIZED, 20003, "Authenticate");
    }
    let wanted = file.trim_end_matches(".json");
    match t.inner.lock().unwrap().accepted.iter().find(|m| m.sid == wanted) {
        Some(m) => Json(resource(m)).into_response(),
        None => error(StatusCode::NOT_FOUND, 20404, &format!("The requested resource /2010-04-01/Accounts/{sid}/Messages/{file} was not found")),
    }
}

impl Twilio {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let t = Twilio { base: format!("http://{}", listener.local_addr().unwrap()), inner: Arc::default() };
        let app = Router::new()
            .route("/2010-04-01/Accounts/{sid}/Messages.json", post(create))
            .route("/2010-04-01/Accounts/{sid}/Messages/{file}", get(fetch))
            .with_state(t.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        t
    }

    /// `[notify.sms]` pointing here.
    pub fn config(&self, stages: &[&str]) -> pastdue::notify::SmsConfig {
        let mut c = pastdue::notify::SmsConfig::default();
        c.api_base = self.base.clone();
        c.account_sid = TWILIO_SID.into();
        c.auth_token = TWILIO_TOKEN.into();
        c.from = "+15005550006".into();
        c.stages = stages.iter().map(|s| (*s).to_owned()).collect();
        c
    }

    pub fn texted(&self) -> Vec<Texted> {
        self.inner.lock().unwrap().accepted.clone()
    }

    pub fn requests(&self) -> usize {
        self.inner.lock().unwrap().requests
    }

    /// Answers `429` to the next `n` requests.
    pub fn busy_for(&self, n: usize) {
        self.inner.lock().unwrap().busy = n;
    }
}
