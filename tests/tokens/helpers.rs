//! The in-process side of the DynamoDB tests: pixelgate's token store and cache over a real
//! `aws-sdk-dynamodb` client of moto that counts its `GetItem` requests. The crate's own API is
//! used here only, so a rename in `src/` touches this file alone.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;
pub use pixelgate::tokens::{CacheSettings, DynamoStore, TokenCache, TokenStatus, TokenStore};

use crate::common::moto::sdk_config;

/// Counts `GetItem` requests as they go on the wire (each attempt).
#[derive(Debug, Clone, Default)]
pub struct CountGetItem(Arc<AtomicUsize>);

impl CountGetItem {
    /// `GetItem` requests so far.
    pub fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

impl Intercept for CountGetItem {
    fn name(&self) -> &'static str {
        "CountGetItem"
    }

    fn read_before_transmit(&self, ctx: &BeforeTransmitInterceptorContextRef<'_>, _: &RuntimeComponents, _: &mut ConfigBag) -> Result<(), BoxError> {
        if ctx.request().headers().get("x-amz-target").is_some_and(|t| t.ends_with(".GetItem")) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }
}

/// A DynamoDB store of `table` on moto whose client counts its `GetItem` requests.
pub async fn counted_store(table: &str) -> (DynamoStore, CountGetItem) {
    let counter = CountGetItem::default();
    let config = aws_sdk_dynamodb::config::Builder::from(&sdk_config().await).interceptor(counter.clone()).build();
    (DynamoStore::with_client(aws_sdk_dynamodb::Client::from_conf(config), table), counter)
}
