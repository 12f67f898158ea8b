//! Every canonical name and alias of a parameter (`docs/parameters.md#parameters`) lands in the
//! same record field.

use crate::common::user_agents::BROWSER_UA;
use crate::helpers::{TestApp, spawn_app};
use serde_json::{Value, json};

/// Sends one hit and returns its record.
async fn record_of(app: &TestApp, query: &str) -> Value {
    let before = app.records().await.len();
    app.hit(&format!("/p.gif?{query}")).await;
    let recs = app.records().await;
    assert_eq!(recs.len(), before + 1);
    recs.into_iter().last().unwrap()
}

#[tokio::test]
async fn pixel_id_event_and_event_id_in_every_convention() {
    let app = spawn_app(&[]).await;
    for (q, pixel, event, eid) in
        [("pixel_id=11&event=Purchase&event_id=a", "11", "Purchase", "a"), ("id=22&ev=PageView&eid=b", "22", "PageView", "b"), ("pid=33&ev=Lead&eid=c", "33", "Lead", "c")]
    {
        let r = record_of(&app, q).await;
        assert_eq!((r["pixel_id"].as_str(), r["event"].as_str(), r["event_id"].as_str()), (Some(pixel), Some(event), Some(eid)), "{q}");
        assert_eq!(r["flags"], json!([]), "{q}");
    }
}

#[tokio::test]
async fn a_missing_event_id_is_generated_and_unique() {
    let app = spawn_app(&[]).await;
    let a = record_of(&app, "pixel_id=1&event=PageView").await;
    let b = record_of(&app, "pixel_id=1&event=PageView&event_id=").await;
    for r in [&a, &b] {
        let id = r["event_id"].as_str().unwrap();
        assert_eq!(id.len(), 36, "{id}");
        assert_eq!(id.matches('-').count(), 4);
    }
    assert_ne!(a["event_id"], b["event_id"]);
}

#[tokio::test]
async fn event_attributes_in_every_convention() {
    let app = spawn_app(&[]).await;
    let r = record_of(&app, "pixel_id=1&event=Purchase&evat_value=9.99&cd%5Bcurrency%5D=USD&x-fb-cd-content_ids=%5B%22a%22%5D&cd[num_items]=2").await;
    assert_eq!(r["attrs"], json!({"value": "9.99", "currency": "USD", "content_ids": "[\"a\"]", "num_items": "2"}));
    assert_eq!(r["extra"], json!({}));
}

#[tokio::test]
async fn user_attributes_in_every_convention_hashed_where_meta_hashes() {
    let app = spawn_app(&[]).await;
    let em = "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f"; // john_smith@gmail.com
    for q in ["usat_em=John_Smith%40gmail.com", "ud%5Bem%5D=John_Smith%40gmail.com", "x-fb-ud-em=%20JOHN_SMITH%40GMAIL.COM%20", &format!("ud[em]={}", em.to_uppercase())] {
        let r = record_of(&app, &format!("pixel_id=1&event=Lead&{q}&usat_subscription_id=sub-9")).await;
        assert_eq!(r["user"], json!({"em": em, "subscription_id": "sub-9"}), "{q}");
    }
}

#[tokio::test]
async fn page_url_from_url_dl_or_the_referer_header() {
    let app = spawn_app(&[]).await;
    let send = |q: &str, referer: Option<&str>| {
        let mut rb = app.client.get(app.url(&format!("/p.gif?pixel_id=1&event=PageView&{q}")));
        if let Some(r) = referer {
            rb = rb.header("referer", r);
        }
        rb.send()
    };
    send("url=https%3A%2F%2Fa.example%2F1&ref=https%3A%2F%2Fsearch.example%2F", Some("https://hdr.example/")).await.unwrap();
    send("dl=https%3A%2F%2Fb.example%2F2&rl=https%3A%2F%2Fsocial.example%2F", None).await.unwrap();
    send("", Some("https://hdr.example/page")).await.unwrap();
    let recs = app.records().await;
    let urls: Vec<_> = recs.iter().map(|r| (r["url"].clone(), r["referrer"].clone())).collect();
    assert_eq!(
        urls,
        vec![
            (json!("https://a.example/1"), json!("https://search.example/")),
            (json!("https://b.example/2"), json!("https://social.example/")),
            (json!("https://hdr.example/page"), Value::Null),
        ]
    );
}

#[tokio::test]
async fn client_time_and_test_event_code() {
    let app = spawn_app(&[]).await;
    let r = record_of(&app, "pixel_id=1&event=Lead&ts=1795723354123&test_event_code=TEST123").await;
    assert_eq!((r["client_ts"].as_i64(), r["test_event_code"].as_str()), (Some(1_795_723_354_123), Some("TEST123")));
    let r = record_of(&app, "pixel_id=1&event=Lead&ts=yesterday").await;
    assert_eq!(r["client_ts"], Value::Null);
    assert_eq!(r["extra"]["ts"], "yesterday");
    assert_eq!(r["flags"], json!(["bad_ts"]));
}

#[tokio::test]
async fn fbp_and_fbc_from_parameters_cookies_or_the_fbclid() {
    let app = spawn_app(&[]).await;
    let r = record_of(&app, "pixel_id=1&event=Lead&fbp=fb.1.1596403881668.1116446470&ud[fbc]=fb.1.1554763741205.AbCdEf").await;
    assert_eq!(r["user"], json!({"fbp": "fb.1.1596403881668.1116446470", "fbc": "fb.1.1554763741205.AbCdEf"}));

    app.client.get(app.url("/p.gif?pixel_id=1&event=Lead&event_id=cookie")).header("cookie", "a=1; _fbp=fb.1.1.222; _fbc=fb.1.2.XyZ").send().await.unwrap();
    let before = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis();
    let r = record_of(&app, "pixel_id=1&event=Purchase&event_id=clid&url=https%3A%2F%2Fshop.example.com%2Fcheckout%3Fa%3D1%26fbclid%3DAbC123%23top").await;
    let recs = app.records().await;
    let cookie = recs.iter().find(|r| r["event_id"] == "cookie").unwrap();
    assert_eq!(cookie["user"], json!({"fbp": "fb.1.1.222", "fbc": "fb.1.2.XyZ"}));
    let fbc = r["user"]["fbc"].as_str().unwrap();
    let parts: Vec<&str> = fbc.split('.').collect();
    assert_eq!((parts[0], parts[1], parts[3]), ("fb", "1", "AbC123"), "{fbc}");
    let ms: u128 = parts[2].parse().unwrap();
    assert!(ms + 5_000 >= before && ms <= before + 5_000, "{fbc}");
}

#[tokio::test]
async fn cache_busters_are_dropped_and_everything_else_is_kept() {
    let app = spawn_app(&[]).await;
    let r = record_of(&app, "pixel_id=1&event=PageView&gtmcb=123&cb=4&rand=5&_=6&noscript=1&v=2.9.170&sw=1920").await;
    assert_eq!(r["extra"], json!({"noscript": "1", "v": "2.9.170", "sw": "1920"}));
}

#[tokio::test]
async fn every_record_has_the_schema_fields() {
    let app = spawn_app(&[]).await;
    let r = record_of(&app, "").await;
    for field in
        ["schema", "received_at", "pixel_id", "account_id", "event", "event_id", "ip", "user_agent", "url", "referrer", "attrs", "user", "test_event_code", "flags", "extra"]
    {
        assert!(r.get(field).is_some(), "missing {field}");
    }
    assert_eq!(r["schema"], "pixelgate.hit/1");
    let at = r["received_at"].as_str().unwrap();
    assert!(at.len() == 24 && at.ends_with('Z') && at.as_bytes()[19] == b'.', "{at}");
    assert_eq!(r["flags"], json!(["missing_pixel_id", "missing_event"]));
    assert_eq!(r["account_id"], Value::Null, "no registered pixel, no account");
    assert_eq!(r["ip"], "127.0.0.1");
    assert_eq!(r["user_agent"], BROWSER_UA);
}

#[tokio::test]
async fn a_repeated_event_id_still_gets_a_record_per_hit() {
    let app = spawn_app(&[]).await;
    for _ in 0..3 {
        app.hit("/p.gif?pixel_id=1&event=Purchase&event_id=same").await;
    }
    assert_eq!(app.records().await.len(), 3);
}
