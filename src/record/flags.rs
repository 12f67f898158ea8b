//! What was wrong or notable about a hit, as a closed set of labels (`docs/records.md#flags`).

use serde::{Serialize, Serializer};

/// Something wrong or notable about a hit. The label set is closed so that flags can be metric
/// labels without ever carrying request data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Flag {
    /// A value, the parameter list or the body was over its limit and was cut or ignored.
    Oversize,
    /// Invalid percent-encoding or UTF-8, decoded lossily.
    BadEncoding,
    /// More parameters than the limit; the rest were ignored.
    TooManyParams,
    /// The same concept was given twice with different values; the first canonical one won.
    DuplicateParam,
    /// The user agent looks like a crawler or a script.
    Bot,
    /// No pixel id in any convention.
    MissingPixelId,
    /// The pixel id is not 1–32 digits.
    BadPixelId,
    /// No event name.
    MissingEvent,
    /// `ts` is not an integer; kept under `extra`.
    BadTs,
    /// A trusted `X-Forwarded-For` hop was missing or not an IP address.
    BadForwardedFor,
    /// The POST body could not be read or parsed (timeout, malformed multipart, …).
    BadBody,
    /// The POST body has a content type the pixel does not read.
    UnsupportedBody,
    /// A personal-data value failed validation and was dropped; the field is in the label.
    InvalidPii(crate::pii::PiiField),
    /// The pixel has allowed domains and the hit's page (`url`, else the `Origin` header) is not
    /// on one of them: the hit is recorded and forwarded nowhere.
    DomainNotAllowed,
    /// The pixel's settings could not be read from the registry: the hit is recorded without its
    /// account and forwarded nowhere.
    SettingsUnavailable,
}

impl Flag {
    /// The flag as written in records and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Flag::Oversize => "oversize",
            Flag::BadEncoding => "bad_encoding",
            Flag::TooManyParams => "too_many_params",
            Flag::DuplicateParam => "duplicate_param",
            Flag::Bot => "bot",
            Flag::MissingPixelId => "missing_pixel_id",
            Flag::BadPixelId => "bad_pixel_id",
            Flag::MissingEvent => "missing_event",
            Flag::BadTs => "bad_ts",
            Flag::BadForwardedFor => "bad_forwarded_for",
            Flag::BadBody => "bad_body",
            Flag::UnsupportedBody => "unsupported_body",
            Flag::InvalidPii(field) => field.invalid_flag(),
            Flag::DomainNotAllowed => "domain_not_allowed",
            Flag::SettingsUnavailable => "settings_unavailable",
        }
    }
}

/// An ordered set of flags (a hit rarely has more than two, so a `Vec` beats a hash set).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flags(Vec<Flag>);

impl Flags {
    /// Adds `flag` unless it is already set.
    pub fn set(&mut self, flag: Flag) {
        if !self.0.contains(&flag) {
            self.0.push(flag);
        }
    }

    /// Whether `flag` is set.
    pub fn contains(&self, flag: Flag) -> bool {
        self.0.contains(&flag)
    }

    /// The flags in the order they were first set.
    pub fn iter(&self) -> impl Iterator<Item = Flag> + '_ {
        self.0.iter().copied()
    }
}

impl Serialize for Flags {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|f| f.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_are_a_set_in_first_seen_order() {
        let mut f = Flags::default();
        f.set(Flag::Bot);
        f.set(Flag::Oversize);
        f.set(Flag::Bot);
        assert_eq!(serde_json::to_string(&f).unwrap(), r#"["bot","oversize"]"#);
    }
}
