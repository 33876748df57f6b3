#![no_main]
use libfuzzer_sys::fuzz_target;

// The config loader on arbitrary TOML text.
fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = pastdue::Config::from_toml(text);
    }
});
