//! Two instances on one DynamoDB table (one `--secrets-key`, `--registry-ttl 2s`, each its own
//! data dir): a key made on one signs in on the other; revoked on one, it is refused there at
//! once and on the other within the TTL; a pixel's allowed domains changed on one apply to the
//! other's hits within the TTL.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::{Api, Site, eventually};

/// `--registry-ttl` of both servers.
const TTL: Duration = Duration::from_secs(2);
/// What a change may take beyond the TTL to show (polling, a loaded machine).
const SLACK: Duration = Duration::from_millis(1500);

const PIXEL: &str = "424242";

fn two_servers(site: &Site) -> (Api, Api) {
    let ttl = format!("{}s", TTL.as_secs());
    (site.serve_another(&["--registry-ttl", &ttl]), site.serve_another(&["--registry-ttl", &ttl]))
}

/// The record of the hit with event id `eid` on `api`'s server, once written.
async fn record_of(api: &Api, eid: &str) -> Value {
    eventually!(Duration::from_secs(10), format!("the record of {eid}"), api.server.records().into_iter().find(|r| r["event_id"] == eid))
}

fn flags(record: &Value) -> Vec<String> {
    record["flags"].as_array().unwrap_or_else(|| panic!("{record}")).iter().map(|f| f.as_str().unwrap().to_owned()).collect()
}

/// A hit on `api` for [`PIXEL`] from a page on `page`, with event id `eid`.
async fn hit(api: &Api, page: &str, eid: &str) {
    api.server.hit(&format!("/tr?id={PIXEL}&ev=PageView&eid={eid}&dl=https%3A%2F%2F{page}%2Fcheckout")).await;
}

#[tokio::test]
async fn a_key_revoked_on_one_instance_is_refused_by_the_other_within_the_ttl() {
    let site = Site::dynamodb("two-keys");
    let (one, two) = two_servers(&site);
    one.create_account("acc_a").await;
    let (key_id, key) = one.create_key(json!({"role": "viewer", "account_id": "acc_a"})).await;
    let read = async |api: &Api| api.send(Some(&key), "GET", "/v1/accounts/acc_a", None).await.status;
    assert_eq!(read(&two).await, 200, "a key made through one instance works on the other");
    assert_eq!(read(&one).await, 200);

    // Accepted right before the revocation.
    assert_eq!(read(&two).await, 200);
    let revoked_at = Instant::now();
    let a = one.admin("DELETE", &format!("/v1/keys/{key_id}"), None).await;
    assert_eq!(a.status, 204, "{}", a.text);
    assert_eq!(read(&one).await, 401, "refused at once by the instance that revoked it");
    let refused_after = eventually!(TTL + SLACK, "the other instance to refuse the revoked key", (read(&two).await == 401).then(|| revoked_at.elapsed()));
    assert!(refused_after <= TTL + SLACK, "{refused_after:?}");
    // And it stays refused.
    for _ in 0..5 {
        assert_eq!(read(&two).await, 401);
        assert_eq!(read(&one).await, 401);
    }
}

#[tokio::test]
async fn allowed_domains_changed_on_one_instance_apply_to_the_others_hits_within_the_ttl() {
    let site = Site::dynamodb("two-domains");
    let (one, two) = two_servers(&site);
    one.create_account("acc_a").await;
    let a = one.admin("PUT", &format!("/v1/pixels/{PIXEL}"), Some(json!({"account_id": "acc_a", "allowed_domains": ["shop.example"]}))).await;
    assert_eq!(a.status, 201, "{}", a.text);
    let not_allowed = |r: &Value| flags(r).contains(&"domain_not_allowed".to_owned());
    let n = std::cell::Cell::new(0);
    let next = || {
        n.set(n.get() + 1);
        format!("hit-{}", n.get())
    };

    // The registration reaches the other instance within the TTL: a page outside the domains is
    // flagged there. From then on it has the settings cached.
    let registered_at = Instant::now();
    let known_after = eventually!(TTL + SLACK, "the other instance to apply the new pixel's allowed domains", {
        let eid = next();
        hit(&two, "evil.example", &eid).await;
        not_allowed(&record_of(&two, &eid).await).then(|| registered_at.elapsed())
    });
    assert!(known_after <= TTL + SLACK, "{known_after:?}");
    let first_known = n.get();
    let eid = next();
    hit(&two, "www.shop.example", &eid).await;
    let r = record_of(&two, &eid).await;
    assert!(!not_allowed(&r), "a subdomain of an allowed domain is allowed: {r}");

    // Changed through the first instance: the shop's page is now outside, evil.example inside.
    let changed_at = Instant::now();
    let a = one.admin("PATCH", &format!("/v1/pixels/{PIXEL}"), Some(json!({"allowed_domains": ["evil.example"]}))).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.json()["allowed_domains"], json!(["evil.example"]));
    // The instance that changed it applies it at once.
    for (page, flagged) in [("shop.example", true), ("evil.example", false)] {
        let eid = next();
        hit(&one, page, &eid).await;
        let r = record_of(&one, &eid).await;
        assert_eq!(not_allowed(&r), flagged, "the changing instance applies the change at once: {r}");
    }
    // The other within the TTL.
    let applied_after = eventually!(TTL + SLACK, "the other instance to apply the changed allowed domains", {
        let eid = next();
        hit(&two, "shop.example", &eid).await;
        not_allowed(&record_of(&two, &eid).await).then(|| changed_at.elapsed())
    });
    assert!(applied_after <= TTL + SLACK, "{applied_after:?}");
    let eid = next();
    hit(&two, "evil.example", &eid).await;
    let r = record_of(&two, &eid).await;
    assert!(!not_allowed(&r), "{r}");

    // Every record of the pixel, once an instance knows it is registered, carries its account.
    let known: Vec<Value> = two
        .server
        .records()
        .into_iter()
        .filter(|r| r["event_id"].as_str().and_then(|e| e.strip_prefix("hit-")).is_some_and(|k| k.parse::<usize>().unwrap() >= first_known))
        .collect();
    for r in known.iter().chain(one.server.records().iter()) {
        assert_eq!(r["account_id"], "acc_a", "{r}");
    }
}
