//! `pixelgate accounts|keys|pixels|audit` (`docs/accounts.md#cli`): the API's calls on the store without HTTP,
//! bodies on standard input, answers as one line of JSON; a failure exits non-zero with one line
//! naming the field. A key made by the CLI works on a server running on the same data dir, and
//! is shown once only.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{Site, eventually};

const TOKEN: &str = "EAAclitoken0123456789abcdefABCDEF";

#[tokio::test]
async fn the_registry_cli_does_what_the_api_does_on_the_same_store() {
    let site = Site::sqlite();
    let run = |args: &[&str], stdin: &str| site.run(args, stdin);

    // Accounts.
    let created = run(&["accounts", "create"], r#"{"name":"Shop C","account_id":"acc_cli"}"#).json();
    assert_eq!((&created["account_id"], &created["name"], &created["pixels"]), (&json!("acc_cli"), &json!("Shop C"), &json!(0)), "{created}");
    let generated = run(&["accounts", "create"], r#"{"name":"Shop D"}"#).json();
    let generated_id = generated["account_id"].as_str().unwrap().to_owned();
    assert!(generated_id.starts_with("acc_"), "{generated}");
    let listed = run(&["accounts", "list"], "").json();
    let mut ids: Vec<&str> = listed["accounts"].as_array().unwrap().iter().map(|a| a["account_id"].as_str().unwrap()).collect();
    ids.sort();
    let mut want = vec!["acc_cli", generated_id.as_str()];
    want.sort();
    assert_eq!(ids, want, "{listed}");
    assert_eq!(run(&["accounts", "update", "acc_cli"], r#"{"name":"Shop C2"}"#).json()["name"], "Shop C2");
    assert_eq!(run(&["accounts", "get", "acc_cli"], "").json()["name"], "Shop C2");

    // Pixels: registered with a token (from standard input only), read, changed, listed.
    let body = json!({"account_id": "acc_cli", "name": "Checkout", "destinations": {"meta": {"access_token": TOKEN}}}).to_string();
    let put = run(&["pixels", "put", "8001"], &body);
    put.assert_hides(TOKEN);
    let put = put.json();
    assert_eq!((&put["pixel_id"], &put["account_id"], &put["destinations"]["meta"]["set"]), (&json!("8001"), &json!("acc_cli"), &json!(true)), "{put}");
    assert_eq!(run(&["tokens", "status", "8001"], "").json()["set"], true, "the token is the tokens CLI's too");
    let got = run(&["pixels", "get", "8001"], "");
    got.assert_hides(TOKEN);
    assert_eq!(got.json()["name"], "Checkout");
    let updated = run(&["pixels", "update", "8001"], r#"{"test_event_code":"TEST9","allowed_domains":["Shop.Example"]}"#).json();
    assert_eq!((&updated["test_event_code"], &updated["allowed_domains"]), (&json!("TEST9"), &json!(["shop.example"])), "{updated}");
    run(&["pixels", "put", "8002"], r#"{"account_id":"acc_cli"}"#).json();
    let listed = run(&["pixels", "list", "--account-id", "acc_cli"], "").json();
    let pixels: Vec<&Value> = listed["pixels"].as_array().unwrap().iter().map(|p| &p["pixel_id"]).collect();
    assert_eq!(pixels, [&json!("8001"), &json!("8002")], "{listed}");
    assert_eq!(run(&["accounts", "get", "acc_cli"], "").json()["pixels"], 2);

    // Keys: printed once, at creation.
    let made = run(&["keys", "create"], r#"{"role":"admin","account_id":"acc_cli","name":"platform"}"#);
    let made = made.json();
    let key = made["key"].as_str().unwrap_or_else(|| panic!("{made}")).to_owned();
    let key_id = made["key_id"].as_str().unwrap().to_owned();
    assert!(key.starts_with("pgk_") && key_id.starts_with("key_"), "{made}");
    assert_eq!((&made["role"], &made["account_id"]), (&json!("admin"), &json!("acc_cli")), "{made}");
    let host_key = run(&["keys", "create"], r#"{"role":"viewer","accounts":["acc_cli"]}"#).json();
    for (args, id) in [(&["keys", "list", "--account-id", "acc_cli"][..], &key_id), (&["keys", "list"][..], &host_key["key_id"].as_str().unwrap().to_owned())] {
        let listed = run(args, "");
        listed.assert_hides(&key);
        listed.assert_hides(host_key["key"].as_str().unwrap());
        assert!(!listed.stdout.contains("pgk_"), "no key in a listing: {}", listed.stdout);
        let listed = listed.json();
        assert!(listed["keys"].as_array().unwrap().iter().any(|k| k["key_id"] == id.as_str() && k.get("key").is_none()), "{listed}");
    }

    // The key works on a server on the same data dir (no --admin-key: a key made by the CLI still
    // signs in), and sees what the CLI did.
    let server = site.launch(&["--registry-ttl", "1s"]).data_dir(&site.data()).serve();
    let api = crate::helpers::Api::new(server);
    let a = api.send(Some(&key), "GET", "/v1/pixels/8001", None).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!((&a.json()["test_event_code"], &a.json()["destinations"]["meta"]["set"]), (&json!("TEST9"), &json!(true)), "{}", a.text);
    let a = api.send(Some(&key), "GET", "/v1/keys", None).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert!(!a.text.contains(&key) && !a.text.contains("pgk_"), "{}", a.text);
    // Changes through the server show in the CLI at once.
    let a = api.send(Some(&key), "PATCH", "/v1/pixels/8002", Some(&json!({"forwarding": "off"}))).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(run(&["pixels", "get", "8002"], "").json()["forwarding"], "off");

    // The audit log: the CLI's changes as key_cli, the server's as the key's id.
    let audit = run(&["audit", "--account-id", "acc_cli"], "").json();
    let entries = audit["entries"].as_array().unwrap();
    let actions: Vec<(&str, &str)> = entries.iter().map(|e| (e["key_id"].as_str().unwrap(), e["action"].as_str().unwrap())).collect();
    assert_eq!(actions.first(), Some(&(key_id.as_str(), "pixel.update")), "newest first: {audit}");
    for want in ["account.create", "account.update", "pixel.create", "pixel.update", "key.create"] {
        assert!(actions.contains(&("key_cli", want)), "{want} by key_cli: {audit}");
    }
    assert!(!audit.to_string().contains(TOKEN) && !audit.to_string().contains("pgk_"), "{audit}");
    let host_audit = run(&["audit"], "").json();
    assert!(host_audit["entries"].as_array().unwrap().iter().any(|e| e["action"] == "key.create"), "the host key's creation: {host_audit}");

    // Revoked by the CLI: the server refuses the key within its registry TTL.
    let revoked = run(&["keys", "revoke", &key_id], "");
    assert_eq!((revoked.code, revoked.stdout.as_str()), (0, ""), "{}", revoked.stderr);
    eventually!(Duration::from_secs(3), "the server to refuse the key the CLI revoked", (api.send(Some(&key), "GET", "/v1/pixels/8001", None).await.status == 401).then_some(()));

    // Deleted: gone, and its token with it.
    let deleted = run(&["pixels", "delete", "8001"], "");
    assert_eq!((deleted.code, deleted.stdout.as_str()), (0, ""), "{}", deleted.stderr);
    assert!(run(&["pixels", "get", "8001"], "").one_line_error(2).contains("no such pixel"));
    assert_eq!(run(&["tokens", "status", "8001"], "").json()["set"], false);
    assert_eq!(run(&["accounts", "get", "acc_cli"], "").json()["pixels"], 1);
    assert!(run(&["accounts", "delete", "acc_cli"], "").one_line_error(2).contains("pixel"), "refused while it has pixels");
    run(&["pixels", "delete", "8002"], "");
    let deleted = run(&["accounts", "delete", "acc_cli"], "");
    assert_eq!(deleted.code, 0, "{}", deleted.stderr);
    assert!(run(&["accounts", "get", "acc_cli"], "").one_line_error(2).contains("no such account"));
}

#[tokio::test]
async fn registry_cli_errors_are_one_line_naming_the_field() {
    let site = Site::sqlite();
    site.run(&["accounts", "create"], r#"{"name":"Shop","account_id":"acc_a"}"#).json();
    let cases: [(&[&str], &str, &str); 16] = [
        (&["accounts", "create"], "", "empty"),
        (&["accounts", "create"], "not json", "body"),
        (&["accounts", "create"], r#"{"nmae":"x"}"#, "nmae"),
        (&["accounts", "create"], r#"{"name":"x","account_id":"shop"}"#, "account_id"),
        (&["accounts", "create"], r#"{"name":"x","account_id":"acc_a"}"#, "acc_a"),
        (&["accounts", "update", "acc_a"], r#"{"name":""}"#, "name"),
        (&["keys", "create"], r#"{"role":"owner"}"#, "role"),
        (&["keys", "create"], r#"{"role":"manager","account_id":"acc_a","pixels":["x"]}"#, "pixels[0]"),
        (&["keys", "revoke", "key_00000000000000000000"], "", "no such key"),
        (&["pixels", "put", "abc"], r#"{"account_id":"acc_a"}"#, "pixel_id"),
        (&["pixels", "put", "9001"], r#"{"account_id":"shop"}"#, "account_id"),
        (&["pixels", "put", "9001"], r#"{"account_id":"acc_a","allowed_domains":["https://x.example/"]}"#, "allowed_domains[0]"),
        (&["pixels", "put", "9001"], r#"{"account_id":"acc_a","test_event_code":"a b"}"#, "test_event_code"),
        (&["pixels", "put", "9001"], r#"{"account_id":"acc_a","destinations":{"meta":{"access_token":"EAA secret"}}}"#, "destinations.meta.access_token"),
        (&["pixels", "update", "9001"], r#"{"account_id":"acc_a"}"#, "account_id"),
        (&["pixels", "list", "--account-id", "shop"], "", "account"),
    ];
    for (args, stdin, names) in cases {
        let run = site.run(args, stdin);
        assert_ne!(run.code, 0, "{args:?} {stdin}: {}", run.stdout);
        let line = run.one_line_error(2);
        assert!(line.contains(names), "{args:?} {stdin}: the message names {names:?}: {line}");
        run.assert_hides("EAA secret");
    }
    // Nothing was written by any of them.
    assert_eq!(site.run(&["pixels", "list", "--account-id", "acc_a"], "").json()["pixels"], json!([]));
    assert_eq!(site.run(&["keys", "list", "--account-id", "acc_a"], "").json()["keys"], json!([]));
    let audit = site.run(&["audit", "--account-id", "acc_a"], "").json();
    assert_eq!(audit["entries"].as_array().unwrap().len(), 1, "only the account's creation: {audit}");
}
