//! The instant a hit was received, as records and file names show it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Serialize, Serializer};

/// Wall-clock instant serialised as RFC 3339 UTC with milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp(pub SystemTime);

impl Timestamp {
    /// The current time.
    pub fn now() -> Self {
        Timestamp(SystemTime::now())
    }

    /// Milliseconds since the Unix epoch (0 for times before it).
    pub fn unix_millis(self) -> i64 {
        self.since_epoch().as_millis() as i64
    }

    /// Whole hours since the Unix epoch: the file sink's partition key.
    pub fn unix_hour(self) -> u64 {
        self.since_epoch().as_secs() / 3600
    }

    fn since_epoch(self) -> Duration {
        self.0.duration_since(UNIX_EPOCH).unwrap_or_default()
    }

    /// `YYYY/MM/DD/HH` of this instant in UTC, the prefix layout Firehose gives S3.
    pub fn hour_prefix(self) -> String {
        let s = humantime::format_rfc3339_seconds(self.0).to_string();
        // "2026-11-22T20:02:34Z"
        format!("{}/{}/{}/{}", &s[0..4], &s[5..7], &s[8..10], &s[11..13])
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_rfc3339_millis(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_formats_with_millis_and_hour_prefix() {
        let t = Timestamp(UNIX_EPOCH + Duration::from_millis(1_795_723_354_123));
        assert_eq!(serde_json::to_string(&t).unwrap(), "\"2026-11-26T20:02:34.123Z\"");
        assert_eq!(t.hour_prefix(), "2026/11/26/20");
        assert_eq!(t.unix_hour(), 1_795_723_354 / 3600);
    }
}
