//! Loopback networking for tests: free ports, a bare HTTP/1.0 GET that needs no runtime, and a
//! pixel hit.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

/// A free loopback port (bound, then released), for a test that must name an address up front.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A blocking HTTP/1.0 GET: status and body, `None` if the server cannot be reached or does not
/// answer within 5 s.
pub fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut reader = BufReader::new(s);
    let mut status_line = String::new();
    reader.read_line(&mut status_line).ok()?;
    let status = status_line.split_whitespace().nth(1)?.parse().ok()?;
    let mut rest = String::new();
    reader.read_to_string(&mut rest).ok()?;
    let body = rest.split_once("\r\n\r\n").map_or(String::new(), |(_, b)| b.to_owned());
    Some((status, body))
}

/// GET `url` with `client`; panics unless the pixel GIF (43 bytes) comes back with status 200.
pub async fn get_gif(client: &reqwest::Client, url: &str) {
    let r = client.get(url).send().await.unwrap_or_else(|e| panic!("{url}: {e}"));
    assert_eq!(r.status(), 200, "{url}");
    assert_eq!(r.bytes().await.unwrap().len(), 43, "{url}");
}
