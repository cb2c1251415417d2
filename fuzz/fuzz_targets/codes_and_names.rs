//! What learners type: join codes, reconnect codes and names. Normalisation never panics, is
//! idempotent, and a join code always comes out in the one canonical shape.
#![no_main]

use clarateach_core::ids::{is_valid_odehash, normalize_code, normalize_odehash, CODE_PREFIX};
use clarateach_core::JoinRequest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    let code = normalize_code(&s);
    assert!(code.starts_with(CODE_PREFIX));
    assert_eq!(normalize_code(&code), code, "normalize_code not idempotent for {s:?}");
    let ode = normalize_odehash(&s);
    assert_eq!(normalize_odehash(&ode), ode);
    if is_valid_odehash(&ode) {
        assert_eq!(ode.len(), 5);
    }
    let _ = serde_json::from_slice::<JoinRequest>(data);
});
