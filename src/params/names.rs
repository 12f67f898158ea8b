//! What a parameter name stands for, under every convention (`docs/parameters.md#parameters`).

/// Parameters that are only there to defeat caches.
const CACHE_BUSTERS: [&str; 4] = ["gtmcb", "cb", "rand", "_"];

/// The concept a parameter name stands for. `rank` 0 is the canonical name, 1 an alias.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Concept<'a> {
    PixelId(u8),
    Event(u8),
    EventId(u8),
    Url(u8),
    Referrer(u8),
    Ts,
    TestEventCode,
    Fbp,
    Fbc,
    /// An event attribute named `k`.
    Attr(&'a str),
    /// A user attribute named `k`.
    User(&'a str),
    CacheBuster,
    Extra,
}

/// Maps a parameter name to its concept. Names and prefixes match in any ASCII case; what
/// follows a prefix keeps its case.
pub fn classify(key: &str) -> Concept<'_> {
    if let Some(c) = fixed(key) {
        return c;
    }
    // No fixed name starts with a convention's prefix, so the order of these two is free.
    if let Some(c) = convention(key) {
        return c;
    }
    if key.bytes().any(|b| b.is_ascii_uppercase())
        && let Some(c) = fixed(&key.to_ascii_lowercase())
    {
        return c;
    }
    bare_contact(key).map_or(Concept::Extra, Concept::User)
}

/// An event or user attribute by one of the conventions (`evat_k`, `cd[k]`, `x-fb-cd-k`;
/// `usat_k`, `ud[k]`, `x-fb-ud-k`), prefixes in any ASCII case, the name not empty.
fn convention(key: &str) -> Option<Concept<'_>> {
    fn prefixed<'k>(key: &'k str, prefix: &str) -> Option<&'k str> {
        key.get(..prefix.len()).filter(|p| p.eq_ignore_ascii_case(prefix)).map(|_| &key[prefix.len()..])
    }
    fn bracketed<'k>(key: &'k str, prefix: &str) -> Option<&'k str> {
        prefixed(key, prefix)?.strip_suffix(']')
    }
    // The first bytes tell the prefixes apart (`| 0x20` lowercases an ASCII letter and maps no
    // other byte onto one): one test per key instead of one per prefix.
    let lower = |at: usize| key.as_bytes().get(at).map(|b| b | 0x20);
    let (user, name) = match lower(0)? {
        b'e' => (false, prefixed(key, "evat_")?),
        b'c' => (false, bracketed(key, "cd[")?),
        b'u' if lower(1)? == b's' => (true, prefixed(key, "usat_")?),
        b'u' => (true, bracketed(key, "ud[")?),
        b'x' => match prefixed(key, "x-fb-cd-") {
            Some(name) => (false, name),
            None => (true, prefixed(key, "x-fb-ud-")?),
        },
        _ => return None,
    };
    if name.is_empty() {
        return None;
    }
    Some(if !user {
        Concept::Attr(name)
    } else if name.eq_ignore_ascii_case("fbp") {
        Concept::Fbp
    } else if name.eq_ignore_ascii_case("fbc") {
        Concept::Fbc
    } else {
        Concept::User(name)
    })
}

/// The fixed names, lowercase.
fn fixed(key: &str) -> Option<Concept<'static>> {
    Some(match key {
        "pixel_id" => Concept::PixelId(0),
        "id" | "pid" => Concept::PixelId(1),
        "event" => Concept::Event(0),
        "ev" => Concept::Event(1),
        "event_id" => Concept::EventId(0),
        "eid" => Concept::EventId(1),
        "url" => Concept::Url(0),
        "dl" => Concept::Url(1),
        "ref" => Concept::Referrer(0),
        "rl" => Concept::Referrer(1),
        "ts" => Concept::Ts,
        "test_event_code" => Concept::TestEventCode,
        "fbp" => Concept::Fbp,
        "fbc" => Concept::Fbc,
        k if CACHE_BUSTERS.contains(&k) => Concept::CacheBuster,
        _ => return None,
    })
}

/// A parameter outside every convention whose name says it carries an e-mail address or a phone
/// number (`email=`, `customer_phone=`, …): treated as that user attribute, so it is hashed rather
/// than kept in plaintext under `extra`.
pub(super) fn bare_contact(key: &str) -> Option<&'static str> {
    let is = |names: &[&str]| names.iter().any(|n| key.eq_ignore_ascii_case(n));
    let ends = |suffix: &str| key.len() > suffix.len() && key.get(key.len() - suffix.len()..).is_some_and(|t| t.eq_ignore_ascii_case(suffix));
    if is(&["em", "email", "e-mail", "mail"]) || ends("_email") || ends("-email") {
        Some("em")
    } else if is(&["ph", "phone", "tel", "telephone", "mobile"]) || ends("_phone") || ends("-phone") {
        Some("ph")
    } else {
        None
    }
}

/// Meta's user-data key for a common name of it (`email` → `em`, `zip` → `zp`, …); `key` is
/// lowercase.
pub(super) fn user_alias(key: &str) -> Option<&'static str> {
    Some(match key {
        "email" | "e-mail" => "em",
        "phone" | "tel" | "telephone" | "mobile" => "ph",
        "first_name" | "firstname" | "given_name" => "fn",
        "last_name" | "lastname" | "surname" | "family_name" => "ln",
        "city" => "ct",
        "state" | "region" | "province" => "st",
        "zip" | "zipcode" | "zip_code" | "postal_code" | "postcode" => "zp",
        "gender" | "sex" => "ge",
        "dob" | "birthday" | "birthdate" | "date_of_birth" => "db",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The straightforward reading of the conventions: every prefix tried in turn.
    fn classify_reference(key: &str) -> Concept<'_> {
        if let Some(c) = fixed(key).or_else(|| fixed(&key.to_ascii_lowercase())) {
            return c;
        }
        let prefixed = |prefix: &str| key.get(..prefix.len()).filter(|p| p.eq_ignore_ascii_case(prefix)).map(|_| &key[prefix.len()..]);
        let bracketed = |prefix: &str| prefixed(prefix)?.strip_suffix(']');
        fn named(k: &str) -> Option<&str> {
            (!k.is_empty()).then_some(k)
        }
        if let Some(k) = prefixed("evat_").or_else(|| bracketed("cd[")).or_else(|| prefixed("x-fb-cd-")).and_then(named) {
            return Concept::Attr(k);
        }
        if let Some(k) = prefixed("usat_").or_else(|| bracketed("ud[")).or_else(|| prefixed("x-fb-ud-")).and_then(named) {
            return match k.to_ascii_lowercase().as_str() {
                "fbp" => Concept::Fbp,
                "fbc" => Concept::Fbc,
                _ => Concept::User(k),
            };
        }
        bare_contact(key).map_or(Concept::Extra, Concept::User)
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(5_000))]
        /// The first-byte dispatch classifies every key as trying each prefix in turn does.
        #[test]
        fn classify_agrees_with_trying_every_prefix(
            prefix in "(?i)(evat_|usat_|cd\\[|ud\\[|x-fb-cd-|x-fb-ud-|e|u|c|x|x-fb-|us|ud|pixel_id|event|id|_|)",
            name in "(?i)(fbp|fbc|em|email|value|phone|[a-z\\[\\]_-]{0,6}|é)",
            close in proptest::bool::ANY,
        ) {
            let key = format!("{prefix}{name}{}", if close { "]" } else { "" });
            proptest::prop_assert_eq!(classify(&key), classify_reference(&key), "{}", key);
        }
    }

    #[test]
    fn classify_maps_every_convention() {
        assert_eq!(classify("cd[value]"), Concept::Attr("value"));
        assert_eq!(classify("x-fb-cd-currency"), Concept::Attr("currency"));
        assert_eq!(classify("ud[em]"), Concept::User("em"));
        assert_eq!(classify("x-fb-ud-fbp"), Concept::Fbp);
        assert_eq!(classify("cd[]"), Concept::Extra);
        assert_eq!(classify("cd[x"), Concept::Extra);
        assert_eq!(classify("gtmcb"), Concept::CacheBuster);
    }

    #[test]
    fn names_and_prefixes_match_in_any_case() {
        assert_eq!(classify("PIXEL_ID"), Concept::PixelId(0));
        assert_eq!(classify("USAT_em"), Concept::User("em"));
        assert_eq!(classify("X-FB-UD-EM"), Concept::User("EM"));
        assert_eq!(classify("Cd[Value]"), Concept::Attr("Value"));
        assert_eq!(classify("UD[FBP]"), Concept::Fbp);
    }
}
