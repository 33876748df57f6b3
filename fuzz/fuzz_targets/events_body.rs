#![no_main]
use libfuzzer_sys::fuzz_target;

// In-house billing events (Standard Webhooks bodies): the schema's rules
// and the changes they make.
fuzz_target!(|data: &[u8]| {
    let _ = pastdue::events::read(data);
});
