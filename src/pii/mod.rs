//! Edge-side normalisation and SHA-256 hashing of Meta Conversions API `user_data` fields.
//!
//! Meta matches people on `sha256(normalised value)`, so a value only matches when every sender
//! (pixel, this edge, offline uploads) normalises it byte-identically. The official SDKs disagree
//! with each other, so this module implements Meta's documented rule set
//! (`docs/parameters.md#personal-data`) and reproduces Meta's worked examples byte for byte. Invalid values are reported
//! as [`Invalid`] so the caller can drop that one value instead of failing a whole CAPI batch
//! (Meta rejects a batch if any event in it is invalid).
//!
//! Written for the request path: no regexes, no global state, ASCII fast paths, and at most a
//! couple of small heap allocations per call. The per-field rules are in [`rules`]; Meta's
//! Python Business SDK holds them to its own normalisation in `tests/hashing_oracle.rs`.

mod rules;
#[cfg(test)]
#[rustfmt::skip] // dense case tables read better unwrapped
mod tests;

use std::borrow::Cow;
use std::fmt;

use sha2::{Digest, Sha256};

use self::rules::{country, current_year, dob, letters, phone, state, two_digits, valid_email, zip};
use unicode_normalization::{IsNormalized, UnicodeNormalization, is_nfc_quick};

/// A user-data key that Meta wants hashed (variants are the CAPI keys, e.g. `Em` = "em").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PiiField {
    Em,
    Ph,
    Fn,
    Ln,
    Ge,
    Db,
    Ct,
    St,
    Zp,
    Country,
    ExternalId,
    F5first,
    F5last,
    Fi,
    Dobd,
    Dobm,
    Doby,
}

impl PiiField {
    /// Every field, in CAPI documentation order (handy for iterating in tests and metrics).
    pub const ALL: [PiiField; 17] = {
        use PiiField as P;
        [P::Em, P::Ph, P::Fn, P::Ln, P::Ge, P::Db, P::Ct, P::St, P::Zp, P::Country, P::ExternalId, P::F5first, P::F5last, P::Fi, P::Dobd, P::Dobm, P::Doby]
    };

    /// Parse the CAPI key ("em", "ph", "fn", "ln", "ge", "db", "ct", "st", "zp", "country",
    /// "external_id", "f5first", "f5last", "fi", "dobd", "dobm", "doby"); None for any other key.
    /// Matching is exact (case-sensitive), as CAPI keys are.
    #[must_use]
    pub fn from_key(key: &str) -> Option<PiiField> {
        PiiField::ALL.into_iter().find(|f| f.key() == key)
    }

    /// The CAPI key, e.g. "em" — the name Meta expects inside `user_data`.
    #[must_use]
    pub const fn key(self) -> &'static str {
        self.names().0
    }

    /// The record flag set when a value of this field is dropped as invalid: "invalid_em",
    /// "invalid_ph", ... Static so that flagging never allocates and never echoes the value.
    #[must_use]
    pub fn invalid_flag(self) -> &'static str {
        self.names().1
    }

    const fn names(self) -> (&'static str, &'static str) {
        match self {
            PiiField::Em => ("em", "invalid_em"),
            PiiField::Ph => ("ph", "invalid_ph"),
            PiiField::Fn => ("fn", "invalid_fn"),
            PiiField::Ln => ("ln", "invalid_ln"),
            PiiField::Ge => ("ge", "invalid_ge"),
            PiiField::Db => ("db", "invalid_db"),
            PiiField::Ct => ("ct", "invalid_ct"),
            PiiField::St => ("st", "invalid_st"),
            PiiField::Zp => ("zp", "invalid_zp"),
            PiiField::Country => ("country", "invalid_country"),
            PiiField::ExternalId => ("external_id", "invalid_external_id"),
            PiiField::F5first => ("f5first", "invalid_f5first"),
            PiiField::F5last => ("f5last", "invalid_f5last"),
            PiiField::Fi => ("fi", "invalid_fi"),
            PiiField::Dobd => ("dobd", "invalid_dobd"),
            PiiField::Dobm => ("dobm", "invalid_dobm"),
            PiiField::Doby => ("doby", "invalid_doby"),
        }
    }
}

/// Settings that change normalisation.
#[derive(Clone, Debug, Default)]
pub struct PiiRules {
    /// Country calling code prepended to phone numbers written without an international prefix
    /// ("+" or "00"), e.g. Some(1) for the US. None: such numbers are dropped as invalid unless
    /// they are clearly already international (11–15 digits, no trunk zero). Values outside
    /// 1..=999 (no such calling code exists) are treated as None.
    pub default_phone_country: Option<u16>,
}

/// Why a value was dropped (never contains the value itself, so it is safe to log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Invalid(pub PiiField);

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.invalid_flag())
    }
}

impl std::error::Error for Invalid {}

/// The normalised plaintext that Meta's hash is computed over (used by tests and by
/// [`hash_field`]). A value that is already a SHA-256 hex digest comes back lowercased, unchanged.
///
/// # Errors
/// [`Invalid`] naming `field` when the value is empty or fails that field's rules; drop the value.
pub fn normalize(field: PiiField, raw: &str, rules: &PiiRules) -> Result<String, Invalid> {
    normalize_inner(field, raw, rules).map(|(s, _)| s.into_owned())
}

/// Normalise then SHA-256: 64 lowercase hex chars. A value that is already 64 hex digits (after
/// trim, any case) passes through lowercased, never double-hashed — the Meta pixel sends
/// `ud[...]` values pre-hashed, and hashing them again would make them unmatchable.
///
/// # Errors
/// Same as [`normalize`].
pub fn hash_field(field: PiiField, raw: &str, rules: &PiiRules) -> Result<String, Invalid> {
    hash_field_hex(field, raw, rules).map(|hex| hex.as_str().to_owned())
}

/// A SHA-256 digest as 64 lowercase hex characters, on the stack.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct HexDigest([u8; 64]);

impl HexDigest {
    /// The digest's text.
    pub fn as_str(&self) -> &str {
        debug_assert!(self.0.is_ascii());
        // SAFETY: a `HexDigest` holds hex digits only: written from the digit table, or copied
        // from a value `is_sha256_hex` accepted. Checking 64 bytes per digest again is waste.
        unsafe { std::str::from_utf8_unchecked(&self.0) }
    }
}

impl fmt::Debug for HexDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// [`hash_field`] without the allocation: the digest comes back on the stack, for a caller that
/// copies it into a buffer of its own.
///
/// # Errors
/// Same as [`normalize`].
pub fn hash_field_hex(field: PiiField, raw: &str, rules: &PiiRules) -> Result<HexDigest, Invalid> {
    let (norm, already_hashed) = normalize_inner(field, raw, rules)?;
    Ok(if already_hashed { HexDigest(norm.as_bytes().try_into().expect("a passed-through digest is 64 hex digits")) } else { sha256_digest_hex(&norm) })
}

/// Returns the normalised value and whether it was an already-hashed passthrough. The flag
/// matters: a name like "Abc-Def…" can normalise to 64 a–f letters and must still be hashed.
/// The value is borrowed from `raw` when normalising changed nothing (a lowercase e-mail address,
/// a digest), so hashing it needs no copy.
fn normalize_inner<'a>(field: PiiField, raw: &'a str, rules: &PiiRules) -> Result<(Cow<'a, str>, bool), Invalid> {
    let v = common(raw);
    if v.is_empty() {
        return Err(Invalid(field));
    }
    if is_sha256_hex(&v) {
        return Ok((v, true));
    }
    let out = match field {
        PiiField::Em => {
            return if valid_email(&v) { Ok((v, false)) } else { Err(Invalid(field)) };
        }
        PiiField::Ph => phone(&v, rules.default_phone_country.filter(|cc| (1..=999).contains(cc))),
        PiiField::Fn | PiiField::Ln | PiiField::Ct => letters(&v),
        PiiField::F5first | PiiField::F5last => letters(&v).map(|s| s.chars().take(5).collect()),
        PiiField::Fi => letters(&v).map(|s| s.chars().take(1).collect()),
        PiiField::St => letters(&v).map(state),
        PiiField::Zp => zip(&v),
        PiiField::Country => letters(&v).and_then(|s| country(&s)).map(str::to_owned),
        PiiField::Db => dob(&v, current_year()),
        PiiField::Ge => match &*v {
            "f" | "female" => Some("f".to_owned()),
            "m" | "male" => Some("m".to_owned()),
            _ => None,
        },
        PiiField::Dobd => two_digits(&v, 31),
        PiiField::Dobm => two_digits(&v, 12),
        PiiField::Doby => {
            let ok = v.len() == 4 && v.bytes().all(|b| b.is_ascii_digit());
            ok.then(|| v.parse::<u32>().ok()).flatten().filter(|y| (1900..=current_year()).contains(y)).map(|_| v.into_owned())
        }
        PiiField::ExternalId => Some(v.into_owned()),
    };
    match out {
        Some(s) if !s.is_empty() => Ok((Cow::Owned(s), false)),
        _ => Err(Invalid(field)),
    }
}

/// Common prefix for every field: trim, Unicode lowercase, NFC (so decomposed and precomposed
/// accents hash the same). ASCII input — the common case — borrows or does one ASCII lowercase.
fn common(raw: &str) -> Cow<'_, str> {
    let t = raw.trim();
    if t.is_ascii() {
        if t.bytes().any(|b| b.is_ascii_uppercase()) { Cow::Owned(t.to_ascii_lowercase()) } else { Cow::Borrowed(t) }
    } else {
        let lower = t.to_lowercase();
        match is_nfc_quick(lower.chars()) {
            IsNormalized::Yes => Cow::Owned(lower),
            _ => Cow::Owned(lower.nfc().collect()),
        }
    }
}

/// `^[0-9a-f]{64}$` — a SHA-256 digest. 32-hex (MD5) deliberately does not pass through.
fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
fn sha256_hex(s: &str) -> String {
    sha256_digest_hex(s).as_str().to_owned()
}

/// SHA-256 of the UTF-8 bytes as 64 lowercase hex chars. (sha2 0.11 returns a
/// `hybrid_array::Array`, which does not implement `LowerHex` in hybrid-array 0.4, hence the loop;
/// it fills a byte array, since pushing 64 `char`s one by one costs more than the hash itself.)
fn sha256_digest_hex(s: &str) -> HexDigest {
    /// Each byte's two hex digits: one load and store per byte.
    static HEX_PAIRS: [[u8; 2]; 256] = {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut pairs = [[0; 2]; 256];
        let mut b = 0;
        while b < 256 {
            pairs[b] = [HEX[b >> 4], HEX[b & 0x0f]];
            b += 1;
        }
        pairs
    };
    let digest = Sha256::digest(s.as_bytes());
    let mut out = [0u8; 64];
    for (pair, &b) in out.as_chunks_mut::<2>().0.iter_mut().zip(digest.iter()) {
        *pair = HEX_PAIRS[usize::from(b)];
    }
    HexDigest(out)
}
