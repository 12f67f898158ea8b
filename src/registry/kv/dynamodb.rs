//! The registry in DynamoDB: the `--dynamodb-table` the tokens live in, one item per document
//! (`docs/accounts.md#dynamodb`).
//!
//! | attribute | type | meaning |
//! |---|---|---|
//! | `pixel_id` | S, partition key | the registry key (`account#acc_…`, `pixel#123`, `key#key_…`, `keyhash#<hex>`, `audit#…`); a token item's key is digits only, so the two never collide |
//! | `doc` | S | the JSON document |
//! | `rev` | N | revision |
//! | `grp`, `sk` | S | group and sort key, only on items listed in a group |
//!
//! Registry items never have a `status` or `access_token` attribute, so the tokens' index scan
//! (`status = active`) skips them.
//!
//! Listings read the global secondary index `by_group` (partition key `grp`, sort key `sk`,
//! projection ALL; `pixelgate tokens create-table` and `template.yaml` create it): a `Query` with
//! `grp = :g AND begins_with(sk, :p)`, page after page. A GSI is **eventually consistent**: a
//! listing may miss a write that just went through (usually for well under a second), while
//! [`DynamoKv::get`] reads strongly consistent.
//!
//! A transaction is one `TransactWriteItems` call, conditions as `ConditionExpression`s; the SDK
//! gives each call a `ClientRequestToken`, so its retry of a transaction that already went through
//! succeeds rather than conflicts. The server needs `dynamodb:GetItem`, `PutItem`, `DeleteItem`
//! and `ConditionCheckItem` on the table and `Query` on its `index/by_group`.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{AttributeValue, ConditionCheck, Delete, Put, TransactWriteItem};

use super::{Cond, Item, TxError, Write};
use crate::tokens::StoreError;

/// The global secondary index of groups (`DynamoStore::create_table` and `template.yaml` create
/// it under this name).
pub const INDEX: &str = "by_group";
/// The condition of a [`Cond::Any`] check (a `ConditionCheck` must have one): always true.
const ALWAYS: &str = "attribute_exists(pixel_id) OR attribute_not_exists(pixel_id)";

/// The DynamoDB registry.
#[derive(Clone)]
pub struct DynamoKv {
    client: Client,
    table: String,
}

impl DynamoKv {
    /// A registry in `table` through `client`.
    pub fn new(client: Client, table: &str) -> DynamoKv {
        DynamoKv { client, table: table.to_owned() }
    }

    /// The registry in the token store's table, through its client (and its timeouts).
    pub fn from_store(store: &crate::tokens::DynamoStore) -> DynamoKv {
        DynamoKv::new(store.client().clone(), store.table())
    }

    /// The item under `pk`.
    pub async fn get(&self, pk: &str) -> Result<Option<Item>, StoreError> {
        let out = self.client.get_item().table_name(&self.table).key("pixel_id", s(pk)).consistent_read(true).send().await.map_err(|e| self.error("GetItem", e))?;
        out.item().map(parse_item).transpose()
    }

    /// Applies every write or none, in one `TransactWriteItems`.
    pub async fn transact(&self, writes: Vec<Write>) -> Result<(), TxError> {
        if writes.is_empty() {
            return Ok(());
        }
        let items = writes.iter().map(|w| self.transact_item(w)).collect::<Result<Vec<_>, _>>()?;
        let Err(err) = self.client.transact_write_items().set_transact_items(Some(items)).send().await else {
            return Ok(());
        };
        let Some(canceled) = err.as_service_error().and_then(|e| match e {
            aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(c) => Some(c),
            _ => None,
        }) else {
            return Err(TxError::Store(self.error("TransactWriteItems", err)));
        };
        let reasons = canceled.cancellation_reasons();
        if let Some(i) = reasons.iter().position(|r| r.code() == Some("ConditionalCheckFailed")) {
            return Err(TxError::Conflict(i));
        }
        let mut codes: Vec<&str> = reasons.iter().filter_map(|r| r.code()).filter(|c| *c != "None").collect();
        codes.dedup();
        let codes = if codes.is_empty() { canceled.message().unwrap_or("no reason given").to_owned() } else { codes.join(", ") };
        Err(TxError::Store(StoreError::Unavailable(format!("DynamoDB TransactWriteItems on '{}': transaction cancelled ({codes})", self.table))))
    }

    fn transact_item(&self, write: &Write) -> Result<TransactWriteItem, StoreError> {
        let built = |e: aws_sdk_dynamodb::error::BuildError| StoreError::Unavailable(format!("DynamoDB TransactWriteItems on '{}': {e}", self.table));
        let item = match write {
            Write::Put(item, cond) => {
                let (expr, names, values) = condition(*cond);
                let put = Put::builder()
                    .table_name(&self.table)
                    .set_item(Some(to_attrs(item)?))
                    .set_condition_expression(expr.map(str::to_owned))
                    .set_expression_attribute_names(names)
                    .set_expression_attribute_values(values)
                    .build()
                    .map_err(built)?;
                TransactWriteItem::builder().put(put).build()
            }
            Write::Delete(pk, cond) => {
                let (expr, names, values) = condition(*cond);
                let delete = Delete::builder()
                    .table_name(&self.table)
                    .key("pixel_id", s(pk))
                    .set_condition_expression(expr.map(str::to_owned))
                    .set_expression_attribute_names(names)
                    .set_expression_attribute_values(values)
                    .build()
                    .map_err(built)?;
                TransactWriteItem::builder().delete(delete).build()
            }
            Write::Check(pk, cond) => {
                let (expr, names, values) = condition(*cond);
                let check = ConditionCheck::builder()
                    .table_name(&self.table)
                    .key("pixel_id", s(pk))
                    .condition_expression(expr.unwrap_or(ALWAYS))
                    .set_expression_attribute_names(names)
                    .set_expression_attribute_values(values)
                    .build()
                    .map_err(built)?;
                TransactWriteItem::builder().condition_check(check).build()
            }
        };
        Ok(item)
    }

    /// The items of `group` whose sort key starts with `prefix`, in order, at most `limit`: a
    /// `Query` of the index (eventually consistent), page after page.
    pub async fn list(&self, group: &str, prefix: &str, newest_first: bool, limit: usize) -> Result<Vec<Item>, StoreError> {
        let mut out = Vec::new();
        if limit == 0 || group.is_empty() {
            return Ok(out); // no item has an empty group: DynamoDB index keys cannot be empty
        }
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let want = i32::try_from(limit - out.len()).unwrap_or(i32::MAX);
            let page =
                self.query(group, prefix).scan_index_forward(!newest_first).limit(want).set_exclusive_start_key(start.take()).send().await.map_err(|e| self.error("Query", e))?;
            for item in page.items() {
                out.push(parse_item(item)?);
            }
            match page.last_evaluated_key() {
                Some(key) if !key.is_empty() && out.len() < limit => start = Some(key.clone()),
                _ => {
                    out.truncate(limit);
                    return Ok(out);
                }
            }
        }
    }

    /// The sort keys of every item of `group` (the index, eventually consistent, only `sk`
    /// read), and the `Query` requests it took.
    pub async fn sort_keys(&self, group: &str) -> Result<(Vec<String>, u64), StoreError> {
        let (mut out, mut requests) = (Vec::new(), 0);
        if group.is_empty() {
            return Ok((out, requests));
        }
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let page = self
                .query(group, "")
                .projection_expression("#sk")
                .expression_attribute_names("#sk", "sk")
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| self.error("Query", e))?;
            requests += 1;
            for item in page.items() {
                let sk = item.get("sk").and_then(|v| v.as_s().ok()).ok_or_else(|| StoreError::Malformed(format!("a registry item of group '{group}' without a sort key")))?;
                out.push(sk.clone());
            }
            match page.last_evaluated_key() {
                Some(key) if !key.is_empty() => start = Some(key.clone()),
                _ => return Ok((out, requests)),
            }
        }
    }

    /// A `Query` of the index for `group` and, unless empty, the sort-key `prefix` (the name `#sk`
    /// is defined only when used: DynamoDB rejects unused names).
    fn query(&self, group: &str, prefix: &str) -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder {
        let q = self.client.query().table_name(&self.table).index_name(INDEX).expression_attribute_names("#grp", "grp").expression_attribute_values(":g", s(group));
        if prefix.is_empty() {
            q.key_condition_expression("#grp = :g")
        } else {
            q.key_condition_expression("#grp = :g AND begins_with(#sk, :p)").expression_attribute_names("#sk", "sk").expression_attribute_values(":p", s(prefix))
        }
    }

    /// One line about a failed call: its kind and the service's error code and message (which
    /// never echo item values), never the request (as the token store's).
    fn error<E: ProvideErrorMetadata, R>(&self, op: &str, err: SdkError<E, R>) -> StoreError {
        let what = match &err {
            SdkError::TimeoutError(_) => "timed out".to_owned(),
            SdkError::DispatchFailure(_) => "cannot reach DynamoDB (check AWS_REGION / AWS_ENDPOINT_URL and the network)".to_owned(),
            SdkError::ServiceError(_) if err.code() == Some("ResourceNotFoundException") => {
                format!("table '{}' or its index '{INDEX}' does not exist (--dynamodb-table [PIXELGATE_DYNAMODB_TABLE]; `pixelgate tokens create-table`)", self.table)
            }
            SdkError::ServiceError(_) => format!("{}: {}", err.code().unwrap_or("error"), err.message().unwrap_or("no message")),
            _ => "unexpected response".to_owned(),
        };
        StoreError::Unavailable(format!("DynamoDB {op} on '{}': {what}", self.table))
    }
}

type Names = Option<HashMap<String, String>>;
type Values = Option<HashMap<String, AttributeValue>>;

/// The condition expression of `cond`, with its names and values (`None` rather than empty:
/// DynamoDB rejects empty or unused ones).
fn condition(cond: Cond) -> (Option<&'static str>, Names, Values) {
    match cond {
        Cond::Any => (None, None, None),
        Cond::Absent => (Some("attribute_not_exists(pixel_id)"), None, None),
        Cond::Rev(rev) => {
            (Some("#rev = :rev"), Some(HashMap::from([("#rev".to_owned(), "rev".to_owned())])), Some(HashMap::from([(":rev".to_owned(), AttributeValue::N(rev.to_string()))])))
        }
    }
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

/// The attributes of `item`; `grp` and `sk` only if it is in a group.
fn to_attrs(item: &Item) -> Result<HashMap<String, AttributeValue>, StoreError> {
    let mut attrs = HashMap::from([("pixel_id".to_owned(), s(&item.pk)), ("doc".to_owned(), s(&item.doc)), ("rev".to_owned(), AttributeValue::N(item.rev.to_string()))]);
    if let Some((grp, sk)) = &item.group {
        if grp.is_empty() || sk.is_empty() {
            return Err(StoreError::Malformed(format!("registry item '{}': an empty group or sort key (DynamoDB index keys cannot be empty)", item.pk)));
        }
        attrs.insert("grp".to_owned(), s(grp));
        attrs.insert("sk".to_owned(), s(sk));
    }
    Ok(attrs)
}

fn parse_item(item: &HashMap<String, AttributeValue>) -> Result<Item, StoreError> {
    let pk = item.get("pixel_id").and_then(|v| v.as_s().ok()).ok_or_else(|| StoreError::Malformed("a registry item without a string key".into()))?;
    let bad = |attr: &str| StoreError::Malformed(format!("registry item '{pk}': attribute '{attr}' missing or of the wrong type"));
    let opt_s = |attr: &str| item.get(attr).and_then(|v| v.as_s().ok()).cloned();
    let doc = opt_s("doc").ok_or_else(|| bad("doc"))?;
    let rev = item.get("rev").and_then(|v| v.as_n().ok()).and_then(|n| n.parse().ok()).ok_or_else(|| bad("rev"))?;
    let group = match (opt_s("grp"), opt_s("sk")) {
        (Some(grp), Some(sk)) => Some((grp, sk)),
        (None, None) => None,
        _ => return Err(bad("grp/sk")),
    };
    Ok(Item { pk: pk.clone(), group, doc, rev })
}
