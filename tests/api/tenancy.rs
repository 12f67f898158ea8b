//! A registered pixel's settings on its hits: `account_id` on every record, the allowed
//! domains (flag `domain_not_allowed`), and CORS on the pixel paths, over real sockets with the
//! pixel registered through the real `/v1/` API.

use reqwest::header::HeaderMap;
use serde_json::{Value, json};

use crate::common::metrics::metric;
use crate::common::records::files_below;
use crate::helpers::{TestApp, spawn_app};

const ADMIN_KEY: &str = "tenancy-admin-key-0123456789";
const PIXEL: &str = "123";
const SHOP: &str = "https://www.shop.test";
const EVIL: &str = "https://evil.test";

/// An app with the bootstrap admin key, an account "Shop" and pixel 123 registered to it with
/// `allowed_domains: ["shop.test"]`; the account id.
async fn shop() -> (TestApp, String) {
    let app = spawn_app(&["--admin-key", ADMIN_KEY]).await;
    let (status, account) = admin(&app, "POST", "/v1/accounts", json!({"name": "Shop"})).await;
    assert_eq!(status, 201, "{account}");
    let account_id = account["account_id"].as_str().unwrap_or_else(|| panic!("{account}")).to_owned();
    let (status, pixel) = admin(&app, "PUT", &format!("/v1/pixels/{PIXEL}"), json!({"account_id": account_id, "allowed_domains": ["shop.test"]})).await;
    assert_eq!(status, 201, "{pixel}");
    assert_eq!(pixel["allowed_domains"], json!(["shop.test"]), "{pixel}");
    (app, account_id)
}

async fn admin(app: &TestApp, method: &str, path: &str, body: Value) -> (u16, Value) {
    let r = app.client.request(method.parse().unwrap(), app.url(path)).bearer_auth(ADMIN_KEY).json(&body).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// The record whose `event_id` is `id`.
fn by_id<'a>(records: &'a [Value], id: &str) -> &'a Value {
    records.iter().find(|r| r["event_id"] == id).unwrap_or_else(|| panic!("no record {id}: {records:#?}"))
}

fn cors_headers(h: &HeaderMap) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> =
        h.iter().filter(|(k, _)| k.as_str().starts_with("access-control-") || k.as_str() == "vary").map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap().to_owned())).collect();
    out.sort();
    out
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    out.sort();
    out
}

#[tokio::test]
async fn every_record_carries_the_account_and_pages_outside_the_allowed_domains_are_flagged() {
    let (app, account) = shop().await;
    let url = |page: &str| form_urlencoded::byte_serialize(page.as_bytes()).collect::<String>();
    app.hit(&format!("/tr?id={PIXEL}&ev=PageView&eid=allowed&dl={}", url("https://www.shop.test/x"))).await;
    app.hit(&format!("/tr?id={PIXEL}&ev=PageView&eid=evil&dl={}", url("https://evil.test/"))).await;
    app.hit(&format!("/tr?id={PIXEL}&ev=PageView&eid=lookalike&dl={}", url("https://badshop.test/"))).await;
    app.hit(&format!("/p.gif?pixel_id=999&event=PageView&event_id=unregistered&url={}", url("https://evil.test/"))).await;
    app.hit("/p.gif?event=PageView&event_id=no-pixel").await;
    // No page URL: the Referer, else the Origin.
    let get = |eid: &str, header: &str, value: &str| app.client.get(app.url(&format!("/tr?id={PIXEL}&ev=PageView&eid={eid}"))).header(header, value).send();
    assert_eq!(get("referer", "referer", "https://shop.test/cart").await.unwrap().status(), 200);
    assert_eq!(get("origin", "origin", SHOP).await.unwrap().status(), 200);
    assert_eq!(get("evil-origin", "origin", EVIL).await.unwrap().status(), 200);
    assert_eq!(app.client.get(app.url(&format!("/tr?id={PIXEL}&ev=PageView&eid=nowhere"))).send().await.unwrap().status(), 200);

    let records = app.records().await;
    assert_eq!(records.len(), 9);
    for id in ["allowed", "referer", "origin"] {
        let r = by_id(&records, id);
        assert_eq!((&r["account_id"], &r["flags"]), (&json!(account), &json!([])), "{id}: {r}");
    }
    for id in ["evil", "lookalike", "evil-origin", "nowhere"] {
        let r = by_id(&records, id);
        assert_eq!((&r["account_id"], &r["flags"]), (&json!(account), &json!(["domain_not_allowed"])), "{id}: {r}");
    }
    let r = by_id(&records, "unregistered");
    assert_eq!((&r["account_id"], &r["flags"]), (&Value::Null, &json!([])), "{r}");
    assert_eq!(by_id(&records, "no-pixel")["account_id"], Value::Null);
    let raw: String = files_below(&app.data.path().join("raw")).iter().map(|p| std::fs::read_to_string(p).unwrap()).collect();
    assert!(raw.contains(&format!(r#""pixel_id":"123","account_id":"{account}","event":"PageView","event_id":"allowed","#)), "account_id right after pixel_id: {raw}");
    assert!(raw.contains(r#""pixel_id":"999","account_id":null,"#), "{raw}");
    assert!(records.iter().all(|r| r.get("origin").is_none() && r.as_object().unwrap().len() == 17), "the Origin header is not part of the record: {raw}");
    // The recorder is the test process's: other tests' hits count too.
    let metrics = app.metrics().await;
    assert!(metric(&metrics, "pixelgate_hit_flags_total", &[("flag", "domain_not_allowed")]) >= 4.0, "{metrics}");
    app.stop().await;
}

#[tokio::test]
async fn a_preflight_is_answered_for_an_allowed_origin_only() {
    let (app, _) = shop().await;
    let preflight = |path: &'static str, origin: Option<&'static str>| {
        let mut req =
            app.client.request(reqwest::Method::OPTIONS, app.url(path)).header("access-control-request-method", "POST").header("access-control-request-headers", "content-type");
        if let Some(origin) = origin {
            req = req.header("origin", origin);
        }
        req.send()
    };
    let allowed = |origin: &str| {
        pairs(&[
            ("access-control-allow-origin", origin),
            ("access-control-allow-credentials", "true"),
            ("access-control-allow-methods", "GET, HEAD, POST"),
            ("access-control-allow-headers", "content-type"),
            ("access-control-max-age", "600"),
            ("vary", "Origin"),
        ])
    };
    for (path, origin) in [("/tr?id=123", SHOP), ("/p.gif?pixel_id=123&ev=Lead", "https://shop.test"), ("/tr/", EVIL), ("/tr?id=999", EVIL), ("/tr?id=not-a-pixel", EVIL)] {
        let r = preflight(path, Some(origin)).await.unwrap();
        assert_eq!(r.status(), 204, "{path} {origin}");
        assert_eq!(cors_headers(r.headers()), allowed(origin), "{path} {origin}");
        assert!(r.bytes().await.unwrap().is_empty());
    }
    for (path, origin) in [("/tr?id=123", Some(EVIL)), ("/tr?id=123", Some("null")), ("/tr?id=123", None)] {
        let r = preflight(path, origin).await.unwrap();
        assert_eq!(r.status(), 204, "{path} {origin:?}");
        assert_eq!(cors_headers(r.headers()), vec![], "{path} {origin:?}: no CORS header, so the browser blocks");
    }
    assert!(app.records().await.is_empty(), "a preflight is not a hit");
    app.stop().await;
}

#[tokio::test]
async fn answers_to_an_origin_carry_cors_headers_when_it_is_allowed_and_the_pixel_always() {
    let (app, account) = shop().await;
    let allowed = |origin: &str| pairs(&[("access-control-allow-origin", origin), ("access-control-allow-credentials", "true"), ("vary", "Origin")]);
    let gif = |path: &str, origin: Option<&str>| {
        let mut req = app.client.get(app.url(path));
        if let Some(origin) = origin {
            req = req.header("origin", origin);
        }
        req.send()
    };
    for (path, origin, cors) in [
        ("/p.gif?id=123&ev=Lead&eid=g1", Some(SHOP), allowed(SHOP)),
        ("/p.gif?id=123&ev=Lead&eid=g2", Some(EVIL), vec![]),
        ("/p.gif?id=999&ev=Lead&eid=g3", Some(EVIL), allowed(EVIL)),
        ("/p.gif?id=123&ev=Lead&eid=g4", None, vec![]),
    ] {
        let r = gif(path, origin).await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.headers()["content-type"], "image/gif");
        assert_eq!(cors_headers(r.headers()), cors, "{path} {origin:?}");
        assert_eq!(r.bytes().await.unwrap().len(), 43, "always the GIF");
    }
    let head = app.client.head(app.url("/tr?id=123&ev=Lead&eid=h1")).header("origin", SHOP).send().await.unwrap();
    assert_eq!((head.status().as_u16(), cors_headers(head.headers())), (200, allowed(SHOP)));

    // A JSON beacon, as `fetch(url, {method: "POST", credentials: "include", body: JSON})` sends it.
    let beacon = |origin: &str, eid: &str| {
        app.client
            .post(app.url("/tr"))
            .header("origin", origin)
            .header("content-type", "application/json")
            .body(json!({"pixel_id": PIXEL, "event": "Lead", "event_id": eid, "cd[value]": 12.5, "consent": true}).to_string())
            .send()
    };
    let r = beacon(SHOP, "json-shop").await.unwrap();
    assert_eq!((r.status().as_u16(), cors_headers(r.headers())), (204, allowed(SHOP)));
    let r = beacon(EVIL, "json-evil").await.unwrap();
    assert_eq!((r.status().as_u16(), cors_headers(r.headers())), (204, vec![]));

    let records = app.records().await;
    assert_eq!(records.len(), 7);
    let r = by_id(&records, "json-shop");
    assert_eq!(
        (&r["account_id"], &r["event"], &r["attrs"]["value"], &r["extra"]["consent"], &r["flags"]),
        (&json!(account), &json!("Lead"), &json!("12.5"), &json!("true"), &json!([])),
        "{r}"
    );
    assert_eq!(by_id(&records, "json-evil")["flags"], json!(["domain_not_allowed"]));
    assert_eq!(by_id(&records, "g4")["flags"], json!(["domain_not_allowed"]), "no page and no Origin: not on an allowed domain");
    app.stop().await;
}
