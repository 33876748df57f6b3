#![no_main]
use libfuzzer_sys::fuzz_target;

// The tolerant event parser and the fact extraction on arbitrary bodies.
fuzz_target!(|data: &[u8]| {
    if let Ok(event) = pastdue::__internals::Event::parse(data) {
        let _ = pastdue::__internals::facts(&event, "account_id");
    }
});
