//! A key's last use: shown by `GET /v1/keys` as soon as the key is used (this process keeps it
//! in memory), without a store write per request — the stored document stays as it was however
//! often the key is used, and is written once, at the latest when the server stops.

use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use crate::helpers::{Site, attr_n, attr_s, get_item, item_text};

/// The key's entry in `GET /v1/keys?account_id=acc_a`.
fn listed(keys: &Value, key_id: &str) -> Value {
    keys["keys"].as_array().unwrap().iter().find(|k| k["key_id"] == key_id).cloned().unwrap_or_else(|| panic!("{key_id} in {keys}"))
}

#[tokio::test]
async fn last_use_shows_at_once_and_is_written_once_not_per_request() {
    let site = Site::dynamodb("last-used");
    let table = site.table.clone().unwrap();
    let mut api = site.serve(&[]);
    api.create_account("acc_a").await;
    let (key_id, key) = api.create_key(json!({"role": "viewer", "account_id": "acc_a"})).await;

    let pk = format!("key#{key_id}");
    let stored = get_item(&table, &pk).await.unwrap_or_else(|| panic!("{pk} in the table"));
    let (rev, doc) = (attr_n(&stored, "rev"), attr_s(&stored, "doc").to_owned());
    assert_eq!(serde_json::from_str::<Value>(&doc).unwrap()["last_used_at"], Value::Null, "{}", item_text(&stored));
    assert_eq!(listed(&api.ok("GET", "/v1/keys?account_id=acc_a", None).await, &key_id)["last_used_at"], Value::Null);
    let hash_items_before = crate::helpers::scan(&table).await.into_iter().filter(|i| attr_s(i, "pixel_id").starts_with("keyhash#")).map(|i| item_text(&i)).collect::<Vec<_>>();

    let before_use = SystemTime::now();
    for _ in 0..50 {
        let a = api.send(Some(&key), "GET", "/v1/accounts/acc_a", None).await;
        assert_eq!(a.status, 200, "{}", a.text);
    }

    // Shown at once.
    let shown = listed(&api.ok("GET", "/v1/keys?account_id=acc_a", None).await, &key_id);
    let used: SystemTime = humantime::parse_rfc3339(shown["last_used_at"].as_str().unwrap_or_else(|| panic!("last_used_at after use: {shown}"))).unwrap();
    assert!(used + Duration::from_millis(1) >= before_use && used <= SystemTime::now(), "{shown}");

    // Not written per request: the document is as it was.
    let after = get_item(&table, &pk).await.unwrap();
    assert_eq!((attr_n(&after, "rev"), attr_s(&after, "doc")), (rev, doc.as_str()), "50 uses rewrote the key's document: {}", item_text(&after));
    let hash_items_after = crate::helpers::scan(&table).await.into_iter().filter(|i| attr_s(i, "pixel_id").starts_with("keyhash#")).map(|i| item_text(&i)).collect::<Vec<_>>();
    assert_eq!(hash_items_after, hash_items_before, "the key's lookup item is not rewritten either");

    // Written once when the server stops.
    assert!(api.server.terminate().success(), "{}", api.server.logs());
    let flushed = get_item(&table, &pk).await.unwrap();
    assert_eq!(attr_n(&flushed, "rev"), rev + 1, "one write for 50 uses: {}", item_text(&flushed));
    let doc: Value = serde_json::from_str(attr_s(&flushed, "doc")).unwrap();
    assert!(doc["last_used_at"].as_i64().is_some_and(|t| t > 0), "{doc}");

    // A new instance lists the stored time.
    let api = site.serve(&[]);
    let shown_later = listed(&api.ok("GET", "/v1/keys?account_id=acc_a", None).await, &key_id);
    assert_eq!(shown_later["last_used_at"], shown["last_used_at"], "{shown_later}");
}
