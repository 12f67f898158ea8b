//! The registry's DynamoDB backend against moto (server mode, the real `aws-sdk-dynamodb` client):
//! the backends' shared contract, registry items next to token items in the one table, and
//! listings longer than one `Query` page.

use pixelgate::registry::kv::dynamodb::DynamoKv;
use pixelgate::registry::kv::{Cond, Item, Kv, Write};
use pixelgate::tokens::{DynamoStore, Secret};

use crate::common::moto::sdk_config;

/// A fresh table, made as `pixelgate tokens create-table` makes it (with the index `by_group`).
async fn fresh_table(test: &str) -> DynamoStore {
    let table = format!("pixelgate-registry-{test}-{}", std::process::id()).replace('_', "-");
    let store = DynamoStore::with_client(aws_sdk_dynamodb::Client::new(&sdk_config().await), &table);
    assert!(store.create_table().await.unwrap(), "a fresh table");
    store
}

#[tokio::test]
async fn keeps_the_kv_contract() {
    let store = fresh_table("contract").await;
    let kv = Kv::Dynamodb(DynamoKv::new(store.client().clone(), store.table()));
    pixelgate::registry::kv::contract::check(&kv).await;
}

#[tokio::test]
async fn lives_next_to_the_tokens_and_lists_past_one_page() {
    let store = fresh_table("pages").await;
    store.set("123456789", Secret::new("EAAregistrytesttoken")).await.unwrap();
    let kv = Kv::Dynamodb(DynamoKv::from_store(&store));

    // 1,200 items of about 1 kB: more than DynamoDB's (and moto's) 1 MB per Query page.
    const N: usize = 1200;
    let filler = "x".repeat(1000);
    let items: Vec<Item> = (0..N)
        .map(|i| Item { pk: format!("pixel#{i}"), group: Some(("pixels".into(), format!("acc_1#{i:05}"))), doc: format!(r#"{{"n":{i},"pad":"{filler}"}}"#), rev: 1 })
        .collect();
    for chunk in items.chunks(100) {
        kv.transact(chunk.iter().map(|item| Write::Put(item.clone(), Cond::Absent)).collect()).await.unwrap();
    }
    let hidden = Item { pk: "keyhash#00ff".into(), group: None, doc: "{}".into(), rev: 1 };
    kv.transact(vec![Write::Put(hidden.clone(), Cond::Absent)]).await.unwrap();

    // The token side sees its pixel only; the registry reads its items.
    let mut pages = 0;
    assert_eq!(store.active_pixels(&mut pages).await.unwrap(), vec!["123456789".to_owned()]);
    assert!(store.get("123456789").await.unwrap().is_some());
    assert_eq!(kv.get("keyhash#00ff").await.unwrap(), Some(hidden));
    assert_eq!(kv.get("pixel#7").await.unwrap().as_ref(), Some(&items[7]));

    // Every item, over more than one page, in order either way.
    assert_eq!(kv.list("pixels", "", false, 10_000).await.unwrap(), items);
    let newest: Vec<Item> = items.iter().rev().cloned().collect();
    assert_eq!(kv.list("pixels", "acc_1#", true, usize::MAX).await.unwrap(), newest);
    let (keys, requests) = kv.sort_keys("pixels").await.unwrap();
    assert_eq!(keys.len(), N);
    assert!(requests >= 2, "1.2 MB of items take more than one Query page ({requests})");

    // A limit gives exactly that many, from either end and under a prefix.
    assert_eq!(kv.list("pixels", "", false, 7).await.unwrap(), items[..7]);
    assert_eq!(kv.list("pixels", "", true, 1100).await.unwrap(), newest[..1100]);
    assert_eq!(kv.list("pixels", "acc_1#010", false, 1000).await.unwrap(), items[1000..1100]);
    assert_eq!(kv.list("pixels", "", false, 0).await.unwrap(), vec![]);
}

/// A Part I table (the key only, no index): `create-table` adds the registry's index to it, and
/// the registry then lists through it.
#[tokio::test]
async fn create_table_adds_the_index_to_a_table_made_before_accounts() {
    use aws_sdk_dynamodb::types::{AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType};
    let table = format!("pixelgate-registry-partone-{}", std::process::id());
    let client = aws_sdk_dynamodb::Client::new(&sdk_config().await);
    client
        .create_table()
        .table_name(&table)
        .key_schema(KeySchemaElement::builder().attribute_name("pixel_id").key_type(KeyType::Hash).build().unwrap())
        .attribute_definitions(AttributeDefinition::builder().attribute_name("pixel_id").attribute_type(ScalarAttributeType::S).build().unwrap())
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .unwrap();
    let store = DynamoStore::with_client(client.clone(), &table);
    assert!(!store.create_table().await.unwrap(), "the table existed");
    let described = client.describe_table().table_name(&table).send().await.unwrap();
    assert!(described.table().unwrap().global_secondary_indexes().iter().any(|i| i.index_name() == Some("by_group")), "{described:?}");
    let kv = Kv::Dynamodb(DynamoKv::from_store(&store));
    let item = Item { pk: "account#acc_a".into(), group: Some(("accounts".into(), "acc_a".into())), doc: "{}".into(), rev: 1 };
    kv.transact(vec![Write::Put(item.clone(), Cond::Absent)]).await.unwrap();
    assert_eq!(kv.list("accounts", "", false, 10).await.unwrap(), vec![item]);
}
