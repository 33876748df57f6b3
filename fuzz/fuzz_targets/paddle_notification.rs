#![no_main]
use libfuzzer_sys::fuzz_target;

// Paddle notifications: the envelope, then the facts of each entity.
fuzz_target!(|data: &[u8]| {
    if let Ok(n) = pastdue::paddle::event::Notification::parse(data) {
        let _ = pastdue::paddle::event::facts(&n, "account_id");
    }
});
