//! Credentials-invalidated notices to EventBridge, end to end against moto: a rule on the notify
//! bus sends `source: pixelgate` events to an SQS queue. Meta calls a pixel's token invalid on
//! every request; however many events fail, exactly one notice arrives, with the documented
//! detail and nothing secret in it.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::common::fake_graph::{Answer, FakeGraph};
use crate::common::metrics::metric;
use crate::common::moto::{aws_env, moto};
use crate::common::python::python;
use crate::helpers::{Site, eventually, q};

const PIXEL: &str = "9000290";
const TOKEN: &str = "EAAtesttokenNoticeRevoked7Hy2Kp5Wq8Zm3Xc6";

/// Runs `script` (boto3 against moto) with `args`; its standard output.
fn boto3(script: &str, args: &[&str]) -> String {
    let out = Command::new(python("the notify test's moto set-up")).arg("-c").arg(script).args(args).envs(aws_env(&moto().endpoint)).output().expect("python runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Makes bus `argv[1]` with a rule sending `source: pixelgate` events to a new queue
/// `argv[2]`; prints the queue URL.
const SET_UP: &str = r#"
import json, os, sys, boto3
kw = dict(endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name=os.environ["AWS_REGION"])
events, sqs = boto3.client("events", **kw), boto3.client("sqs", **kw)
bus, queue = sys.argv[1], sys.argv[2]
url = sqs.create_queue(QueueName=queue)["QueueUrl"]
arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
events.create_event_bus(Name=bus)
events.put_rule(Name="pixelgate-notices", EventBusName=bus, EventPattern=json.dumps({"source": ["pixelgate"]}))
events.put_targets(Rule="pixelgate-notices", EventBusName=bus, Targets=[{"Id": "queue", "Arn": arn}])
print(url)
"#;

/// Prints every message body waiting in queue `argv[1]` as one JSON array.
const DRAIN: &str = r#"
import json, os, sys, boto3
sqs = boto3.client("sqs", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name=os.environ["AWS_REGION"])
bodies = []
while True:
    got = sqs.receive_message(QueueUrl=sys.argv[1], MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
    if not got:
        break
    for m in got:
        bodies.append(json.loads(m["Body"]))
        sqs.delete_message(QueueUrl=sys.argv[1], ReceiptHandle=m["ReceiptHandle"])
print(json.dumps(bodies))
"#;

#[tokio::test]
async fn an_invalid_token_sends_one_notice_however_many_events_fail() {
    let id = std::process::id();
    let (bus, queue) = (format!("pixelgate-notify-{id}"), format!("pixelgate-notices-{id}"));
    let url = boto3(SET_UP, &[&bus, &queue]).trim().to_owned();

    let mut site = Site::new();
    site.env = aws_env(&moto().endpoint);
    site.set_token(PIXEL, TOKEN);
    let fake = FakeGraph::start();
    fake.set_token(PIXEL, TOKEN);
    // Each refusal comes 300 ms late, so the later batches are already on their way: several
    // requests are refused, each telling the forwarder the token is invalid.
    fake.fail_next(100, Answer::delay(Duration::from_millis(300), Answer::InvalidToken));
    let server = site.serve(&fake, &["--notify-event-bus", &bus, "--capi-batch-events", "5"]);
    for i in 0..20 {
        server.hit(&q(PIXEL, "purchase", &format!("eid=notice-{i}"))).await;
    }
    let metrics = eventually!(Duration::from_secs(15), "the notice to be sent", {
        let m = server.metrics().await;
        (metric(&m, "pixelgate_notifications_total", &[("channel", "eventbridge"), ("outcome", "sent")]) >= 1.0).then_some(m)
    });
    // More failed requests may follow the first; none sends another notice.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let metrics_after = server.metrics().await;
    assert_eq!(metric(&metrics_after, "pixelgate_notifications_total", &[("channel", "eventbridge"), ("outcome", "sent")]), 1.0, "{metrics}");
    let failed = metric(&metrics_after, "pixelgate_capi_events_total", &[("outcome", "failed"), ("reason", "invalid_token")]);
    // Batches of 5 went out before the first refusal came back.
    assert!(fake.requests().len() >= 2 && failed > 5.0, "{} requests, {failed} events failed", fake.requests().len());

    let notices: Vec<Value> = serde_json::from_str(&boto3(DRAIN, &[&url])).unwrap();
    assert_eq!(notices.len(), 1, "{notices:#?}");
    let n = &notices[0];
    assert_eq!((&n["source"], &n["detail-type"]), (&"pixelgate".into(), &"Destination Credentials Invalidated".into()), "{n}");
    let d = &n["detail"];
    assert_eq!((&d["account_id"], &d["pixel_id"], &d["destination"], &d["code"]), (&Value::Null, &PIXEL.into(), &"meta".into(), &190.into()), "{d}");
    assert!(d["at"].as_str().is_some_and(|at| at.ends_with('Z') && at.len() == 24), "{d}");
    assert_eq!(d.as_object().unwrap().len(), 5, "only the documented fields: {d}");
    assert!(!n.to_string().contains(TOKEN), "a token in the notice");
    server.finish(&[TOKEN]).await;
}

/// A notice EventBridge refuses (here: no such bus) is counted and logged, not lost silently.
#[tokio::test]
async fn a_notice_that_cannot_be_sent_is_counted_and_logged() {
    let mut site = Site::new();
    site.env = aws_env(&moto().endpoint);
    site.set_token(PIXEL, TOKEN);
    let fake = FakeGraph::start();
    fake.set_token(PIXEL, TOKEN);
    fake.fail_next(100, Answer::InvalidToken);
    let bus = format!("pixelgate-no-such-bus-{}", std::process::id());
    let server = site.serve(&fake, &["--notify-event-bus", &bus]);
    server.hit(&q(PIXEL, "purchase", "eid=unsent-notice")).await;
    eventually!(Duration::from_secs(20), "the notice to be given up", {
        let m = server.metrics().await;
        (metric(&m, "pixelgate_notifications_total", &[("channel", "eventbridge"), ("outcome", "failed")]) == 1.0).then_some(())
    });
    let logs = server.finish(&[TOKEN]).await;
    assert!(logs.contains("could not be sent to EventBridge") && logs.contains(&bus), "{logs}");
}
