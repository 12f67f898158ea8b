//! Sixteen-byte blocks for the SSE2 scans of the hot path (the record encoder's escape scan, the
//! query splitter's mark scan, the query decoder's copy of plain runs).
//!
//! A scan's last, partial block is assembled in registers, never in a stack buffer: a block
//! written byte-wise (or by `memcpy`) and then read back whole cannot be forwarded from the
//! store buffer, so the read waits for the stores to retire — in the profile that one load was
//! the hottest instruction of both scans.

#![cfg(all(target_arch = "x86_64", target_feature = "sse2"))]

use std::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_set_epi64x, _mm_storeu_si128};
use std::mem::MaybeUninit;

/// The block of `bytes[..16]`.
#[inline(always)]
pub(crate) fn load(block: &[u8; 16]) -> __m128i {
    // SAFETY: compiled only where SSE2 is enabled (the module's cfg); the unaligned load reads
    // the sixteen bytes of `block`.
    unsafe { _mm_loadu_si128(block.as_ptr().cast::<__m128i>()) }
}

/// `bytes` (shorter than sixteen) as a block padded with spaces, from at most three loads of
/// the string itself, OR-ed together in little-endian lanes (where two loads overlap they hold
/// the same bytes).
#[inline(always)]
pub(crate) fn load_short(bytes: &[u8]) -> __m128i {
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
    // SAFETY: SSE2 is enabled (the module's cfg).
    unsafe { _mm_set_epi64x(hi as i64, lo as i64) }
}

/// Copies `src` into `dst` (at least sixteen bytes longer) up to the first byte `marks` flags
/// and returns how many bytes that is (`src.len()` if none). `marks` gives a block's flagged
/// bytes as bits, lowest first.
///
/// Whole blocks are stored as they are scanned, so a run costs no `memcpy` call. The last
/// partial block is never assembled in memory: a string of sixteen bytes or more ends with the
/// overlapping block of its last sixteen bytes (only its new bits count), a shorter one is
/// [`load_short`]; `marks` must not flag the space that pads it.
#[inline(always)]
pub(crate) fn copy_until(dst: &mut [MaybeUninit<u8>], src: &[u8], marks: impl Fn(__m128i) -> u32) -> usize {
    assert!(dst.len() >= src.len() + 16);
    // Stores `x` at `dst[at..at + 16]`; its flagged bytes.
    let mut copy_block = |at: usize, x: __m128i| {
        assert!(at + 16 <= dst.len());
        // SAFETY: SSE2 is enabled (the module's cfg); the unaligned store writes
        // `dst[at..at + 16]`, in bounds (asserted).
        unsafe { _mm_storeu_si128(dst.as_mut_ptr().add(at).cast::<__m128i>(), x) };
        marks(x)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_string_loads_as_itself_padded_with_spaces() {
        let source: Vec<u8> = (1..=15).collect();
        for n in 0..16 {
            let mut got = [0u8; 16];
            // SAFETY: SSE2 is enabled (the module's cfg); the store writes the sixteen bytes of `got`.
            unsafe { std::arch::x86_64::_mm_storeu_si128(got.as_mut_ptr().cast(), load_short(&source[..n])) };
            let mut want = [b' '; 16];
            want[..n].copy_from_slice(&source[..n]);
            assert_eq!(got, want, "{n} bytes");
        }
    }
}
