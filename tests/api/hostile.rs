//! Hostile input: oversize, malformed and abusive requests get bounded answers, the pixel still
//! answers with the GIF where a request exists, records stay valid JSON, and the server stays up.

use std::time::{Duration, Instant};

use crate::common::process::Launch;
use crate::helpers::{raw_exchange, spawn_app};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn status_of(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw).split("\r\n").next().unwrap_or("").to_owned()
}

#[tokio::test]
async fn request_heads_over_32_kib_get_431_or_414() {
    let app = spawn_app(&[]).await;
    let big_header = format!("GET /p.gif HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n", "a".repeat(33 * 1024));
    let status = status_of(&raw_exchange(app.addr, big_header.as_bytes(), Duration::from_secs(3)).await);
    assert!(status.starts_with("HTTP/1.1 431"), "{status}");
    let long_uri = format!("GET /p.gif?x={} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(33 * 1024));
    let status = status_of(&raw_exchange(app.addr, long_uri.as_bytes(), Duration::from_secs(3)).await);
    assert!(status.starts_with("HTTP/1.1 431") || status.starts_with("HTTP/1.1 414"), "{status}");
    // Just under the cap is a normal pixel hit.
    let ok = format!("GET /p.gif?pixel_id=1&event=Lead&evat_big={} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "b".repeat(20 * 1024));
    assert!(status_of(&raw_exchange(app.addr, ok.as_bytes(), Duration::from_secs(3)).await).starts_with("HTTP/1.1 200"));
    let r = app.only_record().await;
    assert_eq!(r["attrs"]["big"].as_str().unwrap().len(), 8192);
    assert_eq!(r["flags"], json!(["oversize"]));
}

#[tokio::test]
async fn too_many_parameters_are_capped_and_flagged() {
    let app = spawn_app(&[]).await;
    let q: Vec<String> = (0..400).map(|i| format!("k{i}={i}")).collect();
    app.hit(&format!("/p.gif?pixel_id=1&event=Lead&{}", q.join("&"))).await;
    let r = app.only_record().await;
    assert_eq!(r["extra"].as_object().unwrap().len(), 254);
    assert_eq!(r["flags"], json!(["too_many_params"]));
}

#[tokio::test]
async fn bad_percent_encoding_and_utf8_are_decoded_lossily_and_flagged() {
    let app = spawn_app(&[]).await;
    app.hit("/p.gif?pixel_id=1&event=Lead&evat_a=%zz&evat_b=%FF%FE&evat_c=%C0%AF&evat_d=%E2%82").await;
    let r = app.only_record().await;
    assert_eq!(r["attrs"]["a"], "%zz");
    for k in ["b", "c", "d"] {
        assert!(r["attrs"][k].as_str().unwrap().contains('\u{FFFD}'), "{k}");
    }
    assert_eq!(r["flags"], json!(["bad_encoding"]));
}

#[tokio::test]
async fn no_value_can_break_a_record() {
    let app = spawn_app(&[]).await;
    let nasty = ["\"", "\\", "\n", "\r\n{\"schema\":\"forged\"}\n", "\u{0}", "\u{1b}[31m", "\u{2028}\u{2029}", "</script>", "}\"]{", "😀", "\u{FEFF}"];
    for (i, v) in nasty.iter().enumerate() {
        let enc: String = form_urlencoded::byte_serialize(v.as_bytes()).collect();
        app.hit(&format!("/p.gif?pixel_id=1&event={enc}&event_id=n{i}&evat_x={enc}&{enc}={enc}&usat_fn={enc}")).await;
    }
    let recs = app.records().await;
    assert_eq!(recs.len(), nasty.len(), "one line per hit, each valid JSON");
    for (i, v) in nasty.iter().enumerate() {
        let r = recs.iter().find(|r| r["event_id"] == format!("n{i}")).unwrap();
        assert_eq!(r["event"], *v);
        assert_eq!(r["attrs"]["x"], *v);
        assert_eq!(r["schema"], "pixelgate.hit/1");
    }
}

#[tokio::test]
async fn oversize_and_slow_bodies_still_get_204() {
    let app = spawn_app(&["serve", "--max-body-bytes", "1024", "--header-read-timeout", "1s"]).await;
    let r = app.client.post(app.url("/tr/?id=1&ev=Lead&eid=big")).header("content-type", "text/plain").body("a=".to_owned() + &"x".repeat(4096)).send().await.unwrap();
    assert_eq!(r.status(), 204);
    // Promise 100 bytes, send 10, then stall.
    let mut s = TcpStream::connect(app.addr).await.unwrap();
    s.write_all(b"POST /tr/?id=1&ev=Lead&eid=slow HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\nev=Purcha").await.unwrap();
    let mut buf = vec![0; 1024];
    let started = Instant::now();
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await.expect("answered").unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 204"));
    assert!(started.elapsed() < Duration::from_secs(3));
    let recs = app.records().await;
    let flags = |id: &str| recs.iter().find(|r| r["event_id"] == id).unwrap()["flags"].clone();
    assert_eq!(flags("big"), json!(["oversize"]));
    assert_eq!(flags("slow"), json!(["bad_body"]));
}

#[tokio::test]
async fn silent_slowloris_and_idle_connections_are_closed_after_the_header_timeout() {
    let app = spawn_app(&["serve", "--header-read-timeout", "1s"]).await;
    let started = Instant::now();
    let mut silent = TcpStream::connect(app.addr).await.unwrap();
    let mut slow = TcpStream::connect(app.addr).await.unwrap();
    let mut idle = TcpStream::connect(app.addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let trickle = tokio::spawn(async move {
        for b in b"GET /p.gif HTTP/1.1\r\nHost: x\r\nX-Slow: ".iter().chain(std::iter::repeat(&b'a')) {
            if slow.write_all(&[*b]).await.is_err() {
                return Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        unreachable!()
    });
    let mut buf = vec![0; 4096];
    assert_eq!(tokio::time::timeout(Duration::from_secs(4), silent.read(&mut buf)).await.expect("silent closed").unwrap_or(0), 0);
    let n = idle.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    assert_eq!(tokio::time::timeout(Duration::from_secs(4), idle.read(&mut buf)).await.expect("idle closed").unwrap_or(0), 0);
    let cut = tokio::time::timeout(Duration::from_secs(6), trickle).await.expect("slowloris cut").unwrap();
    assert!(cut.duration_since(started) < Duration::from_secs(4));
    assert_eq!(app.client.get(app.url("/healthz")).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn timeouts_are_counted_by_reason() {
    let bin = Launch::new().args(["--header-read-timeout", "1s"]).serve();
    let _silent = TcpStream::connect(bin.addr).await.unwrap();
    let started = Instant::now();
    while bin.metric("pixelgate_connections_timed_out_total", &[("listener", "pixel"), ("reason", "header_timeout")]).await < 1.0 {
        assert!(started.elapsed() < Duration::from_secs(5), "{}", bin.metrics().await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn clients_that_stop_reading_answers_lose_their_slot() {
    let app = spawn_app(&["--max-connections", "4", "--header-read-timeout", "1s"]).await;
    let request = b"GET /p.gif?pixel_id=1&event=PageView HTTP/1.1\r\nHost: x\r\n\r\n".repeat(2000);
    let mut hogs = Vec::new();
    for _ in 0..4 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let mut s = socket.connect(app.addr).await.unwrap();
        // Pipeline requests and never read a byte of the answers.
        let req = request.clone();
        hogs.push(tokio::spawn(async move {
            for _ in 0..20 {
                if s.write_all(&req).await.is_err() {
                    break;
                }
            }
            s
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(6), app.client.get(app.url("/healthz")).send()).await;
    assert!(r.is_ok_and(|r| r.is_ok_and(|r| r.status() == 200)), "a browser was locked out for {:?}", started.elapsed());
    for h in hogs {
        h.abort();
    }
}

#[tokio::test]
async fn hundreds_of_slow_connections_do_not_delay_a_browser() {
    let app = spawn_app(&[]).await;
    let mut hogs = Vec::new();
    for _ in 0..300 {
        let mut s = TcpStream::connect(app.addr).await.unwrap();
        s.write_all(b"GET /p.gif HTTP/1.1\r\nHost: x\r\nX-Slow: a").await.unwrap();
        hogs.push(s);
    }
    let started = Instant::now();
    app.hit("/p.gif?pixel_id=1&event=Lead").await;
    assert!(started.elapsed() < Duration::from_millis(500), "{:?}", started.elapsed());
    drop(hogs);
}

#[tokio::test]
async fn at_the_connection_cap_a_browser_waits_at_most_one_header_timeout() {
    let app = spawn_app(&["serve", "--max-connections", "16", "--header-read-timeout", "1s"]).await;
    let mut hogs = Vec::new();
    for _ in 0..16 {
        hogs.push(TcpStream::connect(app.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    app.hit("/p.gif?pixel_id=1&event=Lead").await;
    let waited = started.elapsed();
    assert!(waited < Duration::from_millis(2500), "{waited:?}");
    assert_eq!(app.records().await.len(), 1);
}
