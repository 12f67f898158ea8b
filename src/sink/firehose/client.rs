//! The seam between the sink and the service: [`PutRecords`] does exactly one `PutRecordBatch`
//! call and answers in our own types, so the retry logic never sees an SDK type and a scripted
//! fake can stand in for Firehose in tests (partial failures, throttling, timeouts).
//!
//! [`SdkFirehose`] is the real implementation over `aws-sdk-firehose`, configured from the
//! standard AWS environment (`AWS_REGION`, `AWS_ENDPOINT_URL[_FIREHOSE]`, credentials, …).

use std::future::Future;
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_firehose::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_firehose::primitives::Blob;
use aws_sdk_firehose::types::{DeliveryStreamStatus, Record};
use bytes::Bytes;

/// One `PutRecordBatch` call. Implementations do not retry: [`super::retry`] decides.
pub trait PutRecords: Send + Sync + 'static {
    /// Sends `records` (each a complete newline-terminated line) as one request, in order.
    fn put_record_batch(&self, records: &[Bytes]) -> impl Future<Output = Result<PutOutcome, PutError>> + Send;
}

/// The answer to a request that the service processed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutOutcome {
    /// One entry per record sent, in request order: `None` when the record was accepted.
    pub failures: Vec<Option<RecordFailure>>,
}

impl PutOutcome {
    /// Every one of `n` records accepted.
    pub fn all_accepted(n: usize) -> Self {
        PutOutcome { failures: vec![None; n] }
    }
}

/// Why the service did not accept one record of a batch (`FailedPutCount > 0`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordFailure {
    /// `ServiceUnavailableException` or `InternalFailure`, per the API reference.
    pub code: String,
    /// The service's words.
    pub message: String,
}

/// Why a whole request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PutError {
    /// The stream's throughput limit was hit (`ThrottlingException`, HTTP 429, …).
    #[error("throttled: {0}")]
    Throttled(String),
    /// `ServiceUnavailableException` or an HTTP 5xx answer.
    #[error("service unavailable: {0}")]
    Unavailable(String),
    /// No answer within the attempt timeout.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The service could not be reached or hung up (connection refused, reset, DNS, TLS, a
    /// garbled answer).
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// `ResourceNotFoundException`: the stream does not exist (any more).
    #[error("delivery stream not found: {0}")]
    NotFound(String),
    /// `InvalidArgumentException`: the request itself is invalid and will never be accepted.
    #[error("request rejected: {0}")]
    Rejected(String),
    /// Anything else the service said (access denied, KMS, expired credentials, …).
    #[error("{0}")]
    Other(String),
}

impl PutError {
    /// A metric label from a closed set.
    pub fn label(&self) -> &'static str {
        match self {
            PutError::Throttled(_) => "throttled",
            PutError::Unavailable(_) => "unavailable",
            PutError::Timeout(_) => "timeout",
            PutError::Unreachable(_) => "unreachable",
            PutError::NotFound(_) => "not_found",
            PutError::Rejected(_) => "rejected",
            PutError::Other(_) => "other",
        }
    }
}

/// What the start-up check found out about the stream.
#[derive(Debug, PartialEq, Eq)]
pub enum StreamCheck {
    /// The stream exists and accepts records.
    Active,
    /// The stream does not exist: a configuration error.
    Missing(String),
    /// The check could not tell (unreachable, no permission to describe, stream still being
    /// created); the sink starts degraded and spools until records go through.
    Unknown(String),
}

/// `PutRecordBatch` through the AWS SDK.
#[derive(Debug, Clone)]
pub struct SdkFirehose {
    client: aws_sdk_firehose::Client,
    stream: String,
    region: String,
}

impl SdkFirehose {
    /// A client for `stream` from the standard AWS environment. The SDK's own retries are off:
    /// a retry of a whole `PutRecordBatch` would resend records it had accepted, so
    /// [`super::retry`] retries per record instead. `connect_timeout` bounds connecting; the
    /// attempt as a whole is bounded by the caller.
    pub async fn from_env(stream: &str, connect_timeout: Duration) -> Result<SdkFirehose, String> {
        let sdk = aws_config::defaults(BehaviorVersion::latest())
            .retry_config(RetryConfig::disabled())
            .timeout_config(TimeoutConfig::builder().connect_timeout(connect_timeout).build())
            .load()
            .await;
        let region = sdk.region().map(|r| r.to_string()).ok_or("no AWS region configured: set AWS_REGION (needed by --sink firehose)")?;
        Ok(SdkFirehose { client: aws_sdk_firehose::Client::new(&sdk), stream: stream.to_owned(), region })
    }

    /// The AWS region in use, for messages.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// `DescribeDeliveryStream`: does the stream exist and accept records?
    pub async fn check_stream(&self) -> StreamCheck {
        match self.client.describe_delivery_stream().delivery_stream_name(&self.stream).send().await {
            Ok(out) => match out.delivery_stream_description().map(|d| d.delivery_stream_status()) {
                Some(DeliveryStreamStatus::Active) => StreamCheck::Active,
                Some(DeliveryStreamStatus::Deleting) => StreamCheck::Missing(format!("delivery stream '{}' is being deleted", self.stream)),
                status => StreamCheck::Unknown(format!("delivery stream '{}' is {}", self.stream, status.map_or("of unknown status", |s| s.as_str()))),
            },
            Err(err) if err.as_service_error().is_some_and(|e| e.is_resource_not_found_exception()) => {
                StreamCheck::Missing(format!("delivery stream '{}' does not exist in {}", self.stream, self.region))
            }
            Err(err) => StreamCheck::Unknown(format!("cannot describe delivery stream '{}': {}", self.stream, from_sdk(err))),
        }
    }
}

impl PutRecords for SdkFirehose {
    async fn put_record_batch(&self, records: &[Bytes]) -> Result<PutOutcome, PutError> {
        let sent = records.len();
        let records = records.iter().map(|r| Record::builder().data(Blob::new(r.to_vec())).build().expect("data is set")).collect();
        let out = self.client.put_record_batch().delivery_stream_name(&self.stream).set_records(Some(records)).send().await.map_err(from_sdk)?;
        let failed = usize::try_from(out.failed_put_count()).unwrap_or(0);
        let failures: Vec<_> = out.request_responses().iter().map(entry_failure).collect();
        if failures.len() == sent && failures.iter().flatten().count() == failed {
            return Ok(PutOutcome { failures });
        }
        if failed == 0 {
            return Ok(PutOutcome::all_accepted(sent));
        }
        // The answer does not say which records failed: resend them all (at least once).
        let unmatched = RecordFailure { code: "UnmatchedResponse".into(), message: format!("{failed} failed, {} responses for {sent} records", failures.len()) };
        Ok(PutOutcome { failures: vec![Some(unmatched); sent] })
    }
}

fn entry_failure(e: &aws_sdk_firehose::types::PutRecordBatchResponseEntry) -> Option<RecordFailure> {
    e.error_code().map(|code| RecordFailure { code: code.to_owned(), message: e.error_message().unwrap_or_default().to_owned() })
}

/// Translates an SDK error into our terms; the retry decision is [`super::retry`]'s.
fn from_sdk<E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static>(err: SdkError<E, aws_sdk_firehose::config::http::HttpResponse>) -> PutError {
    let text = crate::telemetry::error_chain(&err);
    match &err {
        SdkError::TimeoutError(_) => PutError::Unreachable(format!("timed out: {text}")),
        SdkError::DispatchFailure(_) => PutError::Unreachable(text),
        // An answer the SDK could not read (an HTML error page from a proxy or load balancer):
        // its status still says what kind of failure it is.
        SdkError::ResponseError(_) => match err.raw_response().map(|r| r.status().as_u16()) {
            Some(429) => PutError::Throttled(format!("HTTP 429: {text}")),
            Some(status) if status >= 500 => PutError::Unavailable(format!("HTTP {status}: {text}")),
            _ => PutError::Unreachable(text),
        },
        SdkError::ConstructionFailure(_) => PutError::Other(text),
        SdkError::ServiceError(ctx) => {
            let status = ctx.raw().status().as_u16();
            let code = ctx.err().code().unwrap_or_default();
            let message = format!("{} (HTTP {status}): {}", if code.is_empty() { "error" } else { code }, ctx.err().message().unwrap_or_default());
            match code {
                "ThrottlingException" | "Throttling" | "TooManyRequestsException" | "LimitExceededException" | "SlowDown" => PutError::Throttled(message),
                _ if status == 429 => PutError::Throttled(message),
                "ServiceUnavailableException" | "InternalFailure" => PutError::Unavailable(message),
                _ if status >= 500 => PutError::Unavailable(message),
                "ResourceNotFoundException" => PutError::NotFound(message),
                "InvalidArgumentException" => PutError::Rejected(message),
                _ => PutError::Other(message),
            }
        }
        _ => PutError::Other(text),
    }
}
