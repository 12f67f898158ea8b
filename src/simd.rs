//! The hot path's byte scans, sixteen bytes at a time: the record encoder's copy of text up to
//! the first byte JSON must escape, the query splitter's search for `&`, `=`, `%` and `+`, and the
//! query decoder's copy of plain runs up to the next escape.
//!
//! The API is safe and says nothing of vectors: a scan names the bytes it stops at ([`Stops`]).
//! On x86-64 (every such CPU has SSE2) the scans compare a block of sixteen bytes in a few
//! instructions; elsewhere, or with the crate feature `scalar`, they go byte by byte. Both are
//! compiled on every machine and the tests hold them to each other, and the test command also
//! runs the unit tests with `scalar`, so the fallback is exercised where CI runs.
//!
//! A scan's last, partial block is assembled in registers, never in a stack buffer: a block
//! written byte-wise (or by `memcpy`) and then read back whole cannot be forwarded from the
//! store buffer, so the read waits for the stores to retire — in the profile that one load was
//! the hottest instruction of both scans.

use std::mem::MaybeUninit;

/// The bytes a scan stops at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stops {
    /// What JSON must escape in a string: `"`, `\` and C0 controls.
    JsonEscape,
    /// What starts an escape in a form-encoded name or value: `%` and `+`.
    FormEscape,
    /// What splits or escapes a query string: `&`, `=`, `%` and `+`.
    QueryMark,
}

impl Stops {
    /// Whether the scan stops at `b`.
    #[inline(always)]
    pub(crate) const fn matches(self, b: u8) -> bool {
        match self {
            Stops::JsonEscape => b < 0x20 || b == b'"' || b == b'\\',
            Stops::FormEscape => b == b'%' || b == b'+',
            Stops::QueryMark => matches!(b, b'&' | b'=' | b'%' | b'+'),
        }
    }
}

/// Copies `src` into `dst` up to the first byte `stops` names and returns how many bytes that is
/// (`src.len()` if none). `dst` must be at least sixteen bytes longer than `src`: whole blocks are
/// stored as they are scanned, so a run costs no `memcpy` call. `dst[..returned]` is initialised;
/// bytes after it may be written too.
///
/// # Panics
///
/// If `dst` is shorter than `src.len() + 16`.
#[inline(always)]
pub(crate) fn copy_until(dst: &mut [MaybeUninit<u8>], src: &[u8], stops: Stops) -> usize {
    assert!(dst.len() >= src.len() + 16, "sixteen bytes of slack");
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2", not(feature = "scalar")))]
    return sse2::copy_until(dst, src, stops);
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2", not(feature = "scalar"))))]
    return portable::copy_until(dst, src, stops);
}

/// The bytes of `bytes[start..start + 64]` that `stops` names, as bits, lowest first; bytes past
/// the end count as not named.
#[inline(always)]
pub(crate) fn mask64(bytes: &[u8], start: usize, stops: Stops) -> u64 {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2", not(feature = "scalar")))]
    return sse2::mask64(bytes, start, stops);
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2", not(feature = "scalar"))))]
    return portable::mask64(bytes, start, stops);
}

/// Byte by byte: the fallback, and the reference the vector scans are tested against.
#[cfg_attr(all(target_arch = "x86_64", target_feature = "sse2", not(feature = "scalar"), not(test)), allow(dead_code))]
mod portable {
    use std::mem::MaybeUninit;

    use super::Stops;

    pub(super) fn copy_until(dst: &mut [MaybeUninit<u8>], src: &[u8], stops: Stops) -> usize {
        for (k, &b) in src.iter().enumerate() {
            if stops.matches(b) {
                return k;
            }
            dst[k].write(b);
        }
        src.len()
    }

    pub(super) fn mask64(bytes: &[u8], start: usize, stops: Stops) -> u64 {
        let block = bytes.get(start..).unwrap_or_default();
        block.iter().take(64).enumerate().filter(|&(_, &b)| stops.matches(b)).fold(0, |mask, (i, _)| mask | 1 << i)
    }
}

/// SSE2, part of every x86-64 CPU.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[cfg_attr(feature = "scalar", allow(dead_code))]
mod sse2 {
    use std::arch::x86_64::{__m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128, _mm_set_epi64x, _mm_set1_epi8, _mm_storeu_si128};
    use std::mem::MaybeUninit;

    use super::Stops;

    /// The block of `block`'s sixteen bytes.
    #[inline(always)]
    fn load(block: &[u8; 16]) -> __m128i {
        // SAFETY: SSE2 is enabled (the module's cfg); the unaligned load reads the sixteen bytes
        // of `block`, which the reference makes valid to read.
        unsafe { _mm_loadu_si128(block.as_ptr().cast::<__m128i>()) }
    }

    /// `bytes` (shorter than sixteen) as a block padded with spaces (which no scan stops at),
    /// from at most three loads of the bytes themselves, OR-ed together in little-endian lanes
    /// (where two loads overlap they hold the same bytes).
    #[inline(always)]
    pub(super) fn load_short(bytes: &[u8]) -> __m128i {
        let n = bytes.len();
        assert!(n < 16);
        let spaces = u64::from_le_bytes([b' '; 8]);
        let word = |at: usize| u64::from_le_bytes(*bytes[at..].first_chunk::<8>().expect("eight bytes"));
        let half = |at: usize| u64::from(u32::from_le_bytes(*bytes[at..].first_chunk::<4>().expect("four bytes")));
        let byte = |at: usize| u64::from(bytes[at]) << (8 * at);
        let (lo, hi) = if n >= 8 {
            // Bytes 8..n are the last n - 8 bytes of the word that ends at n.
            (word(0), word(n - 8).checked_shr(8 * (16 - n) as u32).unwrap_or(0) | spaces << (8 * (n - 8)))
        } else if n >= 4 {
            (half(0) | half(n - 4) << (8 * (n - 4)) | spaces << (8 * n), spaces)
        } else if n > 0 {
            (byte(0) | byte(n / 2) | byte(n - 1) | spaces << (8 * n), spaces)
        } else {
            (spaces, spaces)
        };
        // SAFETY: SSE2 is enabled (the module's cfg); the intrinsic only moves two integers
        // into a register.
        unsafe { _mm_set_epi64x(hi as i64, lo as i64) }
    }

    /// The bytes of block `x` that `stops` names, as the low sixteen bits.
    #[inline(always)]
    fn lane_mask(x: __m128i, stops: Stops) -> u32 {
        // SAFETY: SSE2 is enabled (the module's cfg); these intrinsics compute on registers only.
        let bits = unsafe {
            let is = |b: u8| _mm_cmpeq_epi8(x, _mm_set1_epi8(b as i8));
            match stops {
                Stops::JsonEscape => {
                    // x <= 0x1f (unsigned) exactly when min(x, 0x1f) == x.
                    let control = _mm_cmpeq_epi8(_mm_min_epu8(x, _mm_set1_epi8(0x1f)), x);
                    _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(is(b'"'), is(b'\\')), control))
                }
                Stops::FormEscape => _mm_movemask_epi8(_mm_or_si128(is(b'%'), is(b'+'))),
                Stops::QueryMark => _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(is(b'&'), is(b'=')), _mm_or_si128(is(b'%'), is(b'+')))),
            }
        };
        bits as u32 & 0xffff
    }

    /// See [`super::copy_until`]. The last partial block is never assembled in memory: a string
    /// of sixteen bytes or more ends with the overlapping block of its last sixteen bytes (only
    /// its new bits count), a shorter one is [`load_short`].
    #[inline(always)]
    pub(super) fn copy_until(dst: &mut [MaybeUninit<u8>], src: &[u8], stops: Stops) -> usize {
        assert!(dst.len() >= src.len() + 16);
        // Stores `x` at `dst[at..at + 16]`; its named bytes.
        let mut copy_block = |at: usize, x: __m128i| {
            let to = &mut dst[at..at + 16];
            // SAFETY: SSE2 is enabled (the module's cfg); the unaligned store writes the sixteen
            // bytes of `to`, a slice of exactly that length.
            unsafe { _mm_storeu_si128(to.as_mut_ptr().cast::<__m128i>(), x) };
            lane_mask(x, stops)
        };
        let n = src.len();
        let mut i = 0;
        while let Some(block) = src.get(i..).and_then(<[u8]>::first_chunk::<16>) {
            let mask = copy_block(i, load(block));
            if mask != 0 {
                return i + mask.trailing_zeros() as usize;
            }
            i += 16;
        }
        let left = n - i;
        if left == 0 {
            return n;
        }
        let mask = match src.last_chunk::<16>() {
            Some(last) => copy_block(n - 16, load(last)) >> (16 - left),
            None => copy_block(0, load_short(src)) & ((1 << n) - 1),
        };
        if mask != 0 { i + mask.trailing_zeros() as usize } else { n }
    }

    /// See [`super::mask64`]: a whole block as four loads; the last, partial one as whole lanes
    /// and then the input's last sixteen bytes (their new bits only) or, for input shorter than
    /// that, [`load_short`].
    #[inline(always)]
    pub(super) fn mask64(bytes: &[u8], start: usize, stops: Stops) -> u64 {
        if let Some(block) = bytes.get(start..).and_then(<[u8]>::first_chunk::<64>) {
            return block.as_chunks::<16>().0.iter().enumerate().fold(0, |mask, (k, lane)| mask | u64::from(lane_mask(load(lane), stops)) << (16 * k));
        }
        let mut mask = 0;
        let mut at = start;
        while let Some(lane) = bytes.get(at..).and_then(<[u8]>::first_chunk::<16>) {
            mask |= u64::from(lane_mask(load(lane), stops)) << (at - start);
            at += 16;
        }
        let left = bytes.len().saturating_sub(at);
        if left > 0 {
            let bits = match bytes.last_chunk::<16>() {
                Some(last) => lane_mask(load(last), stops) >> (16 - left),
                None => lane_mask(load_short(&bytes[at..]), stops),
            };
            mask |= u64::from(bits) << (at - start);
        }
        mask
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const ALL: [Stops; 3] = [Stops::JsonEscape, Stops::FormEscape, Stops::QueryMark];

    /// What `copy_until` returns and the bytes it reports as copied.
    fn copied(src: &[u8], stops: Stops, scan: fn(&mut [MaybeUninit<u8>], &[u8], Stops) -> usize) -> (usize, Vec<u8>) {
        let mut dst = vec![MaybeUninit::new(0u8); src.len() + 16];
        let n = scan(&mut dst, src, stops);
        // SAFETY: `copy_until` initialised `dst[..n]`, and every byte was initialised before.
        (n, dst[..n].iter().map(|b| unsafe { b.assume_init() }).collect())
    }

    /// Bytes each scan stops at, mixed with plain ones.
    fn interesting() -> impl Strategy<Value = u8> {
        prop_oneof![Just(b'&'), Just(b'='), Just(b'%'), Just(b'+'), Just(b'"'), Just(b'\\'), 0u8..0x20, Just(b' '), any::<u8>()]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]
        /// Whichever implementation is built, the scans agree with the byte-by-byte definition.
        #[test]
        fn the_scans_agree_with_the_byte_by_byte_definition(bytes in proptest::collection::vec(interesting(), 0..150), start in 0usize..160) {
            for stops in ALL {
                let first = bytes.iter().position(|&b| stops.matches(b)).unwrap_or(bytes.len());
                prop_assert_eq!(copied(&bytes, stops, copy_until), (first, bytes[..first].to_vec()));
                prop_assert_eq!(copied(&bytes, stops, portable::copy_until), (first, bytes[..first].to_vec()));
                prop_assert_eq!(mask64(&bytes, start, stops), portable::mask64(&bytes, start, stops));
            }
        }
    }

    #[test]
    fn every_length_and_position_of_a_stop_is_found() {
        for stops in ALL {
            let stop = [b'"', b'%', b'&'][ALL.iter().position(|s| *s == stops).unwrap_or(0)];
            for len in 0..=70 {
                for at in 0..=len {
                    let mut bytes = vec![b'a'; len];
                    if at < len {
                        bytes[at] = stop;
                    }
                    assert_eq!(copied(&bytes, stops, copy_until).0, at, "{stops:?}, {len} bytes, stop at {at}");
                    let want = if at < len.min(64) { 1u64 << at } else { 0 };
                    assert_eq!(mask64(&bytes, 0, stops), want, "{stops:?} mask, {len} bytes, stop at {at}");
                }
            }
        }
    }

    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    #[test]
    fn a_short_string_loads_as_itself_padded_with_spaces() {
        let source: Vec<u8> = (1..=15).collect();
        for n in 0..16 {
            let mut got = [0u8; 16];
            // SAFETY: SSE2 is enabled (the cfg above); the store writes the sixteen bytes of `got`.
            unsafe { std::arch::x86_64::_mm_storeu_si128(got.as_mut_ptr().cast(), sse2::load_short(&source[..n])) };
            let mut want = [b' '; 16];
            want[..n].copy_from_slice(&source[..n]);
            assert_eq!(got, want, "{n} bytes");
        }
    }
}
