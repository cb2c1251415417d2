//! The terminal protocol's client frames (JSON text frames) and server messages: any bytes parse
//! to a message or an error, never a panic; what parses survives a round trip unchanged.
#![no_main]

use clarateach_core::{TerminalClientMessage, TerminalServerMessage};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = serde_json::from_slice::<TerminalClientMessage>(data) {
        let again: TerminalClientMessage =
            serde_json::from_str(&serde_json::to_string(&msg).expect("serialise")).expect("reparse");
        assert_eq!(msg, again);
    }
    if let Ok(msg) = serde_json::from_slice::<TerminalServerMessage>(data) {
        let again: TerminalServerMessage =
            serde_json::from_str(&serde_json::to_string(&msg).expect("serialise")).expect("reparse");
        assert_eq!(msg, again);
    }
});
