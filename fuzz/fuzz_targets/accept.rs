#![no_main]
use libfuzzer_sys::fuzz_target;

// Accept negotiation on arbitrary headers.
fuzz_target!(|data: &[u8]| {
    if let Ok(accept) = std::str::from_utf8(data) {
        let _ = pastdue::gate::prefers_html(Some(accept));
    }
});
