//! Agent protocol messages in both directions: any bytes from a peer parse to a message or an
//! error, never a panic; what parses survives a round trip unchanged.
#![no_main]

use clarateach_core::agent_proto::{AgentMessage, ControlMessage};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = serde_json::from_slice::<AgentMessage>(data) {
        let again: AgentMessage =
            serde_json::from_str(&serde_json::to_string(&msg).expect("serialise")).expect("reparse");
        assert_eq!(msg, again);
    }
    if let Ok(msg) = serde_json::from_slice::<ControlMessage>(data) {
        let again: ControlMessage =
            serde_json::from_str(&serde_json::to_string(&msg).expect("serialise")).expect("reparse");
        assert_eq!(msg, again);
    }
});
