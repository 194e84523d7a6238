//! The message part of the SQS endpoint's JSON bodies (`SendMessageBatch` entries, the
//! endpoint's own `sprout_core::queue::SendBatch`): parsed, checked and prepared as the
//! endpoint does. What is accepted must come back unchanged from the
//! attributes JSON the store keeps, with the MD5s the sender was given.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sprout_core::queue::{self as q, Attributes, SendBatch};

fuzz_target!(|data: &[u8]| {
    let Ok(body) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let Ok(batch) = serde_json::from_value::<SendBatch>(body) else {
        return;
    };
    let _ = q::check_batch_ids(batch.entries.iter().map(|e| e.id.as_str()));
    for e in &batch.entries {
        let Some(text) = e.message_body.as_deref() else {
            continue;
        };
        let delay = e.delay_seconds.unwrap_or(0);
        if q::check_range("DelaySeconds", delay, 0, i64::from(q::MAX_DELAY_SECONDS)).is_err() {
            continue;
        }
        let Ok(size) = q::check_message(text, &e.message_attributes) else {
            continue;
        };
        assert!(size <= q::MAX_MESSAGE_BYTES);
        let out = sprout_control::queues::prepare(text, &e.message_attributes, delay as u32)
            .expect("a checked message is prepared");
        assert_eq!(out.md5_of_body, q::md5_hex(text.as_bytes()));
        let stored: Attributes =
            serde_json::from_str(&out.row.attributes).expect("stored attributes read back");
        assert_eq!(
            stored, e.message_attributes,
            "attributes changed through the store"
        );
        assert_eq!(q::md5_of_attributes(&stored), out.md5_of_attributes);
    }
});
