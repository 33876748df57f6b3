#![no_main]
use libfuzzer_sys::fuzz_target;

// Account-id validation agrees with the documented alphabet.
fuzz_target!(|data: &[u8]| {
    if let Ok(id) = std::str::from_utf8(data) {
        let expected = !id.is_empty()
            && id.len() <= 128
            && id.bytes().all(|b| b.is_ascii_alphanumeric() || b".-_:@".contains(&b));
        assert_eq!(pastdue::AccountId::new(id).is_ok(), expected);
    }
});
