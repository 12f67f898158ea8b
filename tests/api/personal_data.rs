//! Personal data (`docs/parameters.md#personal-data`) is normalised and SHA-256 hashed at the
//! edge; no plaintext reaches a record, a log line or a metric.

use crate::common::metrics::metric;
use crate::common::process::Launch;
use crate::common::records::{files_below, read_records};
use crate::helpers::spawn_app;
use serde_json::Value;

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn hashing_vectors_from_meta_docs_and_tricky_inputs() {
    let vectors: Vec<Value> = serde_json::from_str(include_str!("../fixtures/pii_vectors.json")).unwrap();
    assert!(vectors.len() >= 30, "fixture too small");
    let app = spawn_app(&[]).await;
    for (i, v) in vectors.iter().enumerate() {
        let field = v["field"].as_str().unwrap();
        app.hit(&format!("/p.gif?pixel_id=1&event=Lead&event_id=v{i}&usat_{field}={}", enc(v["input"].as_str().unwrap()))).await;
    }
    let recs = app.records().await;
    assert_eq!(recs.len(), vectors.len());
    for (i, v) in vectors.iter().enumerate() {
        let field = v["field"].as_str().unwrap();
        let r = recs.iter().find(|r| r["event_id"] == format!("v{i}")).unwrap();
        let flags = r["flags"].as_array().unwrap();
        match v["sha256"].as_str() {
            Some(hash) => {
                assert_eq!(r["user"][field], hash, "vector {i} ({}): {v}", v["note"]);
                assert!(flags.is_empty(), "vector {i}: unexpected flags {flags:?}");
            }
            None => {
                assert!(r["user"].get(field).is_none(), "vector {i} should be dropped: {v}");
                assert_eq!(flags, &vec![Value::from(format!("invalid_{field}"))], "vector {i}: {v}");
            }
        }
    }
}

#[tokio::test]
async fn a_default_phone_country_reproduces_metas_documented_example() {
    let app = spawn_app(&["serve", "--default-phone-country", "1"]).await;
    app.hit("/p.gif?pixel_id=1&event=Lead&usat_ph=(650)555-1212").await;
    let r = app.only_record().await;
    assert_eq!(r["user"]["ph"], "e323ec626319ca94ee8bff2e4c87cf613be6ea19919ed1364124e16807ab3176");
}

/// Plaintext values and the normalised forms they would take before hashing.
const CANARIES: &[(&str, &str, &[&str])] = &[
    ("em", "Pii.Canary+7@Example.org", &["pii.canary+7@example.org", "pii.canary"]),
    ("ph", "+1 (650) 555-0199", &["16505550199", "6505550199", "555-0199"]),
    ("fn", "Zebulonia", &["zebulonia"]),
    ("ln", "Quackenbush", &["quackenbush"]),
    ("ct", "Xanadu Springs", &["xanadusprings", "xanadu"]),
    ("st", "Wyoming", &["wyoming"]),
    ("zp", "QX9 8ZZ", &["qx98zz"]),
    ("db", "03/17/1984", &["19840317"]),
    ("ge", "female", &["female"]),
    ("country", "Iceland", &["iceland"]),
    ("external_id", "CANARY-EXT-42", &["canary-ext-42"]),
];

#[tokio::test]
async fn no_plaintext_personal_data_in_records_logs_or_metrics() {
    let mut bin = Launch::new().args(["--log-level", "debug", "--log-format", "json"]).serve();
    let client = &bin.http;
    let base = format!("http://{}", bin.addr);
    for prefix in ["usat_", "ud[", "x-fb-ud-"] {
        let close = if prefix == "ud[" { "]" } else { "" };
        let q: Vec<String> = CANARIES.iter().map(|(k, v, _)| format!("{}={}", enc(&format!("{prefix}{k}{close}")), enc(v))).collect();
        let r = client.get(format!("{base}/p.gif?pixel_id=1&event=Lead&{}", q.join("&"))).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let r = client.post(format!("{base}/tr/?id=1&ev=Lead")).header("content-type", "application/x-www-form-urlencoded").body(q.join("&")).send().await.unwrap();
        assert_eq!(r.status(), 204);
    }
    assert!(bin.terminate().success());
    let recs = read_records(&bin.data);
    assert_eq!(recs.len(), 6);
    for r in &recs {
        for (k, _, _) in CANARIES {
            let v = r["user"][*k].as_str().unwrap_or_else(|| panic!("{k} missing in {r}"));
            assert!(v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()), "{k}: {v}");
        }
    }
    let mut haystacks = vec![("logs", bin.logs().to_lowercase())];
    for f in files_below(&bin.data) {
        haystacks.push(("records", std::fs::read_to_string(f).unwrap_or_default().to_lowercase()));
    }
    assert!(haystacks[0].1.contains("\"hit\""), "debug logging was on, so hits were logged");
    for (where_, text) in &haystacks {
        for (k, raw, forms) in CANARIES {
            for needle in std::iter::once(&raw.to_lowercase()).chain(forms.iter().map(|f| f.to_string()).collect::<Vec<_>>().iter()) {
                assert!(!text.contains(needle.as_str()), "plaintext {k} ({needle}) found in {where_}");
            }
        }
    }
}

#[tokio::test]
async fn metrics_carry_no_personal_data() {
    let bin = Launch::new().serve();
    bin.http.get(bin.url(&format!("/p.gif?pixel_id=1&event=Lead&usat_em={}&usat_ph=abc", enc("Metrics.Canary@Example.org")))).send().await.unwrap();
    // Flags are counted when the intake shapes the hit, just after the answer; a scrape waits for
    // the intake, so one taken after the answer includes them.
    let text = bin.metrics().await.to_lowercase();
    assert_eq!(metric(&text, "pixelgate_hit_flags_total", &[("flag", "invalid_ph")]), 1.0, "{text}");
    assert!(!text.contains("metrics.canary") && !text.contains("abc\""));
}
