#![no_main]
use libfuzzer_sys::fuzz_target;

// The Stripe-Signature header parser and verifier on arbitrary headers.
fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (header, body) = text.split_once('\n').unwrap_or((text, ""));
    let _ = pastdue::signature::SignatureHeader::parse(header);
    let now = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
    let r = pastdue::signature::verify(Some(header), body.as_bytes(), &["whsec_fuzz".into()], std::time::Duration::from_secs(300), now);
    assert!(r.is_err() || header.contains("v1="));
});
