//! A pixel id that is one: 1 to 32 ASCII digits (Meta's pixel and dataset ids are digits).
//!
//! Parsed once, where a hit is shaped or a path or command names a pixel; everything that routes
//! by pixel (the forwarder's gate and batches, the token store) takes a [`PixelId`] and never
//! checks a string again. The digits live inline, so a copy costs no allocation: the hot path
//! hands one to every hit outlet's gate.

use std::fmt;

/// Most digits in a pixel id.
pub const MAX_DIGITS: usize = 32;

/// A valid pixel id. `Copy`, hashed and compared by its digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PixelId {
    len: u8,
    digits: [u8; MAX_DIGITS],
}

/// Why a hit has no [`PixelId`]; the record's flags say the same (`missing_pixel_id`,
/// `bad_pixel_id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelIdError {
    /// No pixel id in any convention (or an empty one).
    Missing,
    /// Something that is not 1-32 digits.
    Invalid,
}

impl PixelIdError {
    /// A closed label, as the flags and metrics spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            PixelIdError::Missing => "missing_pixel_id",
            PixelIdError::Invalid => "bad_pixel_id",
        }
    }
}

impl fmt::Display for PixelIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PixelIdError::Missing => "no pixel id; a pixel id is 1-32 digits",
            PixelIdError::Invalid => "a pixel id is 1-32 digits",
        })
    }
}

impl std::error::Error for PixelIdError {}

impl PixelId {
    /// `s` as a pixel id, if it is 1 to 32 ASCII digits.
    pub fn parse(s: &str) -> Result<PixelId, PixelIdError> {
        let bytes = s.as_bytes();
        if bytes.is_empty() {
            return Err(PixelIdError::Missing);
        }
        if bytes.len() > MAX_DIGITS || !bytes.iter().all(u8::is_ascii_digit) {
            return Err(PixelIdError::Invalid);
        }
        let mut digits = [0; MAX_DIGITS];
        digits[..bytes.len()].copy_from_slice(bytes);
        Ok(PixelId { len: bytes.len() as u8, digits })
    }

    /// The pixel id of a hit's `pixel_id` field as sent (`None` when it sent none).
    pub fn of_field(sent: Option<&str>) -> Result<PixelId, PixelIdError> {
        PixelId::parse(sent.unwrap_or(""))
    }

    /// The digits.
    pub fn as_str(&self) -> &str {
        let digits = &self.digits[..self.len as usize];
        debug_assert!(digits.is_ascii());
        std::str::from_utf8(digits).unwrap_or_default()
    }
}

impl fmt::Debug for PixelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PixelId({})", self.as_str())
    }
}

impl fmt::Display for PixelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for PixelId {
    type Err = PixelIdError;
    fn from_str(s: &str) -> Result<PixelId, PixelIdError> {
        PixelId::parse(s)
    }
}

impl AsRef<str> for PixelId {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl serde::Serialize for PixelId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_to_thirty_two_digits_and_nothing_else() {
        assert_eq!(PixelId::parse("1234567890").unwrap().as_str(), "1234567890");
        assert_eq!(PixelId::parse(&"9".repeat(32)).unwrap().as_str().len(), 32);
        assert_eq!(PixelId::parse(""), Err(PixelIdError::Missing));
        assert_eq!(PixelId::of_field(None), Err(PixelIdError::Missing));
        for bad in ["12ab", " 12", "1.5", "-1", "١٢", &"9".repeat(33)] {
            assert_eq!(PixelId::parse(bad), Err(PixelIdError::Invalid), "{bad:?}");
        }
        let a = PixelId::parse("42").unwrap();
        assert_eq!((a, a.to_string(), format!("{a:?}")), (PixelId::parse("42").unwrap(), "42".to_owned(), "PixelId(42)".to_owned()));
        assert_ne!(a, PixelId::parse("420").unwrap(), "the unused digits never compare");
    }
}
