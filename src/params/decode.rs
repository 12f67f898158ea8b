//! `application/x-www-form-urlencoded` decoding in one pass, for the pixel's hot path.
//!
//! Same results as `form_urlencoded::parse` (a property test holds it to that).
//! [`marked_pairs`] splits without decoding and says where each part's first escape is, from one
//! scan for `&`, `=`, `%` and `+`; [`decode_escaped_into`] appends an escaped name or value to the
//! hit builder's buffer (decoded in one pass, in place, and checked as UTF-8 only if an escape
//! decoded above ASCII) and reports what was wrong
//! (an invalid escape, invalid UTF-8 decoded lossily) instead of it being found again by
//! rescanning. [`decoded`] decodes one part, borrowing it when it needs no decoding.

use std::borrow::Cow;

use crate::simd::{self, Stops};

/// One decoded `key=value` pair (the tests' view of a query).
#[cfg(test)]
pub struct Pair<'a> {
    pub key: Cow<'a, str>,
    pub value: Cow<'a, str>,
}

/// The pairs of `input`, skipping empty pieces as `form_urlencoded` does. Invalid escapes are
/// kept literally and invalid UTF-8 is replaced by U+FFFD, silently: [`decode_escaped_into`]
/// says so.
#[cfg(test)]
pub fn pairs(input: &str) -> impl Iterator<Item = Pair<'_>> {
    marked_pairs(input).map(|p| Pair { key: decoded(p.key, p.key_escape), value: decoded(p.value, p.value_escape) })
}

/// One `key=value` piece as sent, and where each part's first `%` or `+` is: a part without one
/// decodes to itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawPair<'a> {
    pub key: &'a str,
    pub value: &'a str,
    pub key_escape: Option<usize>,
    pub value_escape: Option<usize>,
}

/// The `key=value` pieces of `input` as they are, not decoded, skipping empty pieces (a piece
/// without `=` is a key with an empty value), each part a slice of `input` with its first
/// escape, found in the same scan: decode a part with [`decode_escaped_into`] only if it has one.
pub fn marked_pairs(input: &str) -> impl Iterator<Item = RawPair<'_>> {
    RawPairs { input, start: 0, marks: Marks::new(input.as_bytes()) }
}

/// Splits at `&` and then the first `=`, as `str` at ASCII bytes, so pieces that need no
/// decoding need no UTF-8 check either. The bytes that matter (`&`, `=`, `%`, `+`) are found
/// 64 at a time by [`Marks`]; the rest of the input is never looked at byte by byte.
struct RawPairs<'a> {
    input: &'a str,
    /// Where the next piece starts.
    start: usize,
    marks: Marks<'a>,
}

impl<'a> Iterator for RawPairs<'a> {
    type Item = RawPair<'a>;

    // Inlined into the caller's loop: returned through memory, the pair was written in
    // eight-byte halves and read back in sixteen-byte ones, which waits for the stores
    // (no store forwarding).
    #[inline(always)]
    fn next(&mut self) -> Option<RawPair<'a>> {
        let bytes = self.input.as_bytes();
        loop {
            if self.start >= bytes.len() {
                return None;
            }
            let (mut eq, mut key_escape, mut value_escape) = (None, None, None);
            let end = loop {
                let Some(at) = self.marks.next() else {
                    break bytes.len();
                };
                match bytes[at] {
                    b'&' => break at,
                    b'=' if eq.is_none() => eq = Some(at),
                    b'=' => {}
                    _ if eq.is_none() => _ = key_escape.get_or_insert(at),
                    _ => _ = value_escape.get_or_insert(at),
                }
            };
            let start = std::mem::replace(&mut self.start, end + 1);
            if end == start {
                continue;
            }
            // Both parts are slices of `input`, even an absent value (empty, at the piece's
            // end): callers locate them in it.
            let (key_end, value_start) = eq.map_or((end, end), |eq| (eq, eq + 1));
            debug_assert!(start <= key_end && key_end <= value_start && value_start <= end && end <= bytes.len());
            // SAFETY: in bounds (`start <= key_end <= value_start <= end <= len`), and each bound
            // is 0, the input's length, or the position of an ASCII `&` or `=` or one past it, so
            // a character boundary: the checks of `&input[..]` would only repeat that.
            let (key, value) = unsafe { (self.input.get_unchecked(start..key_end), self.input.get_unchecked(value_start..end)) };
            return Some(RawPair { key, value, key_escape: key_escape.map(|at| at - start), value_escape: value_escape.map(|at| at - value_start) });
        }
    }
}

/// The positions of `&`, `=`, `%` and `+` in a byte string, in order.
struct Marks<'a> {
    bytes: &'a [u8],
    /// Start of the 64-byte block `mask` describes.
    block: usize,
    /// One bit per byte of the block still to report.
    mask: u64,
}

impl<'a> Marks<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Marks { bytes, block: 0, mask: simd::mask64(bytes, 0, Stops::QueryMark) }
    }

    fn next(&mut self) -> Option<usize> {
        while self.mask == 0 {
            self.block += 64;
            if self.block >= self.bytes.len() {
                return None;
            }
            self.mask = simd::mask64(self.bytes, self.block, Stops::QueryMark);
        }
        let at = self.block + self.mask.trailing_zeros() as usize;
        self.mask &= self.mask - 1;
        Some(at)
    }
}

/// The first `%` or `+`, found directly (the tests' reference for [`Marks`]).
#[cfg(test)]
fn find_escape(raw: &[u8]) -> Option<usize> {
    raw.iter().position(|&b| b == b'%' || b == b'+')
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes `+` and `%XX` given the first one's position, borrowing text that has neither.
pub fn decoded(text: &str, escape: Option<usize>) -> Cow<'_, str> {
    let Some(first) = escape else {
        return Cow::Borrowed(text);
    };
    let mut out = Vec::new();
    let _ = unescape(text.as_bytes(), first, &mut out);
    match String::from_utf8(out) {
        Ok(s) => Cow::Owned(s),
        Err(e) => Cow::Owned(String::from_utf8_lossy(e.as_bytes()).into_owned()),
    }
}

/// Appends `text` decoded to `out`, as [`pairs`] decodes it; returns whether it met an invalid
/// escape or invalid UTF-8.
#[cfg(test)]
fn decode_into(text: &str, out: &mut String) -> bool {
    match find_escape(text.as_bytes()) {
        Some(first) => decode_escaped_into(text, first, out),
        None => {
            out.push_str(text);
            false
        }
    }
}

/// [`decode_into`] for text whose first `%` or `+` is known to be at `first`: decoded straight
/// into `out`'s buffer, checked as UTF-8 only if an escape decoded to a byte above ASCII.
pub fn decode_escaped_into(text: &str, first: usize, out: &mut String) -> bool {
    let start = out.len();
    // Taken out while bytes are appended, so a panic leaves `out` empty, never invalid.
    let mut bytes = std::mem::take(out).into_bytes();
    let (bad_escape, high) = unescape(text.as_bytes(), first, &mut bytes);
    let valid = !high || std::str::from_utf8(&bytes[start..]).is_ok();
    if !valid {
        let lossy = String::from_utf8_lossy(&bytes[start..]).into_owned();
        bytes.truncate(start);
        bytes.extend_from_slice(lossy.as_bytes());
    }
    debug_assert!(std::str::from_utf8(&bytes[start..]).is_ok());
    // SAFETY: `bytes[..start]` was a `String`. What `unescape` appended is runs of `text` (a
    // `str`) cut at ASCII bytes, so whole characters, and decoded escapes; unless one decoded
    // to a byte above ASCII (`high`) that is valid UTF-8, and if one did it was checked above
    // and replaced by its lossy form when invalid.
    *out = unsafe { String::from_utf8_unchecked(bytes) };
    bad_escape || !valid
}

/// Appends `raw` with `+` and `%XX` decoded to `out`, given the position of its first `%` or
/// `+`; returns whether an escape was invalid (kept literally) and whether one decoded to a
/// byte above ASCII (the result may then not be UTF-8).
///
/// Written straight into `out`'s spare room: plain runs a block at a time by
/// [`simd::copy_until`]
/// (no `memcpy` call per run, no zeroing first), each escape as its one byte.
fn unescape(raw: &[u8], first: usize, out: &mut Vec<u8>) -> (bool, bool) {
    debug_assert!(matches!(raw.get(first), Some(b'%' | b'+')));
    // Decoded text is never longer than `raw`; blocks are stored whole, sixteen bytes of slack.
    out.reserve(raw.len() + 16);
    let start = out.len();
    let dst = &mut out.spare_capacity_mut()[..raw.len() + 16];
    let (mut i, mut n, mut bad, mut high) = (0, 0, false, false);
    loop {
        let run = simd::copy_until(&mut dst[n..], &raw[i..], Stops::FormEscape);
        i += run;
        n += run;
        let Some(&c) = raw.get(i) else { break };
        let decoded = if c == b'+' {
            i += 1;
            b' '
        } else {
            match (raw.get(i + 1).copied().and_then(hex), raw.get(i + 2).copied().and_then(hex)) {
                (Some(hi), Some(lo)) => {
                    i += 3;
                    high |= hi >= 8;
                    hi << 4 | lo
                }
                _ => {
                    i += 1;
                    bad = true;
                    b'%'
                }
            }
        };
        dst[n].write(decoded);
        n += 1;
    }
    // SAFETY: `copy_until` and the loop initialised `dst[..n]`, the `n` bytes after the length.
    unsafe { out.set_len(start + n) };
    (bad, high)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn reference_bad(input: &str) -> bool {
        let b = input.as_bytes();
        let bad_escape = b.iter().enumerate().any(|(i, &c)| c == b'%' && !(b.get(i + 1).is_some_and(u8::is_ascii_hexdigit) && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit)));
        let lossy = |s: &Cow<'_, str>| matches!(s, Cow::Owned(o) if o.contains('\u{FFFD}'));
        bad_escape || form_urlencoded::parse(b).any(|(k, v)| lossy(&k) || lossy(&v))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(5_000))]
        /// Same pairs as `form_urlencoded::parse`; the arena decoder gives the same text and says
        /// "bad" exactly when the input has an invalid escape or decodes to invalid UTF-8 (inputs
        /// without a literal U+FFFD).
        #[test]
        fn decodes_like_form_urlencoded(input in "([a-z=&+%]|%[0-9a-fA-F]{2}|%[0-9a-gz]{0,2}|%[89a-fA-F][0-9a-f]|é|😀){0,30}") {
            let ours: Vec<(String, String)> = pairs(&input).map(|p| (p.key.into_owned(), p.value.into_owned())).collect();
            let theirs: Vec<(String, String)> = form_urlencoded::parse(input.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
            prop_assert_eq!(ours, theirs);
            let (mut arena, mut bad) = (String::new(), false);
            for (marked, pair) in marked_pairs(&input).zip(pairs(&input)) {
                prop_assert_eq!(marked.key_escape, find_escape(marked.key.as_bytes()));
                prop_assert_eq!(marked.value_escape, find_escape(marked.value.as_bytes()));
                let (k, v) = (marked.key, marked.value);
                let start = arena.len();
                bad |= decode_into(k, &mut arena) | decode_into(v, &mut arena);
                prop_assert_eq!(&arena[start..], format!("{}{}", pair.key, pair.value));
            }
            prop_assert_eq!(bad, reference_bad(&input));
        }
    }

    #[test]
    fn plain_runs_of_every_block_length_around_escapes_decode_like_form_urlencoded() {
        let lengths = [0, 1, 7, 8, 15, 16, 17, 31, 32, 33, 47];
        for escape in ["%41", "+", "%e2%82%ac", "%zz", "%4", "%"] {
            for &before in &lengths {
                for &between in &lengths {
                    let input = format!("k={}{escape}{}{escape}{}", "a".repeat(before), "b".repeat(between), "c".repeat(before));
                    let value = marked_pairs(&input).next().unwrap();
                    let mut ours = String::new();
                    let bad = decode_into(value.value, &mut ours);
                    let theirs = form_urlencoded::parse(input.as_bytes()).next().unwrap().1;
                    assert_eq!(ours, theirs, "{input}");
                    assert_eq!(bad, reference_bad(&input), "{input}");
                }
            }
        }
    }

    #[test]
    fn plain_values_are_borrowed() {
        let p: Vec<_> = pairs("a=1&b=x%20y&c").collect();
        assert!(matches!(p[0].value, Cow::Borrowed("1")));
        assert_eq!(p[1].value, "x y");
        assert!(matches!(p[2].value, Cow::Borrowed("")));
    }
}
