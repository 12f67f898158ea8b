//! Every file in `events/` through the Lambda front door, with the answers and records
//! `events/README.md` documents.

use std::time::Duration;

use serde_json::Value;

use crate::common::fake_graph::FakeGraph;
use crate::common::lambda_emulator::{Emulator, Invocation};
use crate::common::process::tokens;
use crate::common::records::read_records_so_far;
use crate::helpers::{event, events_dir, pixel_event, spawn, spawn_without_data_dir};

const ADMIN_KEY: &str = "fake-admin-key-for-tests-only-0001";
const GIF_BASE64: &str = "R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAICRAEAOw==";
/// SHA-256 of `jane.doe@example.com`.
const JANE_EM: &str = "86e0b9e56c17cc4d12387e1949b85053fbe73bc3ce5a1188713a9d300cc6133d";

/// What each event file must get back, as `lambda_http` posts it to the Runtime API.
fn expect_answer(file: &str, inv: &Invocation) {
    let r = inv.response.as_ref().unwrap_or_else(|| panic!("{file}: no response; error {:?}", inv.error));
    // REST API and load balancer answers may carry their headers as lists.
    let header = |name: &str| r["headers"][name].as_str().or_else(|| r["multiValueHeaders"][name][0].as_str()).map(str::to_owned);
    match file {
        "gtm-custom-image.json" | "meta-pixel-tr.json" | "no-query.json" | "rest-api-pixel.json" | "alb-pixel.json" | "function-url-pixel.json" => {
            assert_eq!(r["statusCode"], 200, "{file}: {r}");
            assert_eq!(r["isBase64Encoded"], true, "{file}: {r}");
            assert_eq!(r["body"], GIF_BASE64, "{file}: {r}");
            for (name, value) in [
                ("content-type", "image/gif"),
                ("content-length", "43"),
                ("cache-control", "no-cache, no-store, must-revalidate, max-age=0"),
                ("pragma", "no-cache"),
                ("expires", "0"),
                ("cross-origin-resource-policy", "cross-origin"),
                ("x-content-type-options", "nosniff"),
            ] {
                assert_eq!(header(name).as_deref(), Some(value), "{file}: header {name}: {r}");
            }
        }
        "beacon-post.json" | "admin-token-put.json" => {
            assert_eq!(r["statusCode"], 204, "{file}: {r}");
            assert!(r["body"].as_str().is_none_or(str::is_empty), "{file}: {r}");
        }
        "eventbridge-profile-viewed.json" => assert_eq!(r, &serde_json::json!({"accepted": 1}), "{file}"),
        // The second message's body is cut short: not JSON, so that message (and only it) is
        // handed back to SQS.
        "sqs-batch.json" => assert_eq!(r, &serde_json::json!({"batchItemFailures": [{"itemIdentifier": "059f36b4-87a3-44ab-83d2-661975073102"}]}), "{file}"),
        other => panic!("events/{other} has no expected answer in tests/lambda/events.rs: add one"),
    }
}

/// The files in `events/`, sorted.
fn event_files() -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(events_dir()).unwrap().filter_map(|e| e.ok()?.file_name().into_string().ok()).filter(|n| n.ends_with(".json")).collect();
    files.sort();
    files
}

#[test]
fn every_event_file_gets_its_documented_answer_and_record() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // The admin event stores a token for the pixel the later events use, so they go on to the
    // Conversions API: the fake one.
    let graph = FakeGraph::start();
    graph.set_token("1234567890", &admin_event_token());
    let emulator = Emulator::start(Duration::from_secs(10));
    let mut function =
        spawn(&emulator, &data, &[("PIXELGATE_ADMIN_KEY", ADMIN_KEY.into()), ("PIXELGATE_GRAPH_URL", graph.url()), ("PIXELGATE_EVENT_NAME_MAP", "ProfileViewed=PageView".into())]);
    emulator.wait_init(Duration::from_secs(20), || function.logs());

    let extensions = emulator.extensions();
    assert_eq!(extensions.len(), 1, "{extensions:?}");
    assert_eq!(extensions[0].name, "pixelgate-drain");
    assert_eq!(extensions[0].events, ["INVOKE"], "an internal extension may register for INVOKE only");

    let files = event_files();
    assert_eq!(
        files,
        [
            "admin-token-put.json",
            "alb-pixel.json",
            "beacon-post.json",
            "eventbridge-profile-viewed.json",
            "function-url-pixel.json",
            "gtm-custom-image.json",
            "meta-pixel-tr.json",
            "no-query.json",
            "rest-api-pixel.json",
            "sqs-batch.json"
        ]
    );
    for file in &files {
        let inv = emulator.invoke(event(file));
        assert!(!inv.timed_out, "{file}: invocation timed out: {inv:?}\n{}", function.logs());
        expect_answer(file, &inv);
        assert!(inv.ended_at.is_some() && inv.extension_next("pixelgate-drain").is_some(), "{file}: {inv:?}");
    }
    // The nine events after the admin PUT (six pixel hits whose pixel has a token, the
    // EventBridge event, two SQS messages) reached the Conversions API during their own
    // invocations (the process is frozen in between, so not later).
    assert_eq!(graph.events().len(), 9, "{:?}", graph.requests());
    let (status, _) = function.terminate();
    assert!(status.success(), "exit {status}: {}", function.logs());
    assert!(emulator.violations().is_empty(), "{:?}", emulator.violations());
    assert!(emulator.errors().is_empty(), "{:?}", emulator.errors());

    // The records: client IP from requestContext.http.sourceIp (X-Forwarded-For is API
    // Gateway's own hop), personal data hashed, ids kept or generated.
    let records = read_records_so_far(&data);
    assert_eq!(records.len(), 10, "one record per pixel event and per event taken: {records:#?}");
    let by_event = |id: &str| records.iter().find(|r| r["event_id"] == id).unwrap_or_else(|| panic!("no record {id}: {records:#?}"));
    let gtm = by_event("order-100234");
    assert_eq!(gtm["ip"], "203.0.113.42");
    assert_eq!(gtm["pixel_id"], "1234567890");
    assert_eq!(gtm["event"], "Purchase");
    assert_eq!(gtm["user"]["em"], JANE_EM);
    assert!(gtm["user"]["fbp"].as_str().is_some_and(|v| v.starts_with("fb.")), "{gtm}");
    let meta = records.iter().find(|r| r["ip"] == "2001:db8:85a3::8a2e:370:7334").expect("the /tr record");
    assert_eq!(meta["event"], "PageView");
    assert_eq!(meta["user"]["em"], JANE_EM);
    assert!(meta["user"]["fbc"].as_str().is_some_and(|v| v.starts_with("fb.1.")), "fbc built from fbclid: {meta}");
    let beacon = by_event("atc-7f3e2d1c");
    assert_eq!(beacon["ip"], "203.0.113.42");
    assert_eq!(beacon["event"], "AddToCart");
    let bare = records.iter().find(|r| r["ip"] == "198.51.100.7").expect("the bare hit's record");
    let flags: Vec<&str> = bare["flags"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(flags.contains(&"missing_pixel_id") && flags.contains(&"missing_event"), "{bare}");
    assert_eq!(bare["event_id"].as_str().unwrap().len(), 36, "a generated UUID: {bare}");
    // Every HTTP payload format: the client address each front reports, the parameters as sent.
    for (id, ip, event) in [("rest-7001", "203.0.113.50", "ViewContent"), ("alb-7002", "203.0.113.60", "AddToCart"), ("furl-7003", "203.0.113.80", "Lead")] {
        let r = by_event(id);
        assert_eq!((&r["source"], &r["ip"], &r["event"], &r["user"]["em"]), (&"pixel".into(), &ip.into(), &event.into(), &JANE_EM.into()), "{r}");
        assert_eq!(r["flags"], serde_json::json!([]), "{r}");
    }
    assert_eq!(by_event("alb-7002")["url"], "https://shop.example.com/cart");
    assert_eq!(by_event("rest-7001")["url"], "https://shop.example.com/product/42", "the Referer");
    // EventBridge: detail as the event, its detail-type mapped to the name; SQS: each good message.
    let eb = by_event("eb-7004");
    assert_eq!((&eb["source"], &eb["event"], &eb["ip"], &eb["attrs"]["profile"]), (&"eventbridge".into(), &"PageView".into(), &"203.0.113.70".into(), &"jane".into()), "{eb}");
    for id in ["sqs-7005", "sqs-7006"] {
        let r = by_event(id);
        assert_eq!((&r["source"], &r["ip"]), (&"sqs".into(), &"198.51.100.90".into()), "{r}");
    }
    // Records from every input have the same fields; `source` tells them apart.
    let fields = |r: &Value| r.as_object().unwrap().keys().cloned().collect::<Vec<String>>();
    assert!(records.iter().all(|r| fields(r) == fields(&records[0])), "{records:#?}");
    let mut sources: Vec<&str> = records.iter().map(|r| r["source"].as_str().unwrap()).collect();
    sources.sort_unstable();
    sources.dedup();
    assert_eq!(sources, ["eventbridge", "pixel", "sqs"]);
    let text = serde_json::to_string(&records).unwrap();
    assert!(!text.contains("jane.doe@example.com") && !text.contains("jane.doe%40example.com"), "plaintext e-mail in a record");

    // The admin PUT stored the token where the tokens CLI finds it, and the token is in no log.
    let status = tokens(&data, &["status", "1234567890"], "", &[]).json();
    assert_eq!((&status["set"], &status["status"]), (&Value::Bool(true), &Value::from("active")), "{status}");
    assert!(!function.logs().contains(&admin_event_token()), "the access token reached the log");

    // Each drain finished its invocation's Conversions API call: the three pixel events after
    // the admin PUT, each once, with the record's event id.
    graph.assert_no_violations();
    let mut sent: Vec<String> = graph.events().iter().filter_map(|e| e.event_id().map(str::to_owned)).collect();
    sent.sort();
    let mut want: Vec<String> = ["order-100234", "atc-7f3e2d1c", "rest-7001", "alb-7002", "furl-7003", "eb-7004", "sqs-7005", "sqs-7006"].iter().map(|s| s.to_string()).collect();
    want.push(meta["event_id"].as_str().unwrap().to_owned());
    want.sort();
    assert_eq!(sent, want);
}

/// The access token in `events/admin-token-put.json`.
fn admin_event_token() -> String {
    let body: Value = serde_json::from_str(event("admin-token-put.json")["body"].as_str().unwrap()).unwrap();
    body["access_token"].as_str().unwrap().to_owned()
}

#[test]
fn the_admin_event_is_refused_with_another_key_and_absent_without_one() {
    for (key, want) in [(Some("another-admin-key-0000000000"), 401), (None, 404)] {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let emulator = Emulator::start(Duration::from_secs(10));
        let graph = FakeGraph::start();
        let mut env = vec![("PIXELGATE_GRAPH_URL", graph.url())];
        env.extend(key.map(|k| ("PIXELGATE_ADMIN_KEY", k.to_owned())));
        let mut function = spawn(&emulator, &data, &env);
        emulator.wait_init(Duration::from_secs(20), || function.logs());
        let inv = emulator.invoke(event("admin-token-put.json"));
        let r = inv.response.expect("an answer");
        assert_eq!(r["statusCode"], want, "{r}");
        assert_eq!(r["headers"]["content-type"], "application/json", "{r}");
        assert!(serde_json::from_str::<Value>(r["body"].as_str().unwrap()).unwrap()["error"].is_string(), "{r}");
        assert!(function.terminate().0.success(), "{}", function.logs());
        let status = tokens(&data, &["status", "1234567890"], "", &[]).json();
        assert_eq!(status["set"], false, "{status}");
    }
}

/// Behind CloudFront, API Gateway sees CloudFront's address (`sourceIp`) and appends it to
/// `X-Forwarded-For` after the client's; with `--trusted-proxies 1` the client is the record's
/// IP, without it the address API Gateway saw.
#[test]
fn trusted_proxies_count_the_proxies_in_front_of_api_gateway() {
    for (trusted, want) in [("1", "203.0.113.99"), ("0", "198.51.100.20")] {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let graph = FakeGraph::start();
        let emulator = Emulator::start(Duration::from_secs(10));
        let mut function = spawn(&emulator, &data, &[("PIXELGATE_TRUSTED_PROXIES", trusted.into()), ("PIXELGATE_GRAPH_URL", graph.url())]);
        emulator.wait_init(Duration::from_secs(20), || function.logs());
        let mut e = event("gtm-custom-image.json");
        e["requestContext"]["http"]["sourceIp"] = "198.51.100.20".into();
        e["headers"]["x-forwarded-for"] = "203.0.113.99, 198.51.100.20".into();
        assert_eq!(emulator.invoke(e).response.unwrap()["statusCode"], 200);
        assert!(function.terminate().0.success(), "{}", function.logs());
        let records = read_records_so_far(&data);
        assert_eq!(records.len(), 1);
        assert_eq!(records[0]["ip"], want, "--trusted-proxies {trusted}: {}", records[0]);
        assert!(records[0]["flags"].as_array().unwrap().iter().all(|f| f != "bad_forwarded_for"), "{}", records[0]);
    }
}

/// Without `PIXELGATE_DATA_DIR`, Lambda's only writable place holds the records
/// (`docs/configuration.md`).
#[test]
fn the_data_dir_defaults_to_tmp_under_lambda() {
    let emulator = Emulator::start(Duration::from_secs(10));
    let graph = FakeGraph::start();
    let mut function = spawn_without_data_dir(&emulator, &[("PIXELGATE_GRAPH_URL", graph.url())]);
    emulator.wait_init(Duration::from_secs(20), || function.logs());
    let id = format!("tmp-default-{}-{}", std::process::id(), std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos());
    let inv = emulator.invoke(pixel_event("1234567890", &id));
    assert_eq!(inv.response.unwrap()["statusCode"], 200);
    assert!(function.terminate().0.success(), "{}", function.logs());
    let records = read_records_so_far(std::path::Path::new("/tmp/pixelgate"));
    assert_eq!(records.iter().filter(|r| r["event_id"] == id.as_str()).count(), 1, "no record {id} under /tmp/pixelgate/raw");
}
