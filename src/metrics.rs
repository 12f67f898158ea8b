//! Metric names, their descriptions, and the process-wide Prometheus recorder
//! (`docs/operations.md#metrics`). The `/metrics` endpoint is `runtime::metrics_listener`.
//!
//! Labels only ever take values from closed sets (flag names, outlet names, reasons, methods),
//! so no request data, personal data or token can reach a metric.

use std::sync::OnceLock;

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Pixel requests answered, by method.
pub const HITS: &str = "pixelgate_hits_total";
/// Pixel reads the server's pixel lane answered (counted in [`HITS`] too).
pub const LANE_ANSWERS: &str = "pixelgate_lane_answers_total";
/// Flags raised on hits, by flag.
pub const HIT_FLAGS: &str = "pixelgate_hit_flags_total";
/// Records appended to a sink (acknowledged by Firehose, for the Firehose sink).
pub const RECORDS_WRITTEN: &str = "pixelgate_records_written_total";
/// Records given up, by outlet and reason.
pub const RECORDS_DROPPED: &str = "pixelgate_records_dropped_total";
/// Failed write attempts (the records are retried).
pub const SINK_WRITE_ERRORS: &str = "pixelgate_sink_write_errors_total";
/// Records per sink write (per `PutRecordBatch` request for Firehose).
pub const SINK_BATCH_RECORDS: &str = "pixelgate_sink_batch_records";
/// `PutRecordBatch` requests, by outcome.
pub const FIREHOSE_REQUESTS: &str = "pixelgate_firehose_requests_total";
/// Records sent again after a failure, by reason.
pub const FIREHOSE_RETRIES: &str = "pixelgate_firehose_retries_total";
/// Records written to the disk spool while Firehose could not take them.
pub const RECORDS_SPOOLED: &str = "pixelgate_records_spooled_total";
/// Spooled records delivered by the replay.
pub const RECORDS_REPLAYED: &str = "pixelgate_records_replayed_total";
/// Bytes in the disk spool.
pub const SPOOL_BYTES: &str = "pixelgate_spool_bytes";
/// Jobs waiting in an outlet queue (a raw-record outlet's job carries one intake batch: up to 64 records).
pub const QUEUE_DEPTH: &str = "pixelgate_queue_depth";
/// Bytes forwarding holds (hits queued and batched, requests in flight), counted in
/// `--forward-max-bytes`: now, and the most at once since the start.
pub const FORWARD_HELD_BYTES: &str = "pixelgate_forward_held_bytes";
/// Open client connections.
pub const CONNECTIONS_OPEN: &str = "pixelgate_connections_open";
/// Connections accepted.
pub const CONNECTIONS_ACCEPTED: &str = "pixelgate_connections_accepted_total";
/// Connections closed for sending no request in time.
pub const CONNECTIONS_TIMED_OUT: &str = "pixelgate_connections_timed_out_total";
/// Token-cache lookups, by result (`hit`, `miss`).
pub const TOKEN_CACHE: &str = "pixelgate_token_cache_total";
/// Token-store reads made by the token cache (a listing of the index counts its requests).
pub const TOKEN_STORE_READS: &str = "pixelgate_token_store_reads_total";
/// Registry reads made for the hot path: the listing of registered pixels (counting its requests)
/// and one read per registered pixel per TTL.
pub const REGISTRY_STORE_READS: &str = "pixelgate_registry_store_reads_total";
/// Events sent to an input, by source (`api`, `sqs`, `eventbridge`) and outcome (`accepted`,
/// `rejected`).
pub const INPUT_EVENTS: &str = "pixelgate_input_events_total";
/// Credentials-invalidated notices, by channel (`eventbridge`, `webhook`) and outcome (`sent`,
/// `failed`, `refused` (a webhook target that is not public), `dropped`).
pub const NOTIFICATIONS: &str = "pixelgate_notifications_total";
/// Pixels with an active token, as the index last listed them.
pub const TOKEN_INDEX_PIXELS: &str = "pixelgate_token_index_pixels";
static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the Prometheus recorder once per process and returns its handle. Later calls (tests
/// that build several apps in one process) share the first recorder.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(&[1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 4096.0])
                .expect("bucket list is non-empty")
                .set_buckets_for_metric(Matcher::Full(CAPI_REQUEST_SECONDS.into()), &[0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 3.0, 6.0])
                .expect("bucket list is non-empty")
                .set_buckets_for_metric(Matcher::Full(LAMBDA_DRAIN_SECONDS.into()), &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0])
                .expect("bucket list is non-empty")
                .build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder was installed first, e.g. by an embedding program;
            // metrics then go there and /metrics shows what this handle sees.
            let _ = metrics::set_global_recorder(recorder);
            describe();
            handle
        })
        .clone()
}

fn describe() {
    describe_counter!(HITS, Unit::Count, "Pixel requests answered, by method.");
    describe_counter!(LANE_ANSWERS, Unit::Count, "Pixel reads the server's pixel lane answered from their parsed heads (also in pixelgate_hits_total).");
    describe_counter!(HIT_FLAGS, Unit::Count, "Flags raised on hits (what was wrong or notable), by flag.");
    describe_counter!(RECORDS_WRITTEN, Unit::Count, "Raw records written to the sink (acknowledged by Firehose, for the Firehose sink), by sink.");
    describe_counter!(RECORDS_DROPPED, Unit::Count, "Records given up, by outlet and reason.");
    describe_counter!(SINK_WRITE_ERRORS, Unit::Count, "Failed sink write attempts; the records are retried.");
    describe_histogram!(SINK_BATCH_RECORDS, Unit::Count, "Records per sink write (per PutRecordBatch request for Firehose).");
    describe_counter!(
        FIREHOSE_REQUESTS,
        Unit::Count,
        "Firehose PutRecordBatch requests, by outcome (ok, partial, throttled, unavailable, timeout, unreachable, not_found, rejected, other)."
    );
    describe_counter!(FIREHOSE_RETRIES, Unit::Count, "Records sent to Firehose again after a failure, by reason.");
    describe_counter!(RECORDS_SPOOLED, Unit::Count, "Records written to the disk spool while Firehose could not take them.");
    describe_counter!(RECORDS_REPLAYED, Unit::Count, "Spooled records delivered to Firehose by the replay.");
    describe_gauge!(SPOOL_BYTES, Unit::Bytes, "Bytes in the disk spool.");
    describe_gauge!(
        FORWARD_HELD_BYTES,
        Unit::Bytes,
        "Bytes forwarding holds, within --forward-max-bytes (at=\"now\", and at=\"peak\": the most since the start), as of the scrape."
    );
    describe_gauge!(QUEUE_DEPTH, Unit::Count, "Jobs waiting in an outlet queue (a job is a batch of up to 64 records, or of up to 64 hits for the forwarder).");
    describe_gauge!(CONNECTIONS_OPEN, Unit::Count, "Open client connections, by listener.");
    describe_counter!(CONNECTIONS_ACCEPTED, Unit::Count, "Client connections accepted, by listener.");
    describe_counter!(CONNECTIONS_TIMED_OUT, Unit::Count, "Connections closed by a timeout: no complete request head in time, or an answer the client would not read.");
    describe_counter!(NOTIFICATIONS, Unit::Count, "Credentials-invalidated notices, by channel (eventbridge, webhook) and outcome (sent, failed, refused, dropped).");
    describe_counter!(INPUT_EVENTS, Unit::Count, "Events sent to an input (POST /v1/events, SQS, EventBridge), by source and outcome (accepted, rejected).");
    describe_counter!(
        REGISTRY_STORE_READS,
        Unit::Count,
        "Registry reads made for hits: listings of registered pixels (their requests) and reads of a registered pixel's settings."
    );
}

/// Conversions API events by outcome (`sent`, `failed`, `skipped`) and reason (closed sets).
pub const CAPI_EVENTS: &str = "pixelgate_capi_events_total";
/// Conversions API requests by result (`ok`, `timeout`, `unreachable`, `rate_limited`, …).
pub const CAPI_REQUESTS: &str = "pixelgate_capi_requests_total";
/// Events per Conversions API request.
pub const CAPI_BATCH_EVENTS: &str = "pixelgate_capi_batch_events";
/// Duration of one Conversions API request, in seconds.
pub const CAPI_REQUEST_SECONDS: &str = "pixelgate_capi_request_seconds";
/// Events sent again after a request that timed out (which may have arrived: counted twice).
pub const CAPI_POSSIBLE_DUPLICATES: &str = "pixelgate_capi_possible_duplicates_total";
/// The congestion window's limit: requests that may be in flight to a destination.
pub const CAPI_CONCURRENCY_LIMIT: &str = "pixelgate_capi_concurrency_limit";
/// Under Lambda: time from the INVOKE event to the invocation's work being delivered.
pub const LAMBDA_DRAIN_SECONDS: &str = "pixelgate_lambda_drain_seconds";
/// Under Lambda: invocations whose work was not delivered by the deadline.
pub const LAMBDA_DRAIN_TIMEOUTS: &str = "pixelgate_lambda_drain_timeouts_total";
/// Under Lambda: events of no kind the function takes.
pub const LAMBDA_BAD_EVENTS: &str = "pixelgate_lambda_bad_events_total";
/// Access tokens Meta called invalid (code 190 / 102); forwarding for the pixel stops.
pub const CAPI_TOKENS_INVALIDATED: &str = "pixelgate_capi_tokens_invalidated_total";
/// `custom_data` values dropped because they did not parse, by key (closed set).
pub const CAPI_CUSTOM_DATA_DROPPED: &str = "pixelgate_capi_custom_data_dropped_total";

/// Describes the Conversions API metrics (called when the forwarder starts; a no-op before the
/// recorder is installed).
pub fn describe_capi() {
    describe_counter!(CAPI_EVENTS, Unit::Count, "Conversions API events, by outcome (sent, failed, skipped, shed) and reason.");
    describe_counter!(CAPI_POSSIBLE_DUPLICATES, Unit::Count, "Events sent again after a request that timed out (the first may have arrived).");
    describe_gauge!(CAPI_CONCURRENCY_LIMIT, Unit::Count, "Requests that may be in flight to a destination (the congestion window), by destination.");
    describe_counter!(
        CAPI_REQUESTS,
        Unit::Count,
        "Conversions API requests, by result (ok, timeout, unreachable, rate_limited, server_error, invalid_token, invalid_parameter, permission_denied, client_error, client_unavailable)."
    );
    describe_histogram!(CAPI_BATCH_EVENTS, Unit::Count, "Events per Conversions API request.");
    describe_histogram!(CAPI_REQUEST_SECONDS, Unit::Seconds, "Duration of one Conversions API request.");
    describe_histogram!(LAMBDA_DRAIN_SECONDS, Unit::Seconds, "Under Lambda: time from the INVOKE event to the invocation's records and Conversions API calls being done.");
    describe_counter!(LAMBDA_DRAIN_TIMEOUTS, Unit::Count, "Under Lambda: invocations whose work was not done by the deadline (it continues at the next invocation).");
    describe_counter!(LAMBDA_BAD_EVENTS, Unit::Count, "Under Lambda: events of no kind the function takes (not an HTTP request, an SQS batch or an EventBridge event).");
    describe_counter!(CAPI_TOKENS_INVALIDATED, Unit::Count, "Access tokens Meta called invalid (code 190/102); forwarding for the pixel stops until a new token is set.");
    describe_counter!(CAPI_CUSTOM_DATA_DROPPED, Unit::Count, "custom_data values dropped because they did not parse, by key.");
}
