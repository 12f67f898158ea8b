//! What every registry backend must do, checked the same way against each
//! (`local`'s unit test, and the DynamoDB backend's against moto in `tests/`).

use super::{Cond, Item, Kv, TxError, Write};

fn item(pk: &str, group: Option<(&str, &str)>, doc: &str, rev: u64) -> Item {
    Item { pk: pk.into(), group: group.map(|(g, s)| (g.into(), s.into())), doc: doc.into(), rev }
}

/// Runs the contract against `kv`, which must be empty.
pub async fn check(kv: &Kv) {
    assert_eq!(kv.get("a#1").await.unwrap(), None);
    let a1 = item("a#1", Some(("g", "acc_1#1")), r#"{"n":1}"#, 1);
    kv.transact(vec![Write::Put(a1.clone(), Cond::Absent)]).await.unwrap();
    assert_eq!(kv.get("a#1").await.unwrap(), Some(a1.clone()));

    // A failed condition anywhere writes nothing.
    let a2 = item("a#2", Some(("g", "acc_1#2")), r#"{"n":2}"#, 1);
    let again = item("a#1", Some(("g", "acc_1#1")), r#"{"n":9}"#, 2);
    match kv.transact(vec![Write::Put(a2.clone(), Cond::Absent), Write::Put(again.clone(), Cond::Absent)]).await {
        Err(TxError::Conflict(1)) => {}
        other => panic!("expected a conflict at write 1, got {other:?}"),
    }
    assert_eq!(kv.get("a#2").await.unwrap(), None, "nothing half-written");
    assert!(matches!(kv.transact(vec![Write::Put(again.clone(), Cond::Rev(7))]).await, Err(TxError::Conflict(0))));
    assert!(matches!(kv.transact(vec![Write::Check("a#2".into(), Cond::Rev(1))]).await, Err(TxError::Conflict(0))));
    kv.transact(vec![Write::Put(again.clone(), Cond::Rev(1)), Write::Put(a2.clone(), Cond::Absent), Write::Check("a#1".into(), Cond::Rev(1))])
        .await
        .expect_err("a check and a put of one key in one transaction is not allowed by DynamoDB either");
    kv.transact(vec![Write::Put(again.clone(), Cond::Rev(1)), Write::Put(a2.clone(), Cond::Absent)]).await.unwrap();
    assert_eq!(kv.get("a#1").await.unwrap(), Some(again.clone()));

    // Listings: by group and prefix, in order either way, limited; items without a group unlisted.
    let other = item("b#1", Some(("g", "acc_2#1")), "{}", 1);
    let hidden = item("h#1", None, "{}", 1);
    kv.transact(vec![Write::Put(other.clone(), Cond::Any), Write::Put(hidden.clone(), Cond::Any)]).await.unwrap();
    assert_eq!(kv.list("g", "acc_1#", false, 10).await.unwrap(), vec![again.clone(), a2.clone()]);
    assert_eq!(kv.list("g", "acc_1#", true, 10).await.unwrap(), vec![a2.clone(), again.clone()]);
    assert_eq!(kv.list("g", "", false, 2).await.unwrap(), vec![again.clone(), a2.clone()]);
    assert_eq!(kv.list("g", "acc_3#", false, 10).await.unwrap(), vec![]);
    assert_eq!(kv.list("other", "", false, 10).await.unwrap(), vec![]);
    let (mut keys, _) = kv.sort_keys("g").await.unwrap();
    keys.sort();
    assert_eq!(keys, vec!["acc_1#1", "acc_1#2", "acc_2#1"]);
    assert_eq!(kv.get("h#1").await.unwrap(), Some(hidden));

    // Deletes, conditional and not.
    assert!(matches!(kv.transact(vec![Write::Delete("a#2".into(), Cond::Rev(5))]).await, Err(TxError::Conflict(0))));
    kv.transact(vec![Write::Delete("a#2".into(), Cond::Rev(1)), Write::Delete("nothing".into(), Cond::Any)]).await.unwrap();
    assert_eq!(kv.get("a#2").await.unwrap(), None);
    assert_eq!(kv.list("g", "acc_1#", false, 10).await.unwrap(), vec![again]);
}
