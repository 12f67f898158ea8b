//! `--tokens dynamodb` against moto: the table made with `pixelgate tokens create-table`, a token
//! set with the CLI, read back through the in-process [`TokenCache`] over the real
//! `aws-sdk-dynamodb` client, whose requests an interceptor counts.

use std::sync::Arc;

use crate::common::moto::{aws_env, moto};
use crate::common::process::pixelgate;
use crate::helpers::{CacheSettings, TokenCache, TokenStatus, TokenStore, counted_store};

const TOKEN: &str = "EAABsbCS1iHgBAKZCtokenfordynamodb";
/// `--secrets-key`: every process on the table seals and opens tokens with it.
const SECRETS_KEY: &str = "dG9rZW5zLXRlc3RzLXNlY3JldHMta2V5LTMyLWJ5dGU=";

fn table_for(test: &str) -> String {
    format!("pixelgate-tokens-{test}-{}", std::process::id()).replace('_', "-")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_writes_and_the_cache_reads_once_for_a_burst() {
    let env = aws_env(&moto().endpoint);
    let table = table_for("burst");
    let dynamo = ["--tokens", "dynamodb", "--dynamodb-table", &table, "--secrets-key", SECRETS_KEY];
    let run = |args: &[&str], stdin: &str| pixelgate(&[&["tokens"], args, &dynamo[..]].concat(), stdin, &env);

    assert_eq!(run(&["create-table"], "").json(), serde_json::json!({ "table": table, "created": true }));
    assert_eq!(run(&["create-table"], "").json(), serde_json::json!({ "table": table, "created": false }), "idempotent");

    let set = run(&["set", "987654321"], &format!("{TOKEN}\n"));
    set.assert_hides(TOKEN);
    assert_eq!((&set.json()["set"], &set.json()["status"]), (&true.into(), &"active".into()));
    let status = run(&["status", "987654321"], "");
    status.assert_hides(TOKEN);
    assert_eq!(status.json(), set.json());

    let (store, gets) = counted_store(&table).await;
    let cache = Arc::new(TokenCache::new(
        TokenStore::new(pixelgate::tokens::Backend::Dynamodb(store), pixelgate::seal::Sealer::from_base64(SECRETS_KEY).unwrap()),
        CacheSettings::default(),
    ));
    let barrier = Arc::new(tokio::sync::Barrier::new(1000));
    let tasks: Vec<_> = (0..1000)
        .map(|_| {
            let (cache, barrier) = (cache.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                cache.usable(&"987654321".parse().unwrap()).await
            })
        })
        .collect();
    let mut versions = Vec::new();
    for t in tasks {
        let usable = t.await.unwrap().expect("store reachable").expect("token usable");
        assert_eq!(usable.token.expose(), TOKEN);
        versions.push(usable.version);
    }
    versions.dedup();
    assert_eq!(versions.len(), 1);
    assert_eq!(gets.count(), 1, "1,000 concurrent lookups, one GetItem on the wire");
    assert_eq!(cache.store_reads(), 1);

    // Meta rejects it: the conditional write flips it, and the CLI sees it.
    assert!(cache.mark_invalid(&"987654321".parse().unwrap(), versions[0]).await.unwrap());
    assert_eq!(run(&["status", "987654321"], "").json()["status"], "invalid");
    assert_eq!(cache.usable(&"987654321".parse().unwrap()).await.unwrap(), None);

    // A new token set meanwhile is never invalidated by a rejection of the old one.
    run(&["set", "987654321"], "EAABnewer\n").json();
    let (store, _) = counted_store(&table).await;
    assert!(!store.mark_invalid("987654321", versions[0]).await.unwrap());
    let now = store.get("987654321").await.unwrap().unwrap();
    assert!(now.token.expose().starts_with("pgs1:") && !now.token.expose().contains("EAAB"), "the table holds the token sealed");
    let opened = pixelgate::seal::Sealer::from_base64(SECRETS_KEY).unwrap().open("meta_token:987654321", now.token.expose()).unwrap();
    assert_eq!((now.status, opened.expose()), (TokenStatus::Active, "EAABnewer"));
    store.check().await.unwrap();

    let deleted = run(&["delete", "987654321"], "");
    assert_eq!(deleted.json(), serde_json::json!({ "pixel_id": "987654321", "set": false, "status": null, "updated_at": null }));
    assert_eq!(store.get("987654321").await.unwrap(), None);
    assert!(!store.delete("987654321").await.unwrap());
}

#[test]
fn a_missing_table_is_one_line_naming_the_flag() {
    let env = aws_env(&moto().endpoint);
    let run = pixelgate(&["tokens", "status", "1", "--tokens", "dynamodb", "--dynamodb-table", "no-such-table", "--secrets-key", SECRETS_KEY], "", &env);
    let line = run.one_line_error(1);
    assert!(line.contains("'no-such-table' does not exist") && line.contains("--dynamodb-table [PIXELGATE_DYNAMODB_TABLE]"), "{line}");
}

#[test]
fn no_region_is_one_line() {
    let env: Vec<_> = aws_env(&moto().endpoint).into_iter().filter(|(k, _)| *k != "AWS_REGION").collect();
    let run = pixelgate(&["tokens", "status", "1", "--tokens", "dynamodb", "--dynamodb-table", "t", "--secrets-key", SECRETS_KEY], "", &env);
    assert!(run.one_line_error(1).contains("AWS_REGION"), "{}", run.stderr);
}
