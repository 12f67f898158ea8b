//! The client address: the socket peer, or the N-th trusted X-Forwarded-For hop from the right.

use crate::helpers::{spawn_app, spawn_app_on};
use serde_json::json;

#[tokio::test]
async fn the_socket_peer_and_a_spoofed_header_is_ignored() {
    let app = spawn_app(&[]).await;
    app.client.get(app.url("/p.gif?pixel_id=1&event=Lead")).header("x-forwarded-for", "6.6.6.6").send().await.unwrap();
    let r = app.only_record().await;
    assert_eq!(r["ip"], "127.0.0.1");
    assert_eq!(r["flags"], json!([]));
}

#[tokio::test]
async fn trusted_hops_are_counted_from_the_right() {
    let one = spawn_app(&["--trusted-proxies", "1"]).await;
    let two = spawn_app(&["--trusted-proxies", "2"]).await;
    for app in [&one, &two] {
        app.client.get(app.url("/p.gif?pixel_id=1&event=Lead")).header("x-forwarded-for", "6.6.6.6, 203.0.113.7").header("x-forwarded-for", "2001:db8::42").send().await.unwrap();
    }
    assert_eq!(one.only_record().await["ip"], "2001:db8::42");
    assert_eq!(two.only_record().await["ip"], "203.0.113.7");
}

#[tokio::test]
async fn short_or_garbage_chains_are_flagged() {
    let app = spawn_app(&["--trusted-proxies", "2"]).await;
    app.client.get(app.url("/p.gif?pixel_id=1&event=Lead&event_id=short")).header("x-forwarded-for", "198.51.100.9").send().await.unwrap();
    app.client.get(app.url("/p.gif?pixel_id=1&event=Lead&event_id=junk")).header("x-forwarded-for", "junk, 198.51.100.9").send().await.unwrap();
    let recs = app.records().await;
    let short = recs.iter().find(|r| r["event_id"] == "short").unwrap();
    assert_eq!((short["ip"].clone(), short["flags"].clone()), (json!("198.51.100.9"), json!(["bad_forwarded_for"])));
    let junk = recs.iter().find(|r| r["event_id"] == "junk").unwrap();
    assert_eq!((junk["ip"].clone(), junk["flags"].clone()), (json!("127.0.0.1"), json!(["bad_forwarded_for"])));
}

#[tokio::test]
async fn ipv6_clients_on_an_ipv6_listener() {
    let app = spawn_app_on("[::1]:0", &[]).await;
    app.hit("/p.gif?pixel_id=1&event=Lead").await;
    assert_eq!(app.only_record().await["ip"], "::1");
}
