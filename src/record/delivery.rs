//! Delivery records (`pixelgate.delivery/1`): what a destination gave up, one record per event,
//! written to the raw-record sink beside the hits' records (`docs/records.md#delivery-records`).
//! Never a second copy of the hit: a reader counting `pixelgate.hit/1` records counts hits, and
//! the forwarder keeps of a batched hit only its event id and account, not its record.

use serde::Serialize;

use super::Timestamp;

/// Value of the `schema` field of every delivery record.
pub const DELIVERY_SCHEMA: &str = "pixelgate.delivery/1";

/// Why a destination gave an event up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GivenUp {
    /// A closed label (also used in metrics), e.g. `invalid_token`, `rejected_no_user_agent`,
    /// `retries_exhausted`, `invalid_parameter`.
    pub reason: &'static str,
    /// What the platform or the transport said, for a person; never carries a credential.
    pub detail: String,
    /// The platform's error code, when it answered with one.
    pub code: Option<i64>,
    /// How many requests carried the event (0 when it was never sent).
    pub attempts: u32,
}

/// One given-up event's delivery record.
#[derive(Debug, Serialize)]
pub struct DeliveryRecord<'a> {
    pub schema: &'static str,
    /// The hit's `event_id`, the id the destination deduplicates on.
    pub event_id: &'a str,
    pub pixel_id: &'a str,
    /// The pixel's account, if it is registered.
    pub account_id: Option<&'a str>,
    /// The destination's name (`meta`).
    pub destination: &'a str,
    /// Always `failed`: only what is given up is recorded (sent events are counted and listed
    /// in the pixel's deliveries).
    pub outcome: &'static str,
    pub reason: &'static str,
    pub code: Option<i64>,
    pub attempts: u32,
    /// When it was given up.
    pub at: Timestamp,
    pub detail: &'a str,
}

impl<'a> DeliveryRecord<'a> {
    /// The record of `event_id` (of `pixel_id`'s hit, in `account_id`) given up by
    /// `destination` at `at`.
    pub fn failed(event_id: &'a str, pixel_id: &'a str, account_id: Option<&'a str>, destination: &'a str, given_up: &'a GivenUp, at: Timestamp) -> Self {
        DeliveryRecord {
            schema: DELIVERY_SCHEMA,
            event_id,
            pixel_id,
            account_id,
            destination,
            outcome: "failed",
            reason: given_up.reason,
            code: given_up.code,
            attempts: given_up.attempts,
            at,
            detail: &given_up.detail,
        }
    }

    /// Appends its NDJSON line, newline included. Written by `serde_json`: a delivery record is
    /// written only for an event given up, off the pixel's path.
    pub fn write_line(&self, out: &mut Vec<u8>) {
        serde_json::to_writer(&mut *out, self).expect("strings, numbers and a timestamp always serialise");
        out.push(b'\n');
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn a_delivery_record_is_one_json_line_that_reads_back_as_written(
            event_id in any::<String>(), pixel_id in "[0-9]{1,20}", account_id in proptest::option::of(any::<String>()),
            code in proptest::option::of(any::<i64>()), attempts in any::<u32>(), ms in 0u64..4_000_000_000_000, detail in any::<String>(),
        ) {
            let given_up = GivenUp { reason: "retries_exhausted", detail, code, attempts };
            let record = DeliveryRecord::failed(&event_id, &pixel_id, account_id.as_deref(), "meta", &given_up, Timestamp(UNIX_EPOCH + Duration::from_millis(ms)));
            let mut line = Vec::new();
            record.write_line(&mut line);
            prop_assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
            prop_assert_eq!(line.last(), Some(&b'\n'));
            let read: serde_json::Value = serde_json::from_slice(&line).unwrap();
            prop_assert_eq!(&read["schema"], "pixelgate.delivery/1");
            prop_assert_eq!(read["event_id"].as_str(), Some(event_id.as_str()));
            prop_assert_eq!(read["account_id"].as_str(), account_id.as_deref());
            prop_assert_eq!(read["code"].as_i64(), code);
            prop_assert_eq!(read["attempts"].as_u64(), Some(u64::from(attempts)));
            prop_assert_eq!(read["detail"].as_str(), Some(given_up.detail.as_str()));
        }
    }

    #[test]
    fn a_delivery_record_names_its_event_and_says_why() {
        let given_up = GivenUp { reason: "invalid_token", detail: "HTTP 400, code 190".into(), code: Some(190), attempts: 1 };
        let mut line = Vec::new();
        DeliveryRecord::failed("e1", "123", Some("acc_1"), "meta", &given_up, Timestamp(UNIX_EPOCH + Duration::from_millis(1_700_000_000_123))).write_line(&mut line);
        assert_eq!(
            String::from_utf8(line).unwrap(),
            "{\"schema\":\"pixelgate.delivery/1\",\"event_id\":\"e1\",\"pixel_id\":\"123\",\"account_id\":\"acc_1\",\"destination\":\"meta\",\"outcome\":\"failed\",\"reason\":\"invalid_token\",\"code\":190,\"attempts\":1,\"at\":\"2023-11-14T22:13:20.123Z\",\"detail\":\"HTTP 400, code 190\"}\n"
        );
    }
}
