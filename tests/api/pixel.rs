//! The pixel answer (`docs/parameters.md#the-pixel-answer`), byte for byte.

use crate::common::user_agents::BROWSER_UA;
use crate::helpers::{raw_exchange, spawn_app};
use std::time::Duration;

/// The GIF the binary embeds and answers with.
const GIF: &[u8] = include_bytes!("../../static/pixel.gif");
const GIF_HEX: &str = "47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b";

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn assert_pixel_headers(h: &reqwest::header::HeaderMap) {
    assert_eq!(h["content-type"], "image/gif");
    assert_eq!(h["content-length"], "43");
    assert_eq!(h["cache-control"], "no-cache, no-store, must-revalidate, max-age=0");
    assert_eq!(h["pragma"], "no-cache");
    assert_eq!(h["expires"], "0");
    assert_eq!(h["cross-origin-resource-policy"], "cross-origin");
    assert_eq!(h["x-content-type-options"], "nosniff");
}

#[tokio::test]
async fn get_on_every_pixel_path_answers_the_exact_gif_with_every_header() {
    let app = spawn_app(&[]).await;
    assert_eq!(hex(GIF), GIF_HEX);
    for path in ["/p.gif", "/tr", "/tr/", "/p.gif?pixel_id=1&event=PageView"] {
        let r = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_pixel_headers(r.headers());
        assert_eq!(hex(&r.bytes().await.unwrap()), GIF_HEX, "{path}");
    }
    assert_eq!(app.records().await.len(), 4);
}

#[tokio::test]
async fn head_has_the_same_headers_and_no_body() {
    let app = spawn_app(&[]).await;
    let raw = raw_exchange(app.addr, b"HEAD /tr/?id=1&ev=PageView HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", Duration::from_secs(2)).await;
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("content-length: 43") && head.contains("content-type: image/gif"), "{head}");
    assert_eq!(body, "");
    let r = app.client.head(app.url("/p.gif")).send().await.unwrap();
    assert_pixel_headers(r.headers());
    assert_eq!(app.records().await.len(), 2);
}

#[tokio::test]
async fn post_bodies_of_every_kind_merge_with_the_query() {
    let app = spawn_app(&[]).await;
    let c = &app.client;
    let send = |ct: &'static str, body: &'static str| c.post(app.url("/tr/?id=42")).header("content-type", ct).body(body).send();

    let r = send("application/x-www-form-urlencoded", "ev=Purchase&eid=form&cd%5Bvalue%5D=1.5").await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["cache-control"], "no-cache, no-store, must-revalidate, max-age=0");
    assert!(r.bytes().await.unwrap().is_empty());
    assert_eq!(send("text/plain;charset=UTF-8", "event=Lead&event_id=beacon").await.unwrap().status(), 204);
    assert_eq!(send("text/plain", r#"{"event":"Search","event_id":"json","evat_n":3}"#).await.unwrap().status(), 204);
    let multipart = "--XyZ\r\nContent-Disposition: form-data; name=\"ev\"\r\n\r\nViewContent\r\n--XyZ\r\nContent-Disposition: form-data; name=\"eid\"\r\n\r\nmulti\r\n--XyZ\r\nContent-Disposition: form-data; name=\"cd[content_ids]\"\r\n\r\n[\"sku-1\"]\r\n--XyZ--\r\n";
    let r = c.post(app.url("/tr/?id=42")).header("content-type", "multipart/form-data; boundary=XyZ").body(multipart).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(send("application/octet-stream", "\u{0}\u{1}").await.unwrap().status(), 204);

    let recs = app.records().await;
    let by_id = |id: &str| recs.iter().find(|r| r["event_id"] == id).unwrap_or_else(|| panic!("no record {id}: {recs:#?}")).clone();
    let form = by_id("form");
    assert_eq!((form["pixel_id"].as_str(), form["event"].as_str(), form["attrs"]["value"].as_str()), (Some("42"), Some("Purchase"), Some("1.5")));
    assert_eq!(by_id("beacon")["event"], "Lead");
    let json = by_id("json");
    assert_eq!((json["event"].as_str(), json["attrs"]["n"].as_str()), (Some("Search"), Some("3")));
    let multi = by_id("multi");
    assert_eq!((multi["event"].as_str(), multi["attrs"]["content_ids"].as_str()), (Some("ViewContent"), Some("[\"sku-1\"]")));
    let odd = recs.iter().find(|r| r["flags"].as_array().unwrap().iter().any(|f| f == "unsupported_body")).expect("flagged record");
    assert_eq!(odd["pixel_id"], "42");
    assert_eq!(recs.len(), 5);
}

#[tokio::test]
async fn other_methods_and_paths_get_a_clear_answer() {
    let app = spawn_app(&[]).await;
    let r = app.client.put(app.url("/p.gif")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "GET, HEAD, POST");
    let r = app.client.get(app.url("/nope")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.text().await.unwrap().contains("\"error\""));
    assert!(app.records().await.is_empty());
}

#[tokio::test]
async fn keep_alive_serves_many_hits_on_one_connection() {
    let app = spawn_app(&[]).await;
    let c = reqwest::Client::builder().user_agent(BROWSER_UA).pool_max_idle_per_host(1).build().unwrap();
    for i in 0..50 {
        let r = c.get(app.url(&format!("/p.gif?pixel_id=1&event=PageView&event_id=k{i}"))).send().await.unwrap();
        assert_eq!(r.bytes().await.unwrap().len(), 43);
    }
    assert_eq!(app.records().await.len(), 50);
}
