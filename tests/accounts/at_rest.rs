//! Secrets at rest (`docs/accounts.md#secrets-at-rest`): keys stored only as hashes, tokens sealed under the secrets key.
//! After keys are made (API and CLI) and tokens set every way there is (a pixel's destinations on
//! `PUT` and `PATCH`, `PUT …/token`, `pixelgate tokens set`) and accounts' webhook secrets (API
//! and CLI), the store read back raw — every
//! SQLite row, a DynamoDB Scan — and every byte of every file under the data dir hold no key, no
//! token and no secrets key. A plaintext token Part I wrote is still used, and sealed when it is
//! next written.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine;
use serde_json::json;

use crate::common::fake_graph::FakeGraph;
use crate::helpers::{ADMIN_KEY, Api, SECRETS_KEY, Site, attr_s, contains_bytes, dynamodb, files_with_bytes, get_item, item_text, scan, sqlite_rows, sqlite_token_column};

/// The tokens the tests set; `EAA…` like Meta's.
const TOKENS: [&str; 6] = [
    "EAAatrestPutCreate0x1111111111111111",
    "EAAatrestPatchDest0x2222222222222222",
    "EAAatrestPutUpdate0x3333333333333333",
    "EAAatrestTokenPutUnowned0x44444444444",
    "EAAatrestTokenPutOwned0x555555555555",
    "EAAatrestCliSet0x66666666666666666666",
];

/// Webhook secrets, set through the API and the CLI.
const WEBHOOK_SECRETS: [&str; 2] = ["whsec-atrest-api-0x1234567890abcdef", "whsec-atrest-cli-0xfedcba0987654321"];

/// Makes keys and sets tokens and webhook secrets every way there is; every secret that must not be stored in the
/// clear (the keys, the tokens, the bootstrap key).
async fn populate(site: &Site, api: &Api) -> Vec<String> {
    api.create_account("acc_a").await;
    // A token given when the pixel is registered, when its destinations are patched, when it is
    // PUT again with them, through PUT …/token on an unregistered and a registered pixel, and by
    // the tokens CLI.
    api.ok("PUT", "/v1/pixels/301", Some(json!({"account_id": "acc_a", "destinations": {"meta": {"access_token": TOKENS[0]}}}))).await;
    api.register("302", "acc_a").await;
    api.ok("PATCH", "/v1/pixels/302", Some(json!({"destinations": {"meta": {"access_token": TOKENS[1]}}}))).await;
    api.register("303", "acc_a").await;
    api.ok("PUT", "/v1/pixels/303", Some(json!({"account_id": "acc_a", "destinations": {"meta": {"access_token": TOKENS[2]}}}))).await;
    api.ok("PUT", "/v1/pixels/304/token", Some(json!({"access_token": TOKENS[3]}))).await;
    api.register("305", "acc_a").await;
    api.ok("PUT", "/v1/pixels/305/token", Some(json!({"access_token": TOKENS[4]}))).await;
    let run = site.run(&["tokens", "set", "306"], &format!("{}\n", TOKENS[5]));
    run.assert_hides(TOKENS[5]);
    assert_eq!(run.json()["set"], true);

    // Webhook secrets: through the API, and through the CLI (from standard input).
    // A public address, so that no name is resolved.
    let hook = "https://93.184.215.14/pixelgate";
    let a = api.ok("PATCH", "/v1/accounts/acc_a", Some(json!({"webhook_url": hook, "webhook_secret": WEBHOOK_SECRETS[0]}))).await;
    assert_eq!((&a["webhook_url"], &a["webhook_secret"]), (&json!(hook), &json!({"set": true})), "{a}");
    api.create_account("acc_w").await;
    let run = site.run(&["accounts", "update", "acc_w"], &json!({"webhook_url": hook, "webhook_secret": WEBHOOK_SECRETS[1]}).to_string());
    run.assert_hides(WEBHOOK_SECRETS[1]);
    assert_eq!(run.json()["webhook_secret"], json!({"set": true}));

    let mut secrets: Vec<String> = TOKENS.iter().chain(WEBHOOK_SECRETS.iter()).map(|t| t.to_string()).collect();
    secrets.push(ADMIN_KEY.to_owned());
    for body in [json!({"role": "admin"}), json!({"role": "admin", "account_id": "acc_a"}), json!({"role": "manager", "account_id": "acc_a", "pixels": ["301"]})] {
        let (_, key) = api.create_key(body).await;
        // Used, so its last use is kept (and written at shutdown).
        assert_eq!(api.send(Some(&key), "GET", "/v1/pixels/301", None).await.status, 200);
        secrets.push(key);
    }
    let cli_key = site.run(&["keys", "create"], r#"{"role":"viewer","account_id":"acc_a"}"#).json()["key"].as_str().unwrap().to_owned();
    assert_eq!(api.send(Some(&cli_key), "GET", "/v1/pixels/301", None).await.status, 200);
    secrets.push(cli_key);

    // Every token is set as far as the API shows, and none is shown.
    for pixel in ["301", "302", "303", "304", "305", "306"] {
        let a = api.admin("GET", &format!("/v1/pixels/{pixel}/token"), None).await;
        assert_eq!((a.status, &a.json()["set"]), (200, &json!(true)), "{pixel}: {}", a.text);
        for s in &secrets {
            assert!(!a.text.contains(s.as_str()), "{pixel}: a secret in {}", a.text);
        }
    }
    for pixel in ["301", "302", "303", "305"] {
        let a = api.admin("GET", &format!("/v1/pixels/{pixel}"), None).await;
        assert_eq!(a.json()["destinations"]["meta"]["set"], true, "{pixel}: {}", a.text);
        assert!(!TOKENS.iter().any(|t| a.text.contains(t)), "{}", a.text);
    }
    secrets
}

/// Panics if any of `needles` is in `what`, naming `place`.
fn assert_absent(place: &str, what: &[u8], needles: &[&[u8]]) {
    for n in needles {
        assert!(!contains_bytes(what, n), "{place} holds {:?} in the clear", String::from_utf8_lossy(&n[..n.len().min(12)]));
    }
}

/// The secrets key as base64 text and as its raw 32 bytes.
fn key_forms(text: &str) -> Vec<Vec<u8>> {
    let raw = base64::engine::general_purpose::STANDARD.decode(text.trim()).expect("the secrets key is base64");
    assert_eq!(raw.len(), 32);
    vec![text.trim().as_bytes().to_vec(), raw]
}

/// Every file under the data dir (and the server's log): no secret; the secrets key only in
/// `secrets_file`, if there is one.
fn check_files(api: &Api, secrets: &[String], secrets_key: &[Vec<u8>], secrets_file: Option<&std::path::Path>) {
    let needles: Vec<&[u8]> = secrets.iter().map(|s| s.as_bytes()).chain([b"pgk_".as_slice()]).collect();
    let files = files_with_bytes(&api.server.data);
    assert!(files.iter().any(|(p, _)| p.to_string_lossy().contains("raw")), "a hit was recorded: {files:?}");
    for (path, bytes) in &files {
        assert_absent(&path.display().to_string(), bytes, &needles);
        if Some(path.as_path()) != secrets_file {
            assert_absent(&path.display().to_string(), bytes, &secrets_key.iter().map(Vec::as_slice).collect::<Vec<_>>());
        }
    }
    let logs = api.server.logs();
    assert_absent("the server's log", logs.as_bytes(), &needles);
    assert_absent("the server's log", logs.as_bytes(), &secrets_key.iter().map(Vec::as_slice).collect::<Vec<_>>());
}

#[tokio::test]
async fn the_embedded_store_holds_no_key_token_or_secrets_key_in_the_clear() {
    let site = Site::sqlite();
    let mut api = site.serve(&["--log-level", "debug"]);
    let secrets = populate(&site, &api).await;
    api.server.hit("/tr?id=301&ev=Purchase&dl=https%3A%2F%2Fshop.example%2F").await;

    // Without --secrets-key, the key file: owner-only.
    let key_file = site.data().join("secrets.key");
    let mode = std::fs::metadata(&key_file).expect("secrets.key was created").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "secrets.key is owner-only");
    let secrets_key = key_forms(&std::fs::read_to_string(&key_file).unwrap());

    let check_rows = || {
        let rows = sqlite_rows(&site.data());
        let text = rows.join("\n");
        let needles: Vec<&[u8]> = secrets.iter().map(|s| s.as_bytes()).chain([b"pgk_".as_slice()]).chain(secrets_key.iter().map(Vec::as_slice)).collect();
        assert_absent("a SQLite row", text.as_bytes(), &needles);
        let tokens: Vec<&String> = rows.iter().filter(|r| r.starts_with("tokens:")).collect();
        assert_eq!(tokens.len(), 6, "{tokens:#?}");
        for pixel in ["301", "302", "303", "304", "305", "306"] {
            let stored = sqlite_token_column(&site.data(), pixel).unwrap_or_else(|| panic!("{pixel}: {tokens:#?}"));
            assert!(stored.starts_with("pgs1:"), "{pixel}: sealed, not {stored:.12}…");
        }
        // Keys: only digests.
        assert!(rows.iter().any(|r| r.contains("keyhash#")), "{rows:#?}");
    };
    check_rows();
    // At rest: after a clean stop (last-use times written, the WAL checkpointed).
    assert!(api.server.terminate().success());
    check_rows();
    check_files(&api, &secrets, &secrets_key, Some(&key_file));
}

#[tokio::test]
async fn the_dynamodb_table_holds_no_key_token_or_secrets_key_in_the_clear() {
    let site = Site::dynamodb("at-rest");
    let table = site.table.clone().unwrap();
    let mut api = site.serve(&["--log-level", "debug"]);
    let mut secrets = populate(&site, &api).await;
    api.server.hit("/tr?id=301&ev=Purchase&dl=https%3A%2F%2Fshop.example%2F").await;

    // A token Part I wrote in plaintext is read, and sealed when written again.
    const PLAIN: &str = "EAAatrestPartOnePlaintextDynamo0x777";
    dynamodb()
        .await
        .put_item()
        .table_name(&table)
        .item("pixel_id", AttributeValue::S("307".into()))
        .item("access_token", AttributeValue::S(PLAIN.into()))
        .item("status", AttributeValue::S("active".into()))
        .item("updated_at", AttributeValue::N("1700000000000".into()))
        .item("version", AttributeValue::N("1".into()))
        .send()
        .await
        .unwrap();
    let st = api.ok("GET", "/v1/pixels/307/token", None).await;
    assert_eq!((&st["set"], &st["status"]), (&json!(true), &json!("active")), "{st}");
    assert_eq!(site.run(&["tokens", "status", "307"], "").json()["set"], true);
    api.ok("PUT", "/v1/pixels/307/token", Some(json!({"access_token": PLAIN}))).await;
    let sealed = get_item(&table, "307").await.unwrap();
    assert!(attr_s(&sealed, "access_token").starts_with("pgs1:"), "{}", item_text(&sealed));
    secrets.push(PLAIN.to_owned());

    let secrets_key = key_forms(SECRETS_KEY);
    let check_items = |items: Vec<std::collections::HashMap<String, AttributeValue>>| {
        let text: Vec<String> = items.iter().map(item_text).collect();
        let joined = text.join("\n");
        let needles: Vec<&[u8]> = secrets.iter().map(|s| s.as_bytes()).chain([b"pgk_".as_slice()]).chain(secrets_key.iter().map(Vec::as_slice)).collect();
        assert_absent("a DynamoDB item", joined.as_bytes(), &needles);
        let tokens: Vec<_> = items.iter().filter(|i| i.contains_key("access_token")).collect();
        assert_eq!(tokens.len(), 7, "{text:#?}");
        for t in tokens {
            assert!(attr_s(t, "access_token").starts_with("pgs1:"), "sealed: {}", item_text(t));
        }
        assert!(text.iter().any(|t| t.contains("keyhash#")), "{text:#?}");
    };
    check_items(scan(&table).await);
    assert!(api.server.terminate().success());
    check_items(scan(&table).await);
    check_files(&api, &secrets, &secrets_key, None);
    assert!(!api.server.data.join("secrets.key").exists(), "with --secrets-key no key file is made");
}

#[tokio::test]
async fn a_plaintext_token_from_part_one_is_still_used_and_sealed_when_set_again() {
    const PIXEL: &str = "7001";
    const PLAIN: &str = "EAAatrestPartOnePlaintextSqlite0x888";
    const NEXT: &str = "EAAatrestPartOneReplacedSqlite0x999";
    let site = Site::sqlite();
    // The store as Part I left it: its tokens table, the token in plaintext.
    std::fs::create_dir_all(site.data()).unwrap();
    {
        let conn = rusqlite::Connection::open(site.data().join("tokens.sqlite3")).unwrap();
        conn.execute_batch(
            "CREATE TABLE tokens (pixel_id TEXT PRIMARY KEY NOT NULL, access_token TEXT NOT NULL, status TEXT NOT NULL,
                                  updated_at_ms INTEGER NOT NULL, version INTEGER NOT NULL)",
        )
        .unwrap();
        conn.execute("INSERT INTO tokens VALUES (?1, ?2, 'active', 1700000000000, 1)", [PIXEL, PLAIN]).unwrap();
    }
    let fake = FakeGraph::start();
    fake.set_token(PIXEL, PLAIN);
    fake.add_token(PIXEL, NEXT);
    let mut api = site.serve(&["--graph-url", &fake.url(), "--capi-flush-interval", "100ms"]);

    // Shown as set, by the API and the CLI, and used.
    let st = api.ok("GET", &format!("/v1/pixels/{PIXEL}/token"), None).await;
    assert_eq!((&st["set"], &st["status"]), (&json!(true), &json!("active")), "{st}");
    assert_eq!(site.run(&["tokens", "status", PIXEL], "").json()["set"], true);
    api.server.hit(&format!("/tr?id={PIXEL}&ev=Purchase&eid=plain-1&dl=https%3A%2F%2Fshop.example%2Fp")).await;
    let events = fake.wait_for_events_async(1, Duration::from_secs(10)).await;
    assert_eq!(events[0].event_id(), Some("plain-1"));
    assert_eq!(sqlite_token_column(&site.data(), PIXEL).as_deref(), Some(PLAIN), "read, not rewritten");

    // Registered to an account, with the token given again: sealed, and still used.
    api.create_account("acc_a").await;
    api.ok("PUT", &format!("/v1/pixels/{PIXEL}"), Some(json!({"account_id": "acc_a", "destinations": {"meta": {"access_token": PLAIN}}}))).await;
    let stored = sqlite_token_column(&site.data(), PIXEL).unwrap();
    assert!(stored.starts_with("pgs1:") && !stored.contains(PLAIN), "sealed: {stored:.12}…");
    api.server.hit(&format!("/tr?id={PIXEL}&ev=Purchase&eid=plain-2&dl=https%3A%2F%2Fshop.example%2Fp")).await;
    let events = fake.wait_for_events_async(2, Duration::from_secs(10)).await;
    assert_eq!(events[1].event_id(), Some("plain-2"));

    // Replaced through PUT …/token: sealed again, with a fresh nonce.
    api.ok("PUT", &format!("/v1/pixels/{PIXEL}/token"), Some(json!({"access_token": NEXT}))).await;
    let replaced = sqlite_token_column(&site.data(), PIXEL).unwrap();
    assert!(replaced.starts_with("pgs1:") && replaced != stored, "{replaced:.12}…");
    assert!(!sqlite_rows(&site.data()).join("\n").contains("EAAatrest"), "no token in any row");
    fake.assert_no_violations();
    // Once the server has stopped (the WAL checkpointed into the file), no byte of any file holds
    // either token: the plaintext row was overwritten, not left behind.
    assert!(api.server.terminate().success());
    for (path, bytes) in files_with_bytes(&site.data()) {
        assert_absent(&path.display().to_string(), &bytes, &[PLAIN.as_bytes(), NEXT.as_bytes()]);
    }
}
