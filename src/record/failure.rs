//! A failure record written from the record's line (`docs/records.md#failure-records`).
//!
//! The forwarder lets a hit go as soon as its event is written, and keeps only the line the
//! intake already wrote for the raw-record sink (a slice of a buffer shared by many hits). When
//! it gives an event up, the failure record is that line with `capi_failed` added to `flags` and
//! a `capi_failure` object after `extra`: exactly the bytes [`super::Hit::capi_failed`] would
//! have written (a property test holds it to that), without the hit. Rare, so serde reads it.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::{CapiFailure, Flag, Timestamp};

/// The fields a failure record changes or needs, borrowed from the line.
#[derive(Deserialize)]
struct Marks<'a> {
    #[serde(borrow)]
    received_at: &'a str,
    #[serde(borrow)]
    account_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    flags: &'a RawValue,
    #[serde(borrow)]
    extra: &'a RawValue,
}

/// Why a line could not be read as a record (only a line the record encoder did not write).
#[derive(Debug, thiserror::Error)]
#[error("not a record line: {0}")]
pub struct NotARecord(String);

/// A record's line, read as far as a failure record needs.
#[derive(Debug)]
pub struct RecordLine<'a> {
    line: &'a [u8],
    received_at: Timestamp,
    account_id: Option<Cow<'a, str>>,
    /// Where the flags array's closing bracket is.
    flags_close: usize,
    /// Whether the flags array is empty.
    no_flags: bool,
    /// Where the extra object ends.
    extra_end: usize,
}

impl<'a> RecordLine<'a> {
    /// Reads `line` (newline included), as the record encoder wrote it.
    pub fn parse(line: &'a [u8]) -> Result<RecordLine<'a>, NotARecord> {
        let text = std::str::from_utf8(line).map_err(|e| NotARecord(e.to_string()))?;
        let marks: Marks<'a> = serde_json::from_str(text.trim_end_matches('\n')).map_err(|e| NotARecord(e.to_string()))?;
        let received_at = humantime::parse_rfc3339(marks.received_at).map_err(|e| NotARecord(format!("received_at: {e}")))?;
        let at = |raw: &RawValue| raw.get().as_ptr() as usize - text.as_ptr() as usize;
        Ok(RecordLine {
            line,
            received_at: Timestamp(received_at),
            account_id: marks.account_id,
            flags_close: at(marks.flags) + marks.flags.get().len() - 1,
            no_flags: marks.flags.get() == "[]",
            extra_end: at(marks.extra) + marks.extra.get().len(),
        })
    }

    /// When the hit was received (the sink's partition).
    pub fn received_at(&self) -> Timestamp {
        self.received_at
    }

    /// The hit's account, if its pixel is registered.
    pub fn account_id(&self) -> Option<&str> {
        self.account_id.as_deref()
    }

    /// Appends the failure record (newline included): the line with `capi_failed` added to its
    /// flags and `failure` after `extra`.
    pub fn write_failed(&self, failure: &CapiFailure, out: &mut Vec<u8>) {
        let line = self.line;
        out.reserve(line.len() + 128 + failure.detail.len());
        out.extend_from_slice(&line[..self.flags_close]);
        if !self.no_flags {
            out.push(b',');
        }
        super::write_json_string(out, Flag::CapiFailed.as_str());
        out.extend_from_slice(&line[self.flags_close..self.extra_end]);
        out.extend_from_slice(b",\"capi_failure\":");
        serde_json::to_writer(&mut *out, failure).expect("strings and numbers always serialise");
        out.extend_from_slice(&line[self.extra_end..]);
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::super::json::tests::hit;
    use super::super::{Flag, Hit};
    use super::*;

    fn failure() -> impl Strategy<Value = CapiFailure> {
        ("[a-z \"\\\\é\\n]{0,30}", proptest::option::of(any::<i64>()), any::<u32>()).prop_map(|(detail, code, attempts)| CapiFailure {
            reason: "retries_exhausted",
            detail,
            code,
            attempts,
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3_000))]
        /// The line-made failure record is byte for byte the failed hit's own line.
        #[test]
        fn is_the_failed_hits_line(mut hit in hit(), failure in failure()) {
            // A record line never carries a failure or the failure flag of its own.
            hit.capi_failure = None;
            hit.flags = hit.flags.iter().filter(|f| *f != Flag::CapiFailed).fold(Default::default(), |mut flags, f| {
                flags.set(f);
                flags
            });
            let mut line = Vec::new();
            hit.write_line(&mut line);
            let read = RecordLine::parse(&line).unwrap();
            let mut made = Vec::new();
            read.write_failed(&failure, &mut made);
            let mut expected = Vec::new();
            Hit::capi_failed(&hit, failure).write_line(&mut expected);
            prop_assert_eq!(String::from_utf8(made).unwrap(), String::from_utf8(expected).unwrap());
            prop_assert_eq!(read.received_at().unix_millis(), hit.received_at.unix_millis());
            prop_assert_eq!(read.account_id(), hit.account_id.as_deref());
        }
    }

    #[test]
    fn a_line_that_is_not_a_record_is_refused() {
        assert!(RecordLine::parse(b"{\"flags\":[]}\n").is_err());
        assert!(RecordLine::parse(b"not json\n").is_err());
    }
}
