//! The shared token store: an Amazon DynamoDB table, for several instances (or Lambda) serving
//! the same pixels.
//!
//! # Table schema
//!
//! One item per pixel; partition key only, no sort key, on-demand billing
//! (`pixelgate tokens create-table` creates it).
//!
//! | attribute | type | meaning |
//! |---|---|---|
//! | `pixel_id` | S, partition key | the pixel id (1–32 digits) |
//! | `access_token` | S | the Conversions API access token |
//! | `status` | S | `active` or `invalid` |
//! | `updated_at` | N | last change, milliseconds since the Unix epoch |
//! | `version` | N | random, new on every set; `invalid` is written only under the condition `version = :v` |
//!
//! The registry (accounts, keys, pixels, audit) keeps its documents in the same table, under keys
//! that are never digits only (`account#…`, `pixel#…`), with `doc`, `rev` and, when listed, `grp`
//! and `sk`; never `access_token` or `status` (`registry::kv::dynamodb`,
//! `docs/accounts.md#dynamodb`).
//! The global secondary index `by_group` (partition key `grp`, sort key `sk`, projection ALL)
//! lists them; `create-table` creates it with the table.
//!
//! The server needs `dynamodb:GetItem`, `PutItem`, `UpdateItem` and `DeleteItem` on the table
//! (`/readyz` probes with `GetItem`); `create-table` also needs `CreateTable` and `DescribeTable`.
//! Reads are strongly consistent, so a change is seen by the next read after the cache expires.
//! Calls use the standard AWS environment (`AWS_REGION`, `AWS_ENDPOINT_URL`, credentials) and
//! are bounded in time; the SDK's standard retries apply within that bound.

use std::collections::HashMap;
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::client::Waiters;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection, ProjectionType, ScalarAttributeType};

use super::{Secret, StoreError, StoredToken, TokenStatus, new_version, now_ms};

/// Longest a call may take, retries included.
const CALL_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest one attempt may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(1500);
/// A key no pixel has (pixel ids are digits), read by `/readyz`.
const PROBE_KEY: &str = "pixelgate-readyz-probe";

/// The DynamoDB token store.
#[derive(Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

impl DynamoStore {
    /// A store over `table` from the standard AWS environment.
    pub async fn from_env(table: &str) -> anyhow::Result<DynamoStore> {
        let sdk = aws_config::defaults(BehaviorVersion::latest())
            .timeout_config(TimeoutConfig::builder().connect_timeout(CONNECT_TIMEOUT).operation_attempt_timeout(ATTEMPT_TIMEOUT).operation_timeout(CALL_TIMEOUT).build())
            .load()
            .await;
        if sdk.region().is_none() {
            anyhow::bail!("no AWS region configured: set AWS_REGION (needed by --tokens dynamodb)");
        }
        Ok(DynamoStore::with_client(Client::new(&sdk), table))
    }

    /// A store over `table` through `client` (tests wrap the client to count its requests).
    pub fn with_client(client: Client, table: &str) -> DynamoStore {
        DynamoStore { client, table: table.to_owned() }
    }

    /// The table name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The client (the registry's DynamoDB backend shares it, and its timeouts).
    pub fn client(&self) -> &Client {
        &self.client
    }

    fn key(pixel_id: &str) -> AttributeValue {
        AttributeValue::S(pixel_id.to_owned())
    }

    /// The pixel's token, if one is stored.
    pub async fn get(&self, pixel_id: &str) -> Result<Option<StoredToken>, StoreError> {
        let out = self.client.get_item().table_name(&self.table).key("pixel_id", Self::key(pixel_id)).consistent_read(true).send().await.map_err(|e| self.error("GetItem", e))?;
        out.item().map(|item| parse_item(pixel_id, item)).transpose()
    }

    /// Stores or replaces the pixel's token, active, with a fresh version.
    pub async fn set(&self, pixel_id: &str, token: Secret) -> Result<StoredToken, StoreError> {
        let stored = StoredToken { token, status: TokenStatus::Active, updated_at_ms: now_ms(), version: new_version() };
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pixel_id", Self::key(pixel_id))
            .item("access_token", AttributeValue::S(stored.token.expose().to_owned()))
            .item("status", AttributeValue::S(stored.status.as_str().into()))
            .item("updated_at", AttributeValue::N(stored.updated_at_ms.to_string()))
            .item("version", AttributeValue::N(stored.version.to_string()))
            .send()
            .await
            .map_err(|e| self.error("PutItem", e))?;
        Ok(stored)
    }

    /// Removes the pixel's token; `false` if there was none.
    pub async fn delete(&self, pixel_id: &str) -> Result<bool, StoreError> {
        let result = self.client.delete_item().table_name(&self.table).key("pixel_id", Self::key(pixel_id)).condition_expression("attribute_exists(pixel_id)").send().await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => Ok(false),
            Err(e) => Err(self.error("DeleteItem", e)),
        }
    }

    /// Marks the token invalid if it is still the active one of `version`; `true` if it did.
    pub async fn mark_invalid(&self, pixel_id: &str, version: u64) -> Result<bool, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pixel_id", Self::key(pixel_id))
            .update_expression("SET #status = :invalid, updated_at = :now")
            .condition_expression("version = :version AND #status = :active")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":invalid", AttributeValue::S(TokenStatus::Invalid.as_str().into()))
            .expression_attribute_values(":active", AttributeValue::S(TokenStatus::Active.as_str().into()))
            .expression_attribute_values(":now", AttributeValue::N(now_ms().to_string()))
            .expression_attribute_values(":version", AttributeValue::N(version.to_string()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => Ok(false),
            Err(e) => Err(self.error("UpdateItem", e)),
        }
    }

    /// Every pixel with an active token, listed by a `Scan` of the table (one request per 1 MB
    /// page), reading only the key and the status. `pages` counts the requests made.
    pub async fn active_pixels(&self, pages: &mut u64) -> Result<Vec<String>, StoreError> {
        let mut out = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.table)
                .projection_expression("pixel_id, #status")
                .filter_expression("#status = :active")
                .expression_attribute_names("#status", "status")
                .expression_attribute_values(":active", AttributeValue::S(TokenStatus::Active.as_str().into()))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| self.error("Scan", e))?;
            *pages += 1;
            out.extend(page.items().iter().filter_map(|item| item.get("pixel_id").and_then(|v| v.as_s().ok()).cloned()));
            match page.last_evaluated_key() {
                Some(key) if !key.is_empty() => start = Some(key.clone()),
                _ => return Ok(out),
            }
        }
    }

    /// Can the table be read? A `GetItem` of a key no pixel has, so the server needs no
    /// permission beyond the ones it uses anyway.
    pub async fn check(&self) -> Result<(), StoreError> {
        self.client
            .get_item()
            .table_name(&self.table)
            .key("pixel_id", Self::key(PROBE_KEY))
            .projection_expression("pixel_id")
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.error("GetItem", e))
    }

    /// Creates the table (on-demand billing) with the registry's index `by_group` and waits until
    /// it is active; `false` if it already existed, in which case the index is added to it if it
    /// lacks it (a table made before accounts existed).
    pub async fn create_table(&self) -> Result<bool, StoreError> {
        let built = |e: aws_sdk_dynamodb::error::BuildError| StoreError::Unavailable(e.to_string());
        let key = |name: &str, kind: KeyType| KeySchemaElement::builder().attribute_name(name).key_type(kind).build().map_err(built);
        let attr = |name: &str| AttributeDefinition::builder().attribute_name(name).attribute_type(ScalarAttributeType::S).build().map_err(built);
        let by_group = GlobalSecondaryIndex::builder()
            .index_name("by_group") // the registry's listings (`registry::kv::dynamodb::INDEX`)
            .key_schema(key("grp", KeyType::Hash)?)
            .key_schema(key("sk", KeyType::Range)?)
            .projection(Projection::builder().projection_type(ProjectionType::All).build())
            .build()
            .map_err(built)?;
        let request = self
            .client
            .create_table()
            .table_name(&self.table)
            .key_schema(key("pixel_id", KeyType::Hash)?)
            .attribute_definitions(attr("pixel_id")?)
            .attribute_definitions(attr("grp")?)
            .attribute_definitions(attr("sk")?)
            .global_secondary_indexes(by_group)
            .billing_mode(BillingMode::PayPerRequest);
        let created = match request.send().await {
            Ok(_) => true,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_in_use_exception()) => false,
            Err(e) => return Err(self.error("CreateTable", e)),
        };
        self.client
            .wait_until_table_exists()
            .table_name(&self.table)
            .wait(Duration::from_secs(120))
            .await
            .map_err(|e| StoreError::Unavailable(format!("table '{}' did not become active: {e}", self.table)))?;
        if !created {
            // A table made before accounts existed (Part I) has no index for the registry: add it.
            let described = self.client.describe_table().table_name(&self.table).send().await.map_err(|e| self.error("DescribeTable", e))?;
            let has_index = described.table().is_some_and(|t| t.global_secondary_indexes().iter().any(|i| i.index_name() == Some("by_group")));
            if !has_index {
                let by_group = aws_sdk_dynamodb::types::CreateGlobalSecondaryIndexAction::builder()
                    .index_name("by_group")
                    .key_schema(key("grp", KeyType::Hash)?)
                    .key_schema(key("sk", KeyType::Range)?)
                    .projection(Projection::builder().projection_type(ProjectionType::All).build())
                    .build()
                    .map_err(built)?;
                self.client
                    .update_table()
                    .table_name(&self.table)
                    .attribute_definitions(attr("grp")?)
                    .attribute_definitions(attr("sk")?)
                    .global_secondary_index_updates(aws_sdk_dynamodb::types::GlobalSecondaryIndexUpdate::builder().create(by_group).build())
                    .send()
                    .await
                    .map_err(|e| self.error("UpdateTable", e))?;
                tracing::info!(table = %self.table, "added the registry's index by_group to an existing table");
            }
        }
        Ok(created)
    }

    /// One line about a failed call: its kind and the service's error code and message (which
    /// never echo item values), never the request.
    fn error<E: ProvideErrorMetadata, R>(&self, op: &str, err: SdkError<E, R>) -> StoreError {
        let what = match &err {
            SdkError::TimeoutError(_) => "timed out".to_owned(),
            SdkError::DispatchFailure(_) => "cannot reach DynamoDB (check AWS_REGION / AWS_ENDPOINT_URL and the network)".to_owned(),
            SdkError::ServiceError(_) if err.code() == Some("ResourceNotFoundException") => {
                format!("table '{}' does not exist (--dynamodb-table [PIXELGATE_DYNAMODB_TABLE])", self.table)
            }
            SdkError::ServiceError(_) => format!("{}: {}", err.code().unwrap_or("error"), err.message().unwrap_or("no message")),
            _ => "unexpected response".to_owned(),
        };
        StoreError::Unavailable(format!("DynamoDB {op} on '{}': {what}", self.table))
    }
}

fn parse_item(pixel_id: &str, item: &HashMap<String, AttributeValue>) -> Result<StoredToken, StoreError> {
    let bad = |attr: &str| StoreError::Malformed(format!("pixel {pixel_id}: attribute '{attr}' missing or of the wrong type"));
    let s = |attr: &str| item.get(attr).and_then(|v| v.as_s().ok()).ok_or_else(|| bad(attr));
    let n = |attr: &str| item.get(attr).and_then(|v| v.as_n().ok()).ok_or_else(|| bad(attr));
    Ok(StoredToken {
        token: Secret::new(s("access_token")?.as_str()),
        status: TokenStatus::parse(s("status")?).ok_or_else(|| bad("status"))?,
        updated_at_ms: n("updated_at")?.parse().map_err(|_| bad("updated_at"))?,
        version: n("version")?.parse().map_err(|_| bad("version"))?,
    })
}
