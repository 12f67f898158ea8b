//! The registry in DynamoDB (being written: see the helper's change).

use super::{Item, TxError, Write};
use crate::tokens::StoreError;

/// The DynamoDB registry.
#[derive(Clone)]
pub struct DynamoKv {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoKv {
    /// A registry in `table` through `client`.
    pub fn new(client: aws_sdk_dynamodb::Client, table: &str) -> DynamoKv {
        DynamoKv { client, table: table.to_owned() }
    }

    /// The item under `pk`.
    pub async fn get(&self, pk: &str) -> Result<Option<Item>, StoreError> {
        let _ = (&self.client, &self.table, pk);
        Err(StoreError::Unavailable("not yet".into()))
    }

    /// Applies every write or none.
    pub async fn transact(&self, writes: Vec<Write>) -> Result<(), TxError> {
        let _ = writes;
        Err(TxError::Store(StoreError::Unavailable("not yet".into())))
    }

    /// The items of `group` whose sort key starts with `prefix`, in order.
    pub async fn list(&self, group: &str, prefix: &str, newest_first: bool, limit: usize) -> Result<Vec<Item>, StoreError> {
        let _ = (group, prefix, newest_first, limit);
        Err(StoreError::Unavailable("not yet".into()))
    }

    /// The sort keys of every item of `group`, and the requests it took.
    pub async fn sort_keys(&self, group: &str) -> Result<(Vec<String>, u64), StoreError> {
        let _ = group;
        Err(StoreError::Unavailable("not yet".into()))
    }
}
