//! The drain extension: each invocation's record reaches Firehose (moto) and its Conversions API
//! call (the fake Graph API) completes after the answer is posted and before the extension asks
//! for its next event; never later than the deadline; and what remains at `SIGTERM` is flushed.
//! A notice an invocation raises reaches the account's webhook within it too.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::fake_graph::{Answer, FakeGraph};
use crate::common::lambda_emulator::Emulator;
use crate::common::moto::{aws_env, moto};
use crate::common::process::{pixelgate, tokens};
use crate::common::proxy::SlowProxy;
use crate::common::stream::create_stream;
use crate::common::timing::{ms, quantile};
use crate::common::webhook_receiver::Receiver;
use crate::helpers::{pixel_event, spawn};

const DRAIN: &str = "pixelgate-drain";
const FIREHOSE_DELAY: Duration = Duration::from_millis(50);
/// `--secrets-key` of the DynamoDB store (32 bytes, base64).
const SECRETS_KEY: &str = "cGl4ZWxnYXRlLXRlc3RzLXNlY3JldHMta2V5LTMyYiE=";

/// The function's environment for the Firehose sink on `endpoint` and the fake Graph API.
fn firehose_env(endpoint: &str, stream: &str, graph: &FakeGraph) -> Vec<(&'static str, String)> {
    let mut env = aws_env(endpoint);
    env.extend([
        ("PIXELGATE_SINK", "firehose".into()),
        ("PIXELGATE_FIREHOSE_STREAM", stream.to_owned()),
        ("PIXELGATE_GRAPH_URL", graph.url()),
        ("PIXELGATE_LOG_LEVEL", "debug".into()),
    ]);
    env
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

#[test]
fn the_answer_goes_first_and_the_extension_waits_for_firehose_and_graph() {
    let rt = runtime();
    let stream = rt.block_on(create_stream("lambda-drain"));
    let firehose = SlowProxy::start(&moto().endpoint, FIREHOSE_DELAY);
    let graph = FakeGraph::start();
    let (pixel, token) = ("4242424242", "EAAlambdaDrainTestToken0001");
    graph.set_token(pixel, token);
    graph.set_delay(Duration::from_millis(200));
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    tokens(&data, &["set", pixel], token, &[]).json();

    let emulator = Emulator::start(Duration::from_secs(10));
    // Nothing leaves by age: only the drain's flush sends the record and the event.
    let mut env = firehose_env(&firehose.endpoint, &stream.name, &graph);
    env.extend([("PIXELGATE_FIREHOSE_FLUSH_INTERVAL", "60s".into()), ("PIXELGATE_CAPI_FLUSH_INTERVAL", "60s".into())]);
    let mut function = spawn(&emulator, &data, &env);
    emulator.wait_init(Duration::from_secs(20), || function.logs());

    for n in 0..3 {
        let id = format!("drain-{n}");
        let inv = emulator.invoke(pixel_event(pixel, &id));
        assert!(!inv.timed_out && inv.ended_at.is_some(), "{inv:?}\n{}", function.logs());
        assert_eq!(inv.response.as_ref().unwrap()["statusCode"], 200, "{inv:?}");
        let answered = inv.response_at.unwrap();
        let extension_next = inv.extension_next(DRAIN).unwrap();

        // This invocation's work: one PutRecordBatch and one Graph API request.
        let puts: Vec<_> = firehose.calls("PutRecordBatch").into_iter().filter(|c| c.received >= inv.dispatched_at).collect();
        assert_eq!(puts.len(), 1, "one PutRecordBatch per invocation: {puts:?}");
        let put = &puts[0];
        assert_eq!(put.status, 200, "{put:?}");
        let requests: Vec<_> = graph.requests().into_iter().filter(|r| r.received >= inv.dispatched_at).collect();
        assert_eq!(requests.len(), 1, "{requests:?}");
        let graph_done = requests[0].answered.expect("the Graph API answered");
        assert_eq!(requests[0].status, 200, "{:?}", requests[0]);

        // The answer was posted before either finished; the runtime was free for the next
        // invocation before them too; the extension asked for more only after both.
        assert!(answered < put.answered, "answer {:?} after Firehose's", put.answered - answered);
        assert!(answered < graph_done, "answer after the Graph API's");
        assert!(inv.runtime_next_at.unwrap() < put.answered, "the runtime waited for Firehose");
        assert!(extension_next >= put.answered, "the extension asked for more {} before Firehose answered", ms(put.answered - extension_next));
        assert!(extension_next >= graph_done, "the extension asked for more {} before the Graph API answered", ms(graph_done - extension_next));
        assert!(extension_next - answered < Duration::from_secs(1), "the drain took {} for a 50 ms Firehose and a 200 ms Graph API", ms(extension_next - answered));
        eprintln!(
            "invocation {n}: answer posted {} after dispatch; Firehose done +{}, Graph done +{}, extension next +{} after the answer",
            ms(answered - inv.dispatched_at),
            ms(put.answered - answered),
            ms(graph_done - answered),
            ms(extension_next - answered)
        );

        // Delivered before the next invocation, in a batch of its own.
        let records = rt.block_on(stream.records());
        assert_eq!(records.len(), n + 1, "{records:#?}");
        assert_eq!(rt.block_on(stream.objects()).len(), n + 1, "batching never spans invocations");
        assert_eq!(records.iter().filter(|r| r["event_id"] == id.as_str()).count(), 1);
        assert_eq!(graph.events().iter().filter(|e| e.event_id() == Some(&id)).count(), 1);
    }
    graph.assert_no_violations();
    let (status, took) = function.terminate();
    assert!(status.success(), "exit {status}: {}", function.logs());
    eprintln!("SIGTERM to exit: {}", ms(took));
    assert!(emulator.violations().is_empty(), "{:?}", emulator.violations());
    assert!(!function.logs().contains(token), "the token reached the log");
}

#[test]
fn the_deadline_bounds_the_drain_and_sigterm_flushes_what_remains() {
    let rt = runtime();
    let stream = rt.block_on(create_stream("lambda-deadline"));
    let graph = FakeGraph::start();
    let (pixel, token) = ("4343434343", "EAAlambdaDeadlineTestToken01");
    graph.set_token(pixel, token);
    graph.script(vec![Answer::Hang]);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    tokens(&data, &["set", pixel], token, &[]).json();

    let timeout = Duration::from_millis(1500);
    let emulator = Emulator::start(timeout);
    // Batches never leave by age here: only the drain's flush sends the record.
    let mut env = firehose_env(&moto().endpoint, &stream.name, &graph);
    env.push(("PIXELGATE_FIREHOSE_FLUSH_INTERVAL", "60s".into()));
    let mut function = spawn(&emulator, &data, &env);
    emulator.wait_init(Duration::from_secs(20), || function.logs());

    let inv = emulator.invoke(pixel_event(pixel, "deadline-1"));
    assert_eq!(inv.response.as_ref().unwrap()["statusCode"], 200);
    let ended = inv.ended_at.expect("the invocation ended");
    assert!(!inv.timed_out && ended < inv.deadline, "the drain ran past the deadline: {inv:?}");
    assert!(ended - inv.dispatched_at >= timeout / 2, "the drain gave up too early ({}) while the Graph API hung", ms(ended - inv.dispatched_at));
    // A hung Conversions API does not hold back the raw record.
    let records = rt.block_on(stream.records());
    assert_eq!(records.iter().filter(|r| r["event_id"] == "deadline-1").count(), 1, "{records:#?}");
    assert!(graph.requests().len() == 1, "{:?}", graph.requests());
    assert!(function.logs().contains("deadline came before"), "{}", function.logs());

    // SIGTERM: the Conversions API call still hanging is given up as a delivery record,
    // which reaches Firehose before the process exits, within the 500 ms Lambda allows.
    let (status, took) = function.terminate_within_500ms();
    eprintln!("SIGTERM to exit with a hung Graph API: {}", ms(took));
    let status = status.unwrap_or_else(|| panic!("still running 500 ms after SIGTERM (Lambda would SIGKILL it): {}", function.logs()));
    assert!(status.success(), "exit {status}: {}", function.logs());
    let records = rt.block_on(stream.records());
    let failed: Vec<&Value> = records.iter().filter(|r| r["event_id"] == "deadline-1" && r["schema"] == "pixelgate.delivery/1").collect();
    assert_eq!(failed.len(), 1, "{records:#?}\n{}", function.logs());
    assert_eq!(failed[0]["reason"], "shutdown", "{}", failed[0]);
    assert!(emulator.violations().is_empty(), "{:?}", emulator.violations());
}

#[test]
fn an_event_of_another_kind_is_an_error_and_releases_the_extension_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let emulator = Emulator::start(Duration::from_secs(5));
    let mut function = spawn(&emulator, &data, &[]);
    emulator.wait_init(Duration::from_secs(20), || function.logs());

    // Not an event pixelgate takes: the error's type names the problem, not a Rust type.
    let inv = emulator.invoke(json!({"source": "aws.s3", "Records": [{"eventSource": "aws:s3"}]}));
    assert!(inv.response.is_none(), "{inv:?}");
    let error = inv.error.as_ref().expect("an invocation error");
    assert_eq!(error["errorType"], "UnknownEventKind", "{error}");
    assert!(error["errorMessage"].as_str().unwrap().contains("an SQS batch or an EventBridge event"), "{error}");
    let ended = inv.ended_at.expect("ended");
    assert!(ended - inv.dispatched_at < Duration::from_secs(1), "the extension waited {} for an event the handler never took", ms(ended - inv.dispatched_at));

    // An EventBridge event whose detail is not an event: the invocation fails, so EventBridge
    // retries it and then sends it to the rule's dead-letter queue.
    let inv = emulator.invoke(json!({"id": "e-1", "source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}));
    let error = inv.error.as_ref().expect("an invocation error");
    assert_eq!(error["errorType"], "InvalidEvent", "{error}");
    assert!(error["errorMessage"].as_str().unwrap().contains("user_agent"), "{error}");

    let inv = emulator.invoke(pixel_event("1234567890", "after-error"));
    assert_eq!(inv.response.as_ref().unwrap()["statusCode"], 200, "{inv:?}");
    assert!(function.terminate().0.success(), "{}", function.logs());
    assert!(emulator.violations().is_empty(), "{:?}", emulator.violations());
}

/// Under Lambda the stream is checked after start-up: a missing one does not stop the function,
/// and still shows clearly: an error in the log naming it, `/readyz` answering 503 with the
/// reason, and the records kept in the spool at `SIGTERM` (the deliveries stop retrying at the
/// shutdown timeout although the sink is still waiting on them for the drain's flush).
#[test]
fn a_missing_stream_under_lambda_shows_in_the_log_and_readyz_and_records_spool() {
    let graph = FakeGraph::start();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let emulator = Emulator::start(Duration::from_secs(2));
    let mut function = spawn(&emulator, &data, &firehose_env(&moto().endpoint, "no-such-stream-lambda", &graph));
    emulator.wait_init(Duration::from_secs(20), || function.logs());
    let inv = emulator.invoke(pixel_event("1234567890", "to-the-spool"));
    assert_eq!(inv.response.as_ref().unwrap()["statusCode"], 200, "the pixel is answered: {inv:?}");
    let mut ready = pixel_event("1234567890", "unused");
    ready["rawPath"] = "/readyz".into();
    ready["rawQueryString"] = "".into();
    ready["routeKey"] = "GET /readyz".into();
    ready["requestContext"]["http"]["path"] = "/readyz".into();
    ready.as_object_mut().unwrap().remove("queryStringParameters");
    let inv = emulator.invoke(ready);
    let r = inv.response.as_ref().unwrap();
    assert_eq!(r["statusCode"], 503, "{r}");
    assert!(r["body"].as_str().unwrap().contains("no-such-stream-lambda"), "{r}");
    assert!(function.terminate().0.success(), "{}", function.logs());
    let logs = function.logs();
    assert!(logs.contains("ERROR") && logs.contains("no-such-stream-lambda") && logs.contains("does not exist"), "{logs}");
    let spooled: u64 = crate::common::records::files_below(&data.join("spool")).iter().map(|p| std::fs::metadata(p).map_or(0, |m| m.len())).sum();
    assert!(spooled > 0, "the record is kept in the spool: {logs}");
    assert!(!logs.contains("outlets not drained within the shutdown budget"), "{logs}");
}

/// A process's peak resident set (`VmHWM`), in KiB.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("VmHWM:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The figures for the README: start to the first `invocation/next`, and the time the drain adds
/// per invocation with a Firehose that answers in 50 ms (no Conversions API token, so Firehose
/// is the only work). `bench/lambda.sh` runs this against the release binary.
#[test]
fn figures_start_to_first_next_and_drain_with_a_50ms_firehose() {
    const INVOCATIONS: usize = 40;
    let rt = runtime();
    let stream = rt.block_on(create_stream("lambda-figures"));
    let firehose = SlowProxy::start(&moto().endpoint, FIREHOSE_DELAY);
    let graph = FakeGraph::start();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let emulator = Emulator::start(Duration::from_secs(10));
    let mut function = spawn(&emulator, &data, &firehose_env(&firehose.endpoint, &stream.name, &graph));
    let init = emulator.wait_init(Duration::from_secs(20), || function.logs()) - function.spawned_at();

    let (mut after_answer, mut whole) = (Vec::new(), Vec::new());
    for n in 0..INVOCATIONS {
        let inv = emulator.invoke(pixel_event("1234567890", &format!("figure-{n}")));
        assert!(!inv.timed_out, "{inv:?}");
        let (answered, next) = (inv.response_at.unwrap(), inv.extension_next(DRAIN).unwrap());
        assert!(next - inv.dispatched_at >= FIREHOSE_DELAY, "the extension asked for more before Firehose could have answered: {inv:?}");
        after_answer.push(next.saturating_duration_since(answered));
        whole.push(inv.ended_at.unwrap() - inv.dispatched_at);
    }
    let peak_rss = peak_rss_kib(function.process.pid());
    assert!(function.terminate().0.success(), "{}", function.logs());
    assert_eq!(firehose.calls("PutRecordBatch").len(), INVOCATIONS, "one PutRecordBatch per invocation");
    assert_eq!(rt.block_on(stream.records()).len(), INVOCATIONS);
    assert!(graph.requests().is_empty(), "no token, no Graph API call");

    // Init alone with the Firehose sink and the DynamoDB store, both behind the 50 ms proxy (the
    // stream check and the listings of the table would each cost 50 ms if start-up waited for
    // them): five cold starts, each then answering an invocation whose record reaches Firehose.
    let table = format!("lambda-figures-{}", std::process::id());
    let mut store_env = aws_env(&moto().endpoint);
    store_env.extend([("PIXELGATE_TOKENS", "dynamodb".to_owned()), ("PIXELGATE_DYNAMODB_TABLE", table.clone()), ("PIXELGATE_SECRETS_KEY", SECRETS_KEY.to_owned())]);
    let created = tokens(dir.path(), &["create-table"], "", &store_env);
    assert!(created.code == 0, "{}", created.stderr);
    let mut aws_inits: Vec<Duration> = (0..5)
        .map(|n| {
            let emulator = Emulator::start(Duration::from_secs(10));
            let dir = tempfile::tempdir().unwrap();
            let mut env = firehose_env(&firehose.endpoint, &stream.name, &graph);
            env.extend([("PIXELGATE_TOKENS", "dynamodb".to_owned()), ("PIXELGATE_DYNAMODB_TABLE", table.clone()), ("PIXELGATE_SECRETS_KEY", SECRETS_KEY.to_owned())]);
            let mut function = spawn(&emulator, &dir.path().join("data"), &env);
            let init = emulator.wait_init(Duration::from_secs(20), || function.logs()) - function.spawned_at();
            let inv = emulator.invoke(pixel_event("1234567890", &format!("cold-{n}")));
            assert_eq!(inv.response.as_ref().map(|r| r["statusCode"].clone()), Some(200.into()), "{inv:?}");
            assert!(function.terminate().0.success(), "{}", function.logs());
            init
        })
        .collect();
    assert_eq!(rt.block_on(stream.records()).len(), INVOCATIONS + 5, "each cold start's record reached Firehose");

    // Init alone, on the file sink (no AWS call at start-up): five cold starts.
    let mut file_inits: Vec<Duration> = (0..5)
        .map(|_| {
            let emulator = Emulator::start(Duration::from_secs(10));
            let dir = tempfile::tempdir().unwrap();
            let mut function = spawn(&emulator, &dir.path().join("data"), &[]);
            let init = emulator.wait_init(Duration::from_secs(20), || function.logs()) - function.spawned_at();
            assert!(function.terminate().0.success(), "{}", function.logs());
            init
        })
        .collect();
    eprintln!(
        "LAMBDA FIGURES: start to first invocation/next {} with the Firehose sink (its DescribeDeliveryStream answered in 50 ms), \
         median of 5 {} with the Firehose sink and the DynamoDB store (each answering in 50 ms), median of 5 {} with the file sink; peak RSS {} MiB after {INVOCATIONS} invocations; \
         drain after the answer with Firehose answering in 50 ms: p50 {} p90 {} max {}; \
         whole invocation p50 {} p90 {} max {}",
        ms(init),
        ms(quantile(&mut aws_inits, 0.5)),
        ms(quantile(&mut file_inits, 0.5)),
        peak_rss.map_or("?".into(), |k| format!("{:.1}", k as f64 / 1024.0)),
        ms(quantile(&mut after_answer, 0.5)),
        ms(quantile(&mut after_answer, 0.9)),
        ms(quantile(&mut after_answer, 1.0)),
        ms(quantile(&mut whole, 0.5)),
        ms(quantile(&mut whole, 0.9)),
        ms(quantile(&mut whole, 1.0)),
    );
}

/// A notice raised by an invocation's delivery (Meta calls the token invalid) is delivered to the
/// account's webhook before the extension lets the sandbox freeze, its retry after a `500`
/// included; a later invocation raises none (one per state change).
#[test]
fn a_notice_raised_in_an_invocation_reaches_the_webhook_before_the_sandbox_freezes() {
    let graph = FakeGraph::start();
    let (pixel, token, secret) = ("4242424299", "EAAlambdaNoticeTestToken0002", "whsec-lambda-notice-7c1e2a");
    graph.set_token(pixel, token);
    graph.fail_next(100, Answer::InvalidToken);
    let receiver = Receiver::start();
    receiver.answer_next(&[500]);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cli = |args: &[&str], body: Value| {
        let mut all = vec!["--data-dir", data.to_str().unwrap(), "--allow-private-webhooks"];
        all.extend_from_slice(args);
        let run = pixelgate(&all, &body.to_string(), &[]);
        run.assert_hides(secret);
        run.json()
    };
    cli(&["accounts", "create"], json!({"name": "Lambda shop", "account_id": "acc_lambda"}));
    let a = cli(&["accounts", "update", "acc_lambda"], json!({"webhook_url": receiver.url("http", "127.0.0.1"), "webhook_secret": secret}));
    assert_eq!(a["webhook_secret"], json!({"set": true}), "{a}");
    let p = cli(&["pixels", "put", pixel], json!({"account_id": "acc_lambda", "destinations": {"meta": {"access_token": token}}}));
    assert_eq!(p["destinations"]["meta"]["set"], true, "{p}");

    let emulator = Emulator::start(Duration::from_secs(10));
    let env = [("PIXELGATE_GRAPH_URL", graph.url()), ("PIXELGATE_ALLOW_PRIVATE_WEBHOOKS", "true".into()), ("PIXELGATE_LOG_LEVEL", "debug".into())];
    let mut function = spawn(&emulator, &data, &env);
    emulator.wait_init(Duration::from_secs(20), || function.logs());

    let inv = emulator.invoke(pixel_event(pixel, "notice-0"));
    assert!(!inv.timed_out && inv.ended_at.is_some(), "{inv:?}\n{}", function.logs());
    let extension_next = inv.extension_next(DRAIN).unwrap();
    let got = receiver.got();
    assert_eq!(got.len(), 2, "the notice, answered 500 then 200, within the invocation: {got:?}\n{}", function.logs());
    assert!(got[1].at <= extension_next, "the extension asked for more {} before the webhook had the notice", ms(got[1].at - extension_next));
    for r in &got {
        r.verify(secret);
    }
    let body: Value = serde_json::from_slice(&got[1].body).unwrap();
    assert_eq!((&body["account_id"], &body["pixel_id"], &body["code"]), (&json!("acc_lambda"), &json!(pixel), &json!(190)), "{body}");
    eprintln!(
        "notice: webhook answered +{} after the function's answer; extension next +{}",
        ms(got[1].at - inv.response_at.unwrap()),
        ms(extension_next - inv.response_at.unwrap())
    );

    // The token is invalid now: the next invocation forwards nothing and raises no notice.
    let inv = emulator.invoke(pixel_event(pixel, "notice-1"));
    assert!(!inv.timed_out && inv.ended_at.is_some(), "{inv:?}");
    assert_eq!(receiver.got().len(), 2, "one notice per state change");
    let (status, _) = function.terminate();
    assert!(status.success(), "exit {status}: {}", function.logs());
    assert!(!function.logs().contains(token) && !function.logs().contains(secret), "a secret reached the log");
}
