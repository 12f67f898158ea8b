//! The record's NDJSON encoder, written by hand because it runs once per hit on the pixel's core.
//!
//! It writes exactly the bytes `serde_json` writes for [`Hit`] (field order, escapes, number
//! forms); a property test holds it to that. Strings are scanned for the three things JSON must
//! escape (`"`, `\` and control characters), which almost no value has, and copied in the same
//! pass straight into the line's spare room, sixteen bytes at a time with SSE2.

use std::io::Write as _;
use std::net::IpAddr;
use std::time::UNIX_EPOCH;

use super::{Fields, Timestamp};
use crate::simd::{self, Stops};

/// Appends `hit` as one JSON object (no newline).
pub(super) fn write_hit<F: Fields>(out: &mut Vec<u8>, hit: &F) {
    out.reserve(512);
    out.extend_from_slice(b"{\"schema\":");
    string(out, super::SCHEMA);
    out.extend_from_slice(b",\"source\":");
    string(out, hit.source().as_str());
    out.extend_from_slice(b",\"received_at\":");
    timestamp(out, hit.received_at());
    out.extend_from_slice(b",\"pixel_id\":");
    opt(out, hit.pixel_id());
    out.extend_from_slice(b",\"account_id\":");
    opt(out, hit.account_id());
    out.extend_from_slice(b",\"event\":");
    opt(out, hit.event());
    out.extend_from_slice(b",\"event_id\":");
    string(out, hit.event_id());
    out.extend_from_slice(b",\"ip\":");
    match hit.ip() {
        Some(ip) => ip_addr(out, ip),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"user_agent\":");
    opt(out, hit.user_agent());
    out.extend_from_slice(b",\"url\":");
    opt(out, hit.url());
    out.extend_from_slice(b",\"referrer\":");
    opt(out, hit.referrer());
    out.extend_from_slice(b",\"client_ts\":");
    match hit.client_ts() {
        Some(ts) => out.extend_from_slice(itoa::Buffer::new().format(ts).as_bytes()),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"attrs\":");
    map(out, hit.attrs());
    out.extend_from_slice(b",\"user\":");
    map(out, hit.user());
    out.extend_from_slice(b",\"test_event_code\":");
    opt(out, hit.test_event_code());
    out.extend_from_slice(b",\"flags\":[");
    for (i, flag) in hit.flags().iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string(out, flag.as_str());
    }
    out.extend_from_slice(b"],\"extra\":");
    map(out, hit.extra());
    out.push(b'}');
}

fn opt(out: &mut Vec<u8>, value: Option<&str>) {
    match value {
        Some(s) => string(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

fn map<'a>(out: &mut Vec<u8>, entries: impl Iterator<Item = (&'a str, &'a str)>) {
    out.push(b'{');
    for (i, (k, v)) in entries.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string(out, k);
        out.push(b':');
        string(out, v);
    }
    out.push(b'}');
}

/// `"YYYY-MM-DDTHH:MM:SS.mmmZ"`, as `humantime::format_rfc3339_millis` writes it. Hits arrive in
/// time order, so the date and time up to the second is formatted once per second and thread.
fn timestamp(out: &mut Vec<u8>, t: Timestamp) {
    thread_local! {
        /// Unix second and its `YYYY-MM-DDTHH:MM:SS` text.
        static SECOND: std::cell::Cell<(u64, [u8; 19])> = const { std::cell::Cell::new((u64::MAX, [0; 19])) };
    }
    let Ok(since) = t.0.duration_since(UNIX_EPOCH) else {
        let _ = write!(out, "\"{}\"", humantime::format_rfc3339_millis(t.0));
        return;
    };
    let secs = since.as_secs();
    let (cached, mut text) = SECOND.get();
    if cached != secs {
        let full = humantime::format_rfc3339_seconds(t.0).to_string();
        text.copy_from_slice(&full.as_bytes()[..19]);
        SECOND.set((secs, text));
    }
    let ms = since.subsec_millis();
    out.push(b'"');
    out.extend_from_slice(&text);
    let [hundreds, tens, ones] = [ms / 100, ms / 10 % 10, ms % 10].map(|d| b'0' + d as u8);
    put_bytes(out, 6, |room| {
        for b in [b'.', hundreds, tens, ones, b'Z', b'"'] {
            room.put(b);
        }
    });
}

/// Appends `ip` as a JSON string, quotes included.
pub fn ip_addr(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => put_bytes(out, 17, |room| {
            room.put(b'"');
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    room.put(b'.');
                }
                if octet >= 100 {
                    room.put(b'0' + octet / 100);
                }
                if octet >= 10 {
                    room.put(b'0' + octet / 10 % 10);
                }
                room.put(b'0' + octet % 10);
            }
            room.put(b'"');
        }),
        IpAddr::V6(_) => {
            let _ = write!(out, "\"{ip}\"");
        }
    }
}

/// Appends at most `max` bytes, written one by one by `fill` straight into `out`'s spare room.
/// A short run of bytes gathered in a stack array first is copied by a `memcpy` call (or read
/// back whole before its byte stores have retired); pushing them one by one checks the
/// capacity each time.
fn put_bytes(out: &mut Vec<u8>, max: usize, fill: impl FnOnce(&mut Room<'_>)) {
    out.reserve(max);
    let len = out.len();
    let mut room = Room { spare: &mut out.spare_capacity_mut()[..max], n: 0 };
    fill(&mut room);
    let n = room.n;
    // SAFETY: `Room::put` initialised `spare[..n]`, the first `n` bytes after the length.
    unsafe { out.set_len(len + n) };
}

/// The spare room [`put_bytes`] fills.
struct Room<'a> {
    spare: &'a mut [std::mem::MaybeUninit<u8>],
    n: usize,
}

impl Room<'_> {
    #[inline(always)]
    fn put(&mut self, b: u8) {
        self.spare[self.n].write(b);
        self.n += 1;
    }
}

/// Appends the leading bytes of `bytes` that need no escaping to `out` and returns how many.
/// Room is made once and the scan writes straight into it, sixteen bytes at a time
/// ([`simd::copy_until`]): no capacity check or copy call per string or run (record strings are
/// mostly a few bytes long, where those cost more than the scan).
fn copy_plain(out: &mut Vec<u8>, bytes: &[u8]) -> usize {
    // Sixteen bytes of slack: blocks are stored whole.
    out.reserve(bytes.len() + 16);
    let len = out.len();
    let n = simd::copy_until(&mut out.spare_capacity_mut()[..bytes.len() + 16], bytes, Stops::JsonEscape);
    // SAFETY: `copy_until` initialised the first `n` bytes of the spare capacity, the `n` bytes
    // after the length.
    unsafe { out.set_len(len + n) };
    n
}

/// Appends `s` as a JSON string, escaping as `serde_json` does.
pub fn string(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    // The common case in one go: room for the quotes, the text and the copy's sixteen bytes of
    // slack made once, the quotes written in place, one length update.
    out.reserve(bytes.len() + 2 + 16);
    let len = out.len();
    let spare = &mut out.spare_capacity_mut()[..bytes.len() + 2 + 16];
    spare[0].write(b'"');
    let n = simd::copy_until(&mut spare[1..], bytes, Stops::JsonEscape);
    if n == bytes.len() {
        spare[1 + n].write(b'"');
        // SAFETY: the opening quote, the `n` bytes `copy_until` wrote and the closing quote
        // initialised the first `n + 2` bytes of the spare room.
        unsafe { out.set_len(len + n + 2) };
        return;
    }
    // SAFETY: the opening quote and the `n` plain bytes before the first to escape are written.
    unsafe { out.set_len(len + 1 + n) };
    let mut at = n;
    while let Some(&b) = bytes.get(at) {
        escape(out, b);
        at += 1;
        at += copy_plain(out, &bytes[at..]);
    }
    out.push(b'"');
}

fn escape(out: &mut Vec<u8>, b: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    match b {
        b'"' => out.extend_from_slice(b"\\\""),
        b'\\' => out.extend_from_slice(b"\\\\"),
        b'\n' => out.extend_from_slice(b"\\n"),
        b'\r' => out.extend_from_slice(b"\\r"),
        b'\t' => out.extend_from_slice(b"\\t"),
        0x08 => out.extend_from_slice(b"\\b"),
        0x0c => out.extend_from_slice(b"\\f"),
        _ => out.extend_from_slice(&[b'\\', b'u', b'0', b'0', HEX[(b >> 4) as usize], HEX[(b & 0xf) as usize]]),
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::sync::Arc;
    use std::time::{Duration, UNIX_EPOCH};

    use proptest::prelude::*;

    use super::super::{Flag, Flags, Hit, SCHEMA, Source};
    use super::*;

    fn text() -> impl Strategy<Value = String> {
        // Mostly the characters that matter to JSON: quotes, backslashes, controls, DEL,
        // multi-byte UTF-8, and runs long enough to exercise the sixteen-byte scan.
        prop_oneof!["[\\x00-\\x7f]{0,40}", "[a-z0-9\"\\\\\\n\\t\\x01\\x1f\\x7fé€😀 ]{0,40}", any::<String>(),]
    }

    pub(in crate::record) fn hit() -> impl Strategy<Value = Hit> {
        let opt = || proptest::option::of(text());
        let map = || proptest::collection::btree_map(text(), text(), 0..4);
        let ip = prop_oneof![Just(None), any::<u32>().prop_map(|v| Some(IpAddr::V4(Ipv4Addr::from(v)))), any::<u128>().prop_map(|v| Some(IpAddr::V6(Ipv6Addr::from(v)))),];
        let flags = proptest::sample::subsequence(vec![Flag::Bot, Flag::Oversize, Flag::BadEncoding, Flag::DomainNotAllowed, Flag::SettingsUnavailable], 0..6);
        ((0u64..4_000_000_000_000, opt(), opt(), text(), ip, opt(), opt(), opt()), (proptest::option::of(any::<i64>()), map(), map(), opt(), flags, map(), opt())).prop_map(
            |((ms, pixel_id, event, event_id, ip, user_agent, url, referrer), (client_ts, attrs, user, test_event_code, flag_list, extra, account_id))| {
                let mut flags = Flags::default();
                flag_list.into_iter().for_each(|f| flags.set(f));
                Hit {
                    schema: SCHEMA,
                    source: [Source::Pixel, Source::Api, Source::EventBridge, Source::Sqs][(ms % 4) as usize],
                    received_at: Timestamp(UNIX_EPOCH + Duration::from_millis(ms)),
                    pixel: None,
                    pixel_id,
                    account_id: account_id.map(Arc::from),
                    event,
                    event_id,
                    ip,
                    user_agent,
                    url,
                    referrer,
                    client_ts,
                    attrs,
                    user,
                    test_event_code,
                    flags,
                    extra,
                    routing: Default::default(),
                }
            },
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(5_000))]
        /// The hand-written encoder writes exactly serde_json's bytes for every hit.
        #[test]
        fn writes_what_serde_json_writes(hit in hit()) {
            let mut ours = Vec::new();
            write_hit(&mut ours, &hit);
            prop_assert_eq!(String::from_utf8(ours).unwrap(), serde_json::to_string(&hit).unwrap());
        }
    }

    #[test]
    fn the_plain_copy_stops_at_the_first_byte_to_escape_for_every_byte_length_and_position() {
        for len in 0..40 {
            for pos in 0..=len {
                for special in 0..=255u8 {
                    let mut s = vec![b'a'; len];
                    if pos < len {
                        s[pos] = special;
                    }
                    let mut out = b"prefix".to_vec();
                    let n = copy_plain(&mut out, &s);
                    let expected = s.iter().position(|&b| Stops::JsonEscape.matches(b)).unwrap_or(len);
                    assert_eq!(n, expected, "byte {special:#x} at {pos} of {len}");
                    assert_eq!(out, [b"prefix", &s[..n]].concat());
                }
            }
        }
    }

    #[test]
    fn the_block_scans_find_every_escape_at_every_position() {
        for special in [b'"', b'\\', 0x00, 0x1f, b'\n'] {
            for pos in 0..40 {
                let mut s = vec![b'a'; 40];
                s[pos] = special;
                let s = String::from_utf8(s).unwrap();
                let mut ours = Vec::new();
                string(&mut ours, &s);
                assert_eq!(String::from_utf8(ours).unwrap(), serde_json::to_string(&s).unwrap(), "byte {special:#x} at {pos}");
            }
        }
    }
}
