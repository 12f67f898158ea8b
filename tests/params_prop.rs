//! Property test of the parameter parser: whatever the query string, building the hit never
//! panics, the record is exactly one valid JSON line, personal data is hashed, and limits hold;
//! and the line written straight from the builder's buffer is the line of the built `Hit`.

use pixelgate::params::{HitBuilder, Limits, ParseSettings, RequestMeta};
use pixelgate::record::Timestamp;
use proptest::prelude::*;

/// Cases per property; the closing note quotes this number.
const CASES: u32 = 20_000;

const KEYS: &[&str] = &[
    "pixel_id",
    "id",
    "pid",
    "event",
    "ev",
    "event_id",
    "eid",
    "url",
    "dl",
    "ref",
    "rl",
    "ts",
    "test_event_code",
    "fbp",
    "fbc",
    "gtmcb",
    "_",
    "evat_value",
    "cd[currency]",
    "x-fb-cd-content_ids",
    "usat_em",
    "ud[ph]",
    "x-fb-ud-fn",
    "usat_ln",
    "ud[ge]",
    "usat_db",
    "usat_ct",
    "usat_st",
    "usat_zp",
    "usat_country",
    "usat_external_id",
    "ud[",
    "cd[]",
    "evat_",
    "usat_",
    "",
];
const PII: &[&str] = &["em", "ph", "fn", "ln", "ge", "db", "ct", "st", "zp", "country", "external_id"];

/// A percent-encoded fragment, a raw fragment (possibly with broken escapes), or a known key.
fn piece() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>().prop_map(|s| form_urlencoded::byte_serialize(s.as_bytes()).collect()),
        proptest::collection::vec(any::<u8>(), 0..12).prop_map(|b| b.iter().map(|x| format!("%{x:02X}")).collect()),
        "[a-zA-Z0-9%&=+._\\-\\[\\]]{0,24}",
        proptest::sample::select(KEYS).prop_map(str::to_owned),
    ]
}

fn query() -> impl Strategy<Value = String> {
    proptest::collection::vec((piece(), piece()), 0..40).prop_map(|pairs| pairs.into_iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&"))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, ..ProptestConfig::default() })]

    #[test]
    fn any_query_yields_one_valid_record_line(q in query(), ua in any::<Option<String>>(), max_params in 1usize..64) {
        let settings = ParseSettings { limits: Limits { max_params, max_value_bytes: 512, ..Limits::default() }, ..Default::default() };
        let mut b = HitBuilder::new(&settings, Timestamp::now());
        b.add_encoded(&q);
        let hit = b.finish(RequestMeta { user_agent: ua.as_deref(), ..Default::default() });
        let mut line = Vec::new();
        hit.write_line(&mut line);
        prop_assert_eq!(line.iter().filter(|&&c| c == b'\n').count(), 1);
        prop_assert_eq!(line.last(), Some(&b'\n'));
        let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
        prop_assert_eq!(&v["schema"], "pixelgate.hit/1");
        prop_assert!(!hit.event_id.is_empty());
        let kept = hit.attrs.len() + hit.user.len() + hit.extra.len();
        prop_assert!(kept <= max_params + 2, "{} kept with max {}", kept, max_params);
        for (k, val) in &hit.attrs {
            prop_assert!(val.len() <= 512, "{} is {} bytes", k, val.len());
        }
        for field in PII {
            if let Some(h) = hit.user.get(*field) {
                prop_assert!(h.len() == 64 && h.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')), "{}={}", field, h);
            }
        }
    }

    #[test]
    fn the_line_from_the_buffer_is_the_line_of_the_hit(
        q in query(),
        ua in any::<Option<String>>(),
        referer in proptest::option::of(prop_oneof![Just("https://a.example/p?fbclid=Zz9".to_owned()), any::<String>()]),
        cookie in proptest::option::of(prop_oneof![Just("_fbp=fb.1.2.3; _fbc=fb.1.2.Zz9".to_owned()), any::<String>()]),
        extra in proptest::collection::vec((piece(), piece()), 0..4),
        max_params in 1usize..64,
        max_value_bytes in 1usize..600,
    ) {
        let settings = ParseSettings { limits: Limits { max_params, max_value_bytes, max_key_bytes: 24 }, ..Default::default() };
        let mut b = HitBuilder::new(&settings, Timestamp::now());
        b.add_encoded(&q);
        for (k, v) in &extra {
            b.add(k, v);
        }
        let draft = b.finish_draft(RequestMeta { user_agent: ua.as_deref(), referer: referer.as_deref(), cookies: cookie.as_deref(), ..Default::default() });
        let (mut direct, mut built) = (Vec::new(), Vec::new());
        draft.write_line(&mut direct);
        draft.to_hit().write_line(&mut built);
        prop_assert_eq!(String::from_utf8(direct).unwrap(), String::from_utf8(built).unwrap());
    }

    #[test]
    fn an_email_never_survives_in_plaintext(local in "[a-z][a-z0-9._]{2,12}", domain in "[a-z]{3,10}\\.(com|org|co\\.uk)", key in proptest::sample::select(vec!["usat_em", "ud[em]", "x-fb-ud-em"])) {
        let email = format!("{local}@{domain}");
        let settings = ParseSettings::default();
        let mut b = HitBuilder::new(&settings, Timestamp::now());
        b.add(key, &email.to_uppercase());
        let hit = b.finish(RequestMeta::default());
        let mut line = Vec::new();
        hit.write_line(&mut line);
        let text = String::from_utf8(line).unwrap();
        prop_assert!(!text.to_lowercase().contains(&email), "{}", text);
        prop_assert_eq!(hit.user["em"].len(), 64);
    }
}
