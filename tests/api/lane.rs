//! The pixel lane against hyper, over real sockets, on the real binary (whose
//! `pixelgate_lane_answers_total` tells which of the two answered): a plain pixel read answered
//! by the lane gets the bytes hyper sends for the same request and makes the same record;
//! pipelined reads are answered in order across the hand-over to hyper; a head that arrives in
//! pieces is waited for; a client that half-closes still gets its answer. A request with
//! `Content-Length: 0` is one the lane leaves to hyper, and one whose answer and record it does
//! not change, so it stands for "the same request, through hyper".

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::process::{Launch, Server};

const GIF_LEN: usize = 43;
const LANE: &str = "pixelgate_lane_answers_total";

/// Reads answers of the given body lengths (0: none) from `s`, as raw bytes each.
async fn answers(s: &mut TcpStream, bodies: &[usize]) -> Vec<Vec<u8>> {
    let mut buf = Vec::new();
    let mut out = Vec::new();
    for &body in bodies {
        let answer = loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let len = end + 4 + body;
                if buf.len() >= len {
                    break buf.drain(..len).collect::<Vec<u8>>();
                }
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk)).await.expect("answer in time").unwrap();
            assert!(n > 0, "connection closed after {} answers; {}", out.len(), String::from_utf8_lossy(&buf));
            buf.extend_from_slice(&chunk[..n]);
        };
        out.push(answer);
    }
    assert!(buf.is_empty(), "nothing more: {}", String::from_utf8_lossy(&buf));
    out
}

/// The answer without its `date` line.
fn undated(answer: &[u8]) -> String {
    String::from_utf8_lossy(answer).split("\r\n").filter(|line| !line.starts_with("date: ")).collect::<Vec<_>>().join("\r\n")
}

async fn connect(bin: &Server) -> TcpStream {
    let s = TcpStream::connect(bin.addr).await.unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// The server's records once there are `n`, and exactly `n` (the file sink writes them within
/// milliseconds).
async fn records(bin: &Server, n: usize) -> Vec<Value> {
    let records = crate::eventually!(Duration::from_secs(5), format!("{n} records"), {
        let records = bin.records();
        (records.len() >= n).then_some(records)
    });
    assert_eq!(records.len(), n, "{records:#?}");
    records
}

fn head(method: &str, event_id: &str, extra: &str) -> String {
    format!(
        "{method} /p.gif?pixel_id=77&event=Purchase&event_id={event_id}&evat_value=9.99&usat_em=a%40b.co&cd[x]=1 HTTP/1.1\r\nHost: px\r\n\
         User-Agent: Mozilla/5.0 lane\r\nReferer: https://shop.test/cart\r\nCookie: _fbp=fb.1.1.2\r\ncookie: _fbc=fb.1.2.abc\r\n\
         X-Forwarded-For: 198.51.100.7\r\n{extra}\r\n"
    )
}

#[tokio::test]
async fn a_lane_answer_and_record_are_what_hyper_gives_the_same_request() {
    let bin = Launch::new().args(["--trusted-proxies", "1"]).serve();
    for (i, method) in ["GET", "HEAD"].into_iter().enumerate() {
        let body = if method == "GET" { GIF_LEN } else { 0 };
        // A connection each: the second request hands the connection to hyper for good.
        let mut s = connect(&bin).await;
        s.write_all(head(method, &format!("{method}-lane"), "").as_bytes()).await.unwrap();
        s.write_all(head(method, &format!("{method}-hyper"), "Content-Length: 0\r\n").as_bytes()).await.unwrap();
        let got = answers(&mut s, &[body, body]).await;
        assert_eq!(bin.metric(LANE, &[]).await, (i + 1) as f64, "{method}: the lane answered the first request only");
        assert_eq!(undated(&got[0]), undated(&got[1]), "{method}");
        assert!(got[0].starts_with(b"HTTP/1.1 200 OK\r\n") && String::from_utf8_lossy(&got[0]).contains("\r\ndate: "), "{}", String::from_utf8_lossy(&got[0]));
    }
    for method in ["GET", "HEAD"] {
        assert_eq!(bin.metric("pixelgate_hits_total", &[("method", method)]).await, 2.0, "{method}");
    }
    let records = records(&bin, 4).await;
    let comparable = |id: &str| {
        let mut r = records.iter().find(|r| r["event_id"] == id).unwrap_or_else(|| panic!("{id} recorded")).clone();
        let o = r.as_object_mut().unwrap();
        o.remove("received_at");
        o.remove("event_id");
        r
    };
    for method in ["GET", "HEAD"] {
        let lane = comparable(&format!("{method}-lane"));
        assert_eq!(lane, comparable(&format!("{method}-hyper")), "{method}");
        assert_eq!((lane["ip"].as_str(), lane["user_agent"].as_str()), (Some("198.51.100.7"), Some("Mozilla/5.0 lane")));
        assert_eq!((lane["user"]["fbp"].as_str(), lane["user"]["fbc"].as_str()), (Some("fb.1.1.2"), Some("fb.1.2.abc")), "both cookie lines read");
        assert_eq!(lane["url"], "https://shop.test/cart", "the page, from the Referer");
    }
}

#[tokio::test]
async fn pipelined_reads_are_answered_in_order_across_the_hand_over_to_hyper() {
    let bin = Launch::new().serve();
    let mut s = connect(&bin).await;
    let pixel = |id: &str| format!("GET /tr?id=5&ev=Lead&eid={id} HTTP/1.1\r\nHost: px\r\nUser-Agent: ua\r\n\r\n");
    let burst = [pixel("p1"), pixel("p2"), "GET /healthz HTTP/1.1\r\nHost: px\r\n\r\n".into(), pixel("p3"), "HEAD /nowhere HTTP/1.1\r\n\r\n".into(), pixel("p4")].concat();
    s.write_all(burst.as_bytes()).await.unwrap();
    let got = answers(&mut s, &[GIF_LEN, GIF_LEN, 3, GIF_LEN, 0, GIF_LEN]).await;
    let status = |a: &Vec<u8>| String::from_utf8_lossy(a).lines().next().unwrap().to_owned();
    let statuses: Vec<String> = got.iter().map(status).collect();
    assert_eq!(statuses, ["HTTP/1.1 200 OK", "HTTP/1.1 200 OK", "HTTP/1.1 200 OK", "HTTP/1.1 200 OK", "HTTP/1.1 404 Not Found", "HTTP/1.1 200 OK"]);
    assert!(got[2].ends_with(b"ok\n"));
    // The hand-over keeps the connection: hyper answers what comes next, pixel reads included.
    s.write_all(pixel("p5").as_bytes()).await.unwrap();
    answers(&mut s, &[GIF_LEN]).await;
    assert_eq!(bin.metric(LANE, &[]).await, 2.0, "the lane answered p1 and p2, hyper the rest");
    // Hits are shaped by several intake tasks: their records are in no set order.
    let mut ids: Vec<String> = records(&bin, 5).await.iter().map(|r| r["event_id"].as_str().unwrap().to_owned()).collect();
    ids.sort();
    assert_eq!(ids, ["p1", "p2", "p3", "p4", "p5"]);
}

#[tokio::test]
async fn a_head_that_arrives_in_pieces_is_waited_for_and_a_bad_one_gets_hyper_s_400() {
    let bin = Launch::new().serve();
    let mut s = connect(&bin).await;
    let whole = "GET /p.gif?pixel_id=9&event=Lead&event_id=slow HTTP/1.1\r\nHost: px\r\nUser-Agent: ua\r\n\r\n";
    for piece in [&whole[..10], &whole[10..60], &whole[60..]] {
        s.write_all(piece.as_bytes()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    answers(&mut s, &[GIF_LEN]).await;
    assert_eq!(bin.metric(LANE, &[]).await, 1.0, "the lane waited for the whole head");
    s.write_all(b"GET /p.gif?pixel_id=9 HTTP/1.1\r\nBad Header\r\n\r\n").await.unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await.expect("closed").unwrap();
    assert!(rest.starts_with(b"HTTP/1.1 400 Bad Request\r\n"), "{}", String::from_utf8_lossy(&rest));
    let records = records(&bin, 1).await;
    assert_eq!(records[0]["event_id"], "slow");
}

#[tokio::test]
async fn a_client_that_half_closes_after_its_reads_gets_their_answers() {
    let bin = Launch::new().serve();
    let mut s = connect(&bin).await;
    s.write_all(b"GET /tr?id=3&ev=Lead&eid=h1 HTTP/1.1\r\n\r\nHEAD /tr?id=3&ev=Lead&eid=h2 HTTP/1.1\r\n\r\n").await.unwrap();
    s.shutdown().await.unwrap();
    let mut all = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut all)).await.expect("closed after the answers").unwrap();
    let text = String::from_utf8_lossy(&all);
    assert_eq!(text.matches("HTTP/1.1 200 OK\r\n").count(), 2, "{text}");
    assert!(all.ends_with(b"\r\n\r\n"), "the HEAD answer last, without a body");
    assert_eq!(bin.metric(LANE, &[]).await, 2.0);
    records(&bin, 2).await;
}
