//! The per-field normalisation rules: what each `user_data` field's value must look like before
//! it is hashed (`docs/parameters.md#personal-data`). Each takes the common form (trimmed,
//! lowercase, NFC) and gives the normalised value, or `None` for a value to drop.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use unicode_normalization::char::is_combining_mark;

/// Deliberately simple: exactly one '@', non-empty local part, a dotted domain with no empty
/// labels, no whitespace or control characters. Not RFC 5322 — Meta only needs a plausible address.
pub(super) fn valid_email(v: &str) -> bool {
    if v.is_ascii() {
        // The same rules in one pass over the bytes: the common case on the request path.
        let b = v.as_bytes();
        let mut at = None;
        for (i, &c) in b.iter().enumerate() {
            if c <= b' ' || c == 0x7f || (c == b'@' && at.is_some()) {
                return false;
            }
            if c == b'@' {
                at = Some(i);
            }
        }
        let Some(at) = at else { return false };
        let domain = &b[at + 1..];
        return at > 0 && domain.contains(&b'.') && domain.split(|&c| c == b'.').all(|label| !label.is_empty());
    }
    let Some((local, domain)) = v.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && domain.split('.').all(|label| !label.is_empty())
        && if v.is_ascii() {
            // ASCII whitespace and controls are all at or below the space, or DEL.
            !v.bytes().any(|b| b <= b' ' || b == 0x7f)
        } else {
            !v.chars().any(|c| c.is_whitespace() || c.is_control())
        }
}

/// Keeps Unicode letters and combining marks (marks matter for e.g. Devanagari virama), dropping
/// whitespace, punctuation, symbols and digits. None if no letter remains.
pub(super) fn letters(v: &str) -> Option<String> {
    let s: String = v.chars().filter(|&c| c.is_alphabetic() || is_combining_mark(c)).collect();
    s.chars().any(char::is_alphabetic).then_some(s)
}

/// Phone to E.164 digits without '+': 7..=15 digits that start with a country calling code.
pub(super) fn phone(v: &str, default_cc: Option<u16>) -> Option<String> {
    let mut plus = false;
    let mut leading_zeros = 0usize;
    let mut digits = String::with_capacity(16);
    let mut chars = v.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            // "+44 (0)20 …": the bracketed trunk zero is not dialled from abroad.
            '(' if (plus || leading_zeros >= 2) && !digits.is_empty() && v[i..].starts_with("(0)") => {
                chars.nth(1);
            }
            '0' if digits.is_empty() => leading_zeros += 1,
            '0'..='9' => {
                if digits.len() == 15 {
                    return None; // longer than E.164 allows
                }
                digits.push(c);
            }
            // '+' is only meaningful as the international prefix, before any digit.
            '+' if !plus && leading_zeros == 0 && digits.is_empty() => plus = true,
            '+' => return None,
            // Letters (vanity numbers, "ext") and non-ASCII digits: refuse rather than guess.
            c if c.is_alphabetic() || c.is_numeric() => return None,
            _ => {} // separators: spaces, dashes, dots, parentheses, slashes …
        }
    }
    let international = plus || leading_zeros >= 2;
    let out = if international {
        digits
    } else {
        match default_cc {
            Some(cc) => {
                let cc = cc.to_string();
                // Already carrying the default code ("1 650 555 1212" with CC 1): don't prepend twice.
                if leading_zeros == 0 && (11..=15).contains(&digits.len()) && digits.starts_with(&cc) { digits } else { cc + &digits }
            }
            // No default: only a prefix-less 11–15 digit number without trunk zero is trusted.
            None if leading_zeros == 0 && (11..=15).contains(&digits.len()) => digits,
            None => return None,
        }
    };
    (7..=15).contains(&out.len()).then_some(out)
}

/// US state / Canadian province names to their 2-letter code; 2-letter input stays; anything
/// else is returned letters-only (Meta: "elsewhere lowercase, no punctuation/spaces").
#[rustfmt::skip]
pub(super) fn state(l: String) -> String {
    if l.chars().count() == 2 {
        return l;
    }
    let code = match l.as_str() {
        "alabama" => "al", "alaska" => "ak", "arizona" => "az", "arkansas" => "ar",
        "california" => "ca", "colorado" => "co", "connecticut" => "ct", "delaware" => "de",
        "florida" => "fl", "georgia" => "ga", "hawaii" => "hi", "idaho" => "id",
        "illinois" => "il", "indiana" => "in", "iowa" => "ia", "kansas" => "ks",
        "kentucky" => "ky", "louisiana" => "la", "maine" => "me", "maryland" => "md",
        "massachusetts" => "ma", "michigan" => "mi", "minnesota" => "mn", "mississippi" => "ms",
        "missouri" => "mo", "montana" => "mt", "nebraska" => "ne", "nevada" => "nv",
        "newhampshire" => "nh", "newjersey" => "nj", "newmexico" => "nm", "newyork" => "ny",
        "northcarolina" => "nc", "northdakota" => "nd", "ohio" => "oh", "oklahoma" => "ok",
        "oregon" => "or", "pennsylvania" => "pa", "rhodeisland" => "ri", "southcarolina" => "sc",
        "southdakota" => "sd", "tennessee" => "tn", "texas" => "tx", "utah" => "ut",
        "vermont" => "vt", "virginia" => "va", "washington" => "wa", "westvirginia" => "wv",
        "wisconsin" => "wi", "wyoming" => "wy",
        "districtofcolumbia" | "washingtondc" => "dc", "puertorico" => "pr", "guam" => "gu",
        "americansamoa" => "as", "northernmarianaislands" => "mp",
        "usvirginislands" | "unitedstatesvirginislands" => "vi",
        "alberta" => "ab", "britishcolumbia" => "bc", "manitoba" => "mb", "newbrunswick" => "nb",
        "newfoundlandandlabrador" | "newfoundland" => "nl", "novascotia" => "ns",
        "ontario" => "on", "princeedwardisland" => "pe", "quebec" | "québec" => "qc",
        "saskatchewan" => "sk", "northwestterritories" => "nt", "nunavut" => "nu", "yukon" => "yt",
        _ => return l,
    };
    code.to_owned()
}

/// Cut at the first '-', drop whitespace, US ZIP+4 (9 digits) → first 5; at least 2 chars.
pub(super) fn zip(v: &str) -> Option<String> {
    let head = v.split('-').next().unwrap_or_default();
    let mut s: String = head.chars().filter(|c| !c.is_whitespace()).collect();
    if s.len() == 9 && s.bytes().all(|b| b.is_ascii_digit()) {
        s.truncate(5);
    }
    (s.chars().count() >= 2).then_some(s)
}

/// The 249 officially assigned ISO 3166-1 alpha-2 codes, lowercase, sorted (binary-searched).
pub(super) const ISO_ALPHA2: [&str; 249] = [
    "ad", "ae", "af", "ag", "ai", "al", "am", "ao", "aq", "ar", "as", "at", "au", "aw", "ax", "az", "ba", "bb", "bd", "be", "bf", "bg", "bh", "bi", "bj", "bl", "bm", "bn", "bo",
    "bq", "br", "bs", "bt", "bv", "bw", "by", "bz", "ca", "cc", "cd", "cf", "cg", "ch", "ci", "ck", "cl", "cm", "cn", "co", "cr", "cu", "cv", "cw", "cx", "cy", "cz", "de", "dj",
    "dk", "dm", "do", "dz", "ec", "ee", "eg", "eh", "er", "es", "et", "fi", "fj", "fk", "fm", "fo", "fr", "ga", "gb", "gd", "ge", "gf", "gg", "gh", "gi", "gl", "gm", "gn", "gp",
    "gq", "gr", "gs", "gt", "gu", "gw", "gy", "hk", "hm", "hn", "hr", "ht", "hu", "id", "ie", "il", "im", "in", "io", "iq", "ir", "is", "it", "je", "jm", "jo", "jp", "ke", "kg",
    "kh", "ki", "km", "kn", "kp", "kr", "kw", "ky", "kz", "la", "lb", "lc", "li", "lk", "lr", "ls", "lt", "lu", "lv", "ly", "ma", "mc", "md", "me", "mf", "mg", "mh", "mk", "ml",
    "mm", "mn", "mo", "mp", "mq", "mr", "ms", "mt", "mu", "mv", "mw", "mx", "my", "mz", "na", "nc", "ne", "nf", "ng", "ni", "nl", "no", "np", "nr", "nu", "nz", "om", "pa", "pe",
    "pf", "pg", "ph", "pk", "pl", "pm", "pn", "pr", "ps", "pt", "pw", "py", "qa", "re", "ro", "rs", "ru", "rw", "sa", "sb", "sc", "sd", "se", "sg", "sh", "si", "sj", "sk", "sl",
    "sm", "sn", "so", "sr", "ss", "st", "sv", "sx", "sy", "sz", "tc", "td", "tf", "tg", "th", "tj", "tk", "tl", "tm", "tn", "to", "tr", "tt", "tv", "tw", "tz", "ua", "ug", "um",
    "us", "uy", "uz", "va", "vc", "ve", "vg", "vi", "vn", "vu", "wf", "ws", "ye", "yt", "za", "zm", "zw",
];

/// Letters-only lowercase country → ISO alpha-2: common English names/aliases first (so the
/// non-ISO "uk" maps to "gb"), then a real assigned alpha-2 code; anything else is None.
#[rustfmt::skip]
pub(super) fn country(l: &str) -> Option<&'static str> {
    let code = match l {
        "unitedstates" | "unitedstatesofamerica" | "usa" | "america" => "us",
        "unitedkingdom" | "uk" | "greatbritain" | "britain" | "england" | "scotland" | "wales"
        | "northernireland" => "gb",
        "germany" => "de", "france" => "fr", "netherlands" | "thenetherlands" | "holland" => "nl",
        "brazil" | "brasil" => "br", "india" => "in", "japan" => "jp", "canada" => "ca",
        "australia" => "au", "mexico" | "méxico" => "mx", "spain" | "españa" => "es", "italy" => "it",
        "china" => "cn", "russia" | "russianfederation" => "ru",
        "southkorea" | "korea" | "republicofkorea" => "kr", "indonesia" => "id",
        "turkey" | "turkiye" | "türkiye" => "tr", "saudiarabia" => "sa", "argentina" => "ar",
        "southafrica" => "za", "nigeria" => "ng", "egypt" => "eg", "pakistan" => "pk",
        "bangladesh" => "bd", "philippines" => "ph", "vietnam" | "viet" => "vn",
        "thailand" => "th", "malaysia" => "my", "singapore" => "sg", "newzealand" => "nz",
        "ireland" => "ie", "belgium" => "be", "switzerland" => "ch", "austria" => "at",
        "sweden" => "se", "norway" => "no", "denmark" => "dk", "finland" => "fi", "poland" => "pl",
        "portugal" => "pt", "greece" => "gr", "czechia" | "czechrepublic" => "cz",
        "hungary" => "hu", "romania" => "ro", "ukraine" => "ua", "israel" => "il",
        "unitedarabemirates" | "uae" => "ae", "colombia" => "co", "chile" => "cl", "peru" => "pe",
        "venezuela" => "ve", "ecuador" => "ec", "morocco" => "ma", "kenya" => "ke",
        "ethiopia" => "et", "ghana" => "gh", "algeria" => "dz", "iran" => "ir", "iraq" => "iq",
        "taiwan" => "tw", "hongkong" => "hk", "qatar" => "qa", "kuwait" => "kw",
        "bulgaria" => "bg", "croatia" => "hr", "serbia" => "rs", "slovakia" => "sk",
        "slovenia" => "si", "luxembourg" => "lu", "iceland" => "is", "estonia" => "ee",
        "latvia" => "lv", "lithuania" => "lt", "puertorico" => "pr", "dominicanrepublic" => "do",
        "guatemala" => "gt", "costarica" => "cr", "panama" => "pa", "uruguay" => "uy",
        "srilanka" => "lk", "nepal" => "np", "myanmar" => "mm", "cambodia" => "kh",
        "tanzania" => "tz", "uganda" => "ug", "ivorycoast" | "cotedivoire" | "côtedivoire" => "ci",
        _ => return ISO_ALPHA2.binary_search(&l).ok().map(|i| ISO_ALPHA2[i]),
    };
    Some(code)
}

/// Date of birth → `YYYYMMDD`. Digit groups split by any non-digit run: `YYYYMMDD`;
/// `Y M D` (year first); `M D Y` (US, Meta's `2/16/1997`) or `D M Y` when the first number > 12.
/// The value must start and end with a digit, years have exactly 4 digits, days/months 1–2.
pub(super) fn dob(v: &str, max_year: u32) -> Option<String> {
    let b = v.as_bytes();
    if !b.first()?.is_ascii_digit() || !b.last()?.is_ascii_digit() {
        return None;
    }
    let mut g = [(0u32, 0usize); 3];
    let mut n = 0;
    for run in v.split(|c: char| !c.is_ascii_digit()).filter(|r| !r.is_empty()) {
        if n == 3 || run.len() > 8 {
            return None;
        }
        g[n] = (run.parse().ok()?, run.len());
        n += 1;
    }
    let (y, m, d) = match (n, g) {
        (1, [(x, 8), ..]) => (x / 10_000, x / 100 % 100, x % 100),
        (3, [(y, 4), (m, 1..=2), (d, 1..=2)]) => (y, m, d),
        (3, [(a, 1..=2), (b, 1..=2), (y, 4)]) => {
            if a > 12 {
                (y, b, a)
            } else {
                (y, a, b)
            }
        }
        _ => return None,
    };
    let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    ((1900..=max_year).contains(&y) && (1..=days).contains(&d)).then(|| format!("{y:04}{m:02}{d:02}"))
}

/// `dobd`/`dobm`: 1–2 ASCII digits in 1..=max, zero-padded to two digits.
pub(super) fn two_digits(v: &str, max: u32) -> Option<String> {
    if v.is_empty() || v.len() > 2 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u32 = v.parse().ok()?;
    (1..=max).contains(&n).then(|| format!("{n:02}"))
}

/// Current UTC year, read from the first four chars of humantime's RFC 3339 rendering of now.
/// Formats into a stack buffer (no allocation). A clock before 1970 is clamped to the epoch
/// instead of panicking inside humantime.
pub(super) fn current_year() -> u32 {
    struct First4([u8; 4], usize);
    impl fmt::Write for First4 {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            for b in s.bytes() {
                if self.1 < 4 {
                    self.0[self.1] = b;
                    self.1 += 1;
                }
            }
            Ok(())
        }
    }
    let mut w = First4([0; 4], 0);
    let now = SystemTime::now().max(UNIX_EPOCH);
    let _ = fmt::Write::write_fmt(&mut w, format_args!("{}", humantime::format_rfc3339(now)));
    std::str::from_utf8(&w.0[..w.1]).ok().and_then(|s| s.parse().ok()).unwrap_or(1970)
}
