//! CORS and allowed domains in a real browser (`docs/accounts.md#allowed-domains-and-cors`): pixel 4242
//! of an account allows `localhost`. Page A, on `http://localhost:<port>/`, may read the GIF of a
//! credentialed `fetch()` and send a JSON beacon (its preflight passes); page B, on
//! `http://127.0.0.1:<port>/`, gets no CORS headers, so the browser rejects both calls. The GET
//! still reached the server (a simple request has no preflight; the browser only hides the answer)
//! and is recorded with `domain_not_allowed` and forwarded nowhere; the POST never left the
//! browser, its preflight refused.
//!
//! Both pages and the pixel are on loopback, so Chromium's Local (formerly Private) Network Access
//! checks have nothing to stop: a loopback page may call a loopback server. No flag is needed for
//! it, and none is passed, so a CORS failure here is pixelgate's.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};

use crate::chromium::{Chromium, Dump};
use crate::common::fake_graph::FakeGraph;
use crate::common::process::{Launch, Server};
use crate::common::records::read_records;
use crate::pages::Page;

const PIXEL: &str = "4242";
const TOKEN: &str = "EAABrowserTestToken0123456789abcdefABCDEF";
const ADMIN_KEY: &str = "browser-admin-key-0123456789";
/// Virtual time each page gets; its two fetches take a few milliseconds of it.
const BUDGET: Duration = Duration::from_secs(8);

#[tokio::test(flavor = "multi_thread")]
async fn a_page_on_an_allowed_domain_reads_the_pixel_and_another_is_refused() {
    // First, so that a missing browser fails before anything else is started.
    let chromium = Chromium::find();
    eprintln!("browser: {}", chromium.version);

    let fake = FakeGraph::start();
    fake.set_token(PIXEL, TOKEN);
    let mut server = Launch::new().args(["--admin-key", ADMIN_KEY, "--graph-url", &fake.url(), "--capi-flush-interval", "100ms", "--log-level", "debug"]).serve();
    let api = reqwest::Client::builder().no_proxy().build().unwrap();
    let account = admin(&api, &server, "POST", "/v1/accounts", json!({"name": "Shop"})).await;
    let account_id = account["account_id"].as_str().unwrap_or_else(|| panic!("account_id in {account}")).to_owned();
    let body = json!({"account_id": account_id, "allowed_domains": ["localhost"], "destinations": {"meta": {"access_token": TOKEN}}});
    admin(&api, &server, "PUT", &format!("/v1/pixels/{PIXEL}"), body).await;

    let pixel = format!("http://{}", server.addr);
    let (page_a, page_b) = (Page::serve("a", &pixel), Page::serve("b", &pixel));
    let (origin_a, origin_b) = (format!("http://localhost:{}", page_a.port()), format!("http://127.0.0.1:{}", page_b.port()));
    let chromium = std::sync::Arc::new(chromium);
    let load = |origin: &str| {
        let (chromium, url) = (chromium.clone(), format!("{origin}/"));
        tokio::task::spawn_blocking(move || chromium.dump_dom(&url, BUDGET))
    };
    let (a, b) = tokio::join!(load(&origin_a), load(&origin_b));
    let (a, b) = (a.unwrap(), b.unwrap());
    let (seen_a, seen_b) = (a.json_in("pre", "out"), b.json_in("pre", "out"));
    eprintln!("page A ({:?}): {seen_a}\npage B ({:?}): {seen_b}", a.took, b.took);

    // What the browser let each page see.
    let problems: Vec<String> = [allowed_page(&seen_a, &origin_a, &a), refused_page(&seen_b, &origin_b, &b)].concat();
    if !problems.is_empty() {
        panic!("{}\n{}", problems.join("\n"), diagnose(&server, &[&origin_a, &origin_b], &[&a, &b]).await);
    }

    // Meta gets page A's two events. Then the server stops: shutdown flushes the raw records and
    // drains the forwarder, so had page B's GET been headed for Meta it would be there by now.
    fake.wait_for_events_async(2, Duration::from_secs(10)).await;
    let status = server.terminate();
    assert!(status.success(), "pixelgate exited {status}: {}", server.logs());

    let records = read_records(&server.data);
    let by_id = |id: &str| -> &Value {
        let found: Vec<&Value> = records.iter().filter(|r| r["event_id"] == id).collect();
        assert_eq!(found.len(), 1, "one record with event_id {id}: {records:#?}");
        found[0]
    };
    let flags = |r: &Value| -> Vec<String> { r["flags"].as_array().unwrap_or_else(|| panic!("flags in {r}")).iter().map(|f| f.as_str().unwrap().to_owned()).collect() };
    for (id, event) in [("a-get", "Lead"), ("a-post", "Purchase")] {
        let r = by_id(id);
        assert_eq!(r["pixel_id"], PIXEL, "{r}");
        assert_eq!(r["event"], event, "{r}");
        assert_eq!(r["account_id"], account_id.as_str(), "page A's hit carries the pixel's account: {r}");
        assert!(!flags(r).contains(&"domain_not_allowed".to_owned()), "page A is on an allowed domain: {r}");
        assert!(r["url"].as_str().is_some_and(|p| p.starts_with(&origin_a)), "page A's page (its Referer) is the record's url: {r}");
    }
    let b_get = by_id("b-get");
    assert_eq!(b_get["event"], "Lead", "{b_get}");
    assert!(flags(b_get).contains(&"domain_not_allowed".to_owned()), "page B (host 127.0.0.1) is not allowed: {b_get}");
    assert!(b_get["url"].as_str().is_some_and(|p| p.starts_with(&origin_b)), "page B's page (its Referer) is the record's url: {b_get}");
    assert_eq!(b_get["account_id"], account_id.as_str(), "a refused hit is still the pixel's account's: {b_get}");
    // The refused preflight kept page B's beacon in the browser: the server never saw it, and a
    // preflight is not a hit, so these three are all the records there are.
    let ids: BTreeSet<&str> = records.iter().map(|r| r["event_id"].as_str().unwrap_or("<none>")).collect();
    assert_eq!(ids, BTreeSet::from(["a-get", "a-post", "b-get"]), "page B's POST never reached pixelgate, and nothing else was recorded: {records:#?}");

    let sent: BTreeSet<String> = fake.events().iter().map(|e| format!("{}/{}", e.pixel_id, e.event_id().unwrap_or("<none>"))).collect();
    assert_eq!(sent, BTreeSet::from(["4242/a-get".to_owned(), "4242/a-post".to_owned()]), "Meta gets page A's events and none of page B's: {:#?}", fake.requests());
    fake.assert_no_violations();
}

/// What must be true of page A's results: both calls resolved with the answer readable, and the
/// browser complained of nothing.
fn allowed_page(seen: &Value, origin: &str, dump: &Dump) -> Vec<String> {
    let mut problems = common_checks(seen, origin);
    if !dump.console().is_empty() {
        problems.push(format!("page A ({origin}, allowed): the console should be silent: {:#?}", dump.console()));
    }
    let get = &seen["get"];
    if !(get["ok"] == true && get["status"] == 200 && get["type"] == "cors" && get["content_type"] == "image/gif" && get["bytes"] == 43) {
        problems.push(format!("page A ({origin}, allowed): the credentialed CORS GET should resolve with the 43-byte image/gif, readable: {get}"));
    }
    let post = &seen["post"];
    if !(post["ok"] == true && post["status"] == 204 && post["type"] == "cors") {
        problems.push(format!("page A ({origin}, allowed): the JSON beacon should pass its preflight and resolve with 204: {post}"));
    }
    problems
}

/// What must be true of page B's results: the browser rejected both calls, and for CORS (the
/// page only sees `TypeError: Failed to fetch`; the console says why): the GET's answer had no
/// `Access-Control-Allow-Origin`, and the POST's preflight failed for the same reason, so the POST
/// itself was never sent. Not Local Network Access, nor anything else.
fn refused_page(seen: &Value, origin: &str, dump: &Dump) -> Vec<String> {
    let mut problems = common_checks(seen, origin);
    let console = dump.console();
    let no_acao = "No 'Access-Control-Allow-Origin' header is present on the requested resource";
    let reasons = [
        ("get", format!("event_id=b-get' from origin '{origin}' has been blocked by CORS policy: {no_acao}")),
        (
            "post",
            format!("/tr?pixel_id={PIXEL}' from origin '{origin}' has been blocked by CORS policy: Response to preflight request doesn't pass access control check: {no_acao}"),
        ),
    ];
    for (call, reason) in reasons {
        if seen[call]["ok"] != false {
            problems.push(format!("page B ({origin}, not allowed): the browser should reject the {call} (no Access-Control-Allow-Origin): {}", seen[call]));
        }
        if !console.iter().any(|m| m.contains(&reason)) {
            problems.push(format!("page B ({origin}, not allowed): the console should say the {call} was refused for CORS ({reason:?}): {console:#?}"));
        }
    }
    if console.len() != 2 {
        problems.push(format!("page B ({origin}, not allowed): two console messages, the two CORS refusals: {console:#?}"));
    }
    problems
}

fn common_checks(seen: &Value, origin: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if seen["done"] != true || seen.get("fatal").is_some() || seen["origin"] != origin {
        problems.push(format!("the page at {origin} did not run as written: {seen}"));
    }
    problems
}

/// `method path` on the `/v1/` API with the admin key; panics unless 2xx; the JSON answer.
async fn admin(api: &reqwest::Client, server: &Server, method: &str, path: &str, body: Value) -> Value {
    let r = api.request(method.parse().unwrap(), server.url(path)).bearer_auth(ADMIN_KEY).json(&body).send().await.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let status = r.status();
    let text = r.text().await.unwrap();
    assert!(status.is_success(), "{method} {path}: {status} {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {path}: {e}: {text}"))
}

/// For a failure message: what pixelgate answers each origin's preflight and credentialed GET (the
/// headers a browser decides on), and what the browsers printed.
async fn diagnose(server: &Server, origins: &[&str], dumps: &[&Dump]) -> String {
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut out = String::from("pixelgate's answers (from the test, not the browser):");
    for origin in origins {
        let preflight = http
            .request(reqwest::Method::OPTIONS, server.url(&format!("/tr?pixel_id={PIXEL}")))
            .header("Origin", *origin)
            .header("Access-Control-Request-Method", "POST")
            .header("Access-Control-Request-Headers", "content-type");
        let get = http.get(server.url(&format!("/p.gif?pixel_id={PIXEL}&event=Diagnose"))).header("Origin", *origin).header("Referer", format!("{origin}/"));
        for (what, req) in [("OPTIONS /tr (preflight)", preflight), ("GET /p.gif", get)] {
            match req.send().await {
                Ok(r) => out += &format!("\n  {what} from {origin}: {} {:?}", r.status(), r.headers()),
                Err(e) => out += &format!("\n  {what} from {origin}: {e}"),
            }
        }
    }
    for d in dumps {
        out += &format!("\n{d}");
    }
    out
}
