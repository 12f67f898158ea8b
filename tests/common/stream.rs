//! A Firehose delivery stream in moto, of one test's own, and the records it delivered, read back
//! from its S3 destination with `aws-sdk-s3` (one object per `PutRecordBatch`). Used by
//! `tests/firehose` and `tests/lambda`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_firehose::types::{CompressionFormat, ExtendedS3DestinationConfiguration};
use serde_json::Value;

use super::moto::sdk_config;

/// A delivery stream of this test's own, writing to a bucket of its own.
pub struct Stream {
    pub name: String,
    pub bucket: String,
    s3: aws_sdk_s3::Client,
}

static NEXT: AtomicU64 = AtomicU64::new(0);

/// Creates a bucket and a delivery stream into it, named after `test`.
pub async fn create_stream(test: &str) -> Stream {
    let sdk = sdk_config().await;
    let s3 = aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&sdk).force_path_style(true).build());
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let name = format!("{test}-{}-{n}", std::process::id()).replace('_', "-");
    let bucket = format!("b-{name}");
    s3.create_bucket().bucket(&bucket).send().await.expect("bucket created");
    let destination = ExtendedS3DestinationConfiguration::builder()
        .bucket_arn(format!("arn:aws:s3:::{bucket}"))
        .role_arn("arn:aws:iam::123456789012:role/firehose")
        .prefix("raw/")
        .compression_format(CompressionFormat::Uncompressed)
        .build()
        .unwrap();
    aws_sdk_firehose::Client::new(&sdk)
        .create_delivery_stream()
        .delivery_stream_name(&name)
        .extended_s3_destination_configuration(destination)
        .send()
        .await
        .expect("delivery stream created");
    Stream { name, bucket, s3 }
}

impl Stream {
    /// Deletes the (empty) destination bucket: moto then answers `PutRecordBatch` with HTTP 500.
    pub async fn remove_bucket(&self) {
        self.s3.delete_bucket().bucket(&self.bucket).send().await.expect("bucket deleted");
    }

    /// Creates the destination bucket again.
    pub async fn restore_bucket(&self) {
        self.s3.create_bucket().bucket(&self.bucket).send().await.expect("bucket created");
    }

    /// Every object the stream wrote (one per `PutRecordBatch`), as bytes, in key order.
    pub async fn objects(&self) -> Vec<Vec<u8>> {
        let mut keys = Vec::new();
        let mut pages = self.s3.list_objects_v2().bucket(&self.bucket).into_paginator().send();
        while let Some(page) = pages.next().await {
            keys.extend(page.expect("listing").contents().iter().filter_map(|o| o.key().map(str::to_owned)));
        }
        keys.sort();
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            assert!(key.starts_with("raw/"), "{key}");
            let body = self.s3.get_object().bucket(&self.bucket).key(&key).send().await.expect("object").body.collect().await.unwrap();
            out.push(body.into_bytes().to_vec());
        }
        out
    }

    /// The records delivered so far, each checked to be one newline-terminated JSON line.
    pub async fn records(&self) -> Vec<Value> {
        let mut out = Vec::new();
        for object in self.objects().await {
            assert!(object.ends_with(b"\n"), "an object does not end with a newline");
            for line in object.split_inclusive(|&b| b == b'\n') {
                out.push(serde_json::from_slice(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {}", String::from_utf8_lossy(line))));
            }
        }
        out
    }

    /// How often each event id was delivered.
    pub async fn delivered_ids(&self) -> HashMap<String, usize> {
        let mut ids = HashMap::new();
        for r in self.records().await {
            *ids.entry(r["event_id"].as_str().unwrap().to_owned()).or_default() += 1;
        }
        ids
    }

    /// Waits until at least `n` records have arrived, or `within` has passed.
    pub async fn wait_for(&self, n: usize, within: Duration) -> HashMap<String, usize> {
        let started = Instant::now();
        loop {
            let ids = self.delivered_ids().await;
            if ids.values().sum::<usize>() >= n || started.elapsed() > within {
                return ids;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
