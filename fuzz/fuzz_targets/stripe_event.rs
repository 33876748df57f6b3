#![no_main]
use libfuzzer_sys::fuzz_target;

// The tolerant event parser and the fact extraction on arbitrary bodies.
fuzz_target!(|data: &[u8]| {
    if let Ok(event) = pastdue::stripe::event::Event::parse(data) {
        let _ = pastdue::stripe::event::facts(&event, "account_id");
    }
});
