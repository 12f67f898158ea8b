//! `application/x-www-form-urlencoded` decoding in one pass, for the pixel's hot path.
//!
//! Same results as `form_urlencoded::parse` (a property test holds it to that). [`raw_pairs`]
//! splits without decoding; [`decode_into`] appends a decoded name or value to the hit builder's
//! buffer (text without `%` or `+` is copied as it is, escaped text is decoded in one pass and
//! checked as UTF-8 once) and reports what was wrong (an invalid escape, invalid UTF-8 decoded
//! lossily) instead of it being found again by rescanning. [`pairs`] gives decoded pairs, borrowed
//! where nothing needed decoding, for readers of other URLs.

use std::borrow::Cow;

/// One decoded `key=value` pair.
pub struct Pair<'a> {
    pub key: Cow<'a, str>,
    pub value: Cow<'a, str>,
}

/// The pairs of `input`, skipping empty pieces as `form_urlencoded` does. Invalid escapes are
/// kept literally and invalid UTF-8 is replaced by U+FFFD, silently: [`decode_into`] says so.
pub fn pairs(input: &str) -> impl Iterator<Item = Pair<'_>> {
    raw_pairs(input).map(|(key, value)| Pair { key: decode(key), value: decode(value) })
}

/// The `key=value` pieces of `input` as they are, not decoded, skipping empty pieces (a piece
/// without `=` is a key with an empty value). Each part is a slice of `input`. Decode each part
/// with [`decode_into`].
pub fn raw_pairs(input: &str) -> impl Iterator<Item = (&str, &str)> {
    RawPairs { rest: input }
}

/// Splits at `&` and then `=`, as `str` at ASCII bytes, so pieces that need no decoding need no
/// UTF-8 check either. One forward scan per piece: `str::split` and `split_once` cost more in
/// set-up than the few bytes of a typical name or value.
struct RawPairs<'a> {
    rest: &'a str,
}

impl<'a> Iterator for RawPairs<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<(&'a str, &'a str)> {
        loop {
            if self.rest.is_empty() {
                return None;
            }
            let bytes = self.rest.as_bytes();
            let end = find_byte(b'&', bytes).unwrap_or(bytes.len());
            let piece = &self.rest[..end];
            self.rest = self.rest.get(end + 1..).unwrap_or("");
            if piece.is_empty() {
                continue;
            }
            // Both parts are slices of `input`, even an absent value (empty, at the piece's
            // end): callers locate them in it.
            return Some(match find_byte(b'=', piece.as_bytes()) {
                Some(eq) => (&piece[..eq], &piece[eq + 1..]),
                None => (piece, &piece[piece.len()..]),
            });
        }
    }
}

/// The first `needle`: a plain loop for the short pieces most are, memchr for long ones.
fn find_byte(needle: u8, raw: &[u8]) -> Option<usize> {
    if raw.len() < 32 { raw.iter().position(|&b| b == needle) } else { memchr::memchr(needle, raw) }
}

/// The first `%` or `+`. Most names and values are a few bytes long, where a plain loop beats
/// setting up memchr's vector search.
fn find_escape(raw: &[u8]) -> Option<usize> {
    if raw.len() < 32 {
        raw.iter().position(|&b| b == b'%' || b == b'+')
    } else {
        memchr::memchr2(b'%', b'+', raw)
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes `+` and `%XX`, borrowing text that has neither.
fn decode(text: &str) -> Cow<'_, str> {
    let raw = text.as_bytes();
    let Some(first) = find_escape(raw) else {
        return Cow::Borrowed(text);
    };
    let mut out = Vec::with_capacity(raw.len());
    unescape(raw, first, &mut out);
    match String::from_utf8(out) {
        Ok(s) => Cow::Owned(s),
        Err(e) => Cow::Owned(String::from_utf8_lossy(e.as_bytes()).into_owned()),
    }
}

/// Whether `text` decodes to itself (it has no `%` or `+`).
pub fn is_plain(text: &str) -> bool {
    find_escape(text.as_bytes()).is_none()
}

/// Appends `text` decoded to `out`, as [`pairs`] decodes it; returns whether it met an invalid
/// escape or invalid UTF-8. `scratch` is working space for escaped text, reused across calls.
pub fn decode_into(text: &str, out: &mut String, scratch: &mut Vec<u8>) -> bool {
    let raw = text.as_bytes();
    let Some(first) = find_escape(raw) else {
        out.push_str(text);
        return false;
    };
    scratch.clear();
    let bad = unescape(raw, first, scratch);
    match std::str::from_utf8(scratch) {
        Ok(s) => {
            out.push_str(s);
            bad
        }
        Err(_) => {
            out.push_str(&String::from_utf8_lossy(scratch));
            true
        }
    }
}

/// Appends `raw` with `+` and `%XX` decoded to `out`, given the position of its first `%` or `+`;
/// returns whether an escape was invalid (kept literally).
fn unescape(raw: &[u8], first: usize, out: &mut Vec<u8>) -> bool {
    let mut bad = false;
    out.extend_from_slice(&raw[..first]);
    let mut i = first;
    while i < raw.len() {
        match raw[i] {
            b'+' => out.push(b' '),
            b'%' => match (raw.get(i + 1).copied().and_then(hex), raw.get(i + 2).copied().and_then(hex)) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 2;
                }
                _ => {
                    bad = true;
                    out.push(b'%');
                }
            },
            _ => {
                let next = find_escape(&raw[i..]).map_or(raw.len(), |n| i + n);
                out.extend_from_slice(&raw[i..next]);
                i = next;
                continue;
            }
        }
        i += 1;
    }
    bad
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn reference_bad(input: &str) -> bool {
        let b = input.as_bytes();
        let bad_escape = b.iter().enumerate().any(|(i, &c)| {
            c == b'%' && !(b.get(i + 1).is_some_and(u8::is_ascii_hexdigit) && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
        });
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
            let (mut arena, mut scratch, mut bad) = (String::new(), Vec::new(), false);
            for ((k, v), pair) in raw_pairs(&input).zip(pairs(&input)) {
                let start = arena.len();
                bad |= decode_into(k, &mut arena, &mut scratch) | decode_into(v, &mut arena, &mut scratch);
                prop_assert_eq!(&arena[start..], format!("{}{}", pair.key, pair.value));
            }
            prop_assert_eq!(bad, reference_bad(&input));
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
