//! Events that are not HTTP requests, under Lambda (`docs/lambda.md#eventbridge-and-sqs`): an
//! EventBridge event (a rule on the platform's bus) and an SQS batch. Each event object goes
//! through the pixel's pipeline as `POST /v1/events` sends it ([`crate::params::event`]), with
//! `"source":"eventbridge"` or `"sqs"` on its record.
//!
//! Nothing is acknowledged that was not taken: an SQS message whose body is not a valid event,
//! or that the intake has no room for, is reported in `batchItemFailures` (SQS delivers it again,
//! then to the queue's dead-letter queue); an EventBridge event that cannot be taken fails the
//! invocation, so EventBridge retries it under the rule's retry policy and then sends it to the
//! rule's dead-letter queue.

use std::collections::HashMap;

use lambda_http::lambda_runtime::Diagnostic;
use serde::Serialize;
use serde_json::Value;

use crate::metrics as m;
use crate::params::event;
use crate::pipeline::Dispatcher;
use crate::record::Source;

/// What kind of event an invocation carries.
#[derive(Debug, PartialEq, Eq)]
pub enum Kind {
    /// An SQS batch (`Records[].eventSource == "aws:sqs"`).
    Sqs,
    /// An EventBridge event (`detail-type` and `detail`).
    EventBridge,
    /// Anything else: one of the HTTP payload formats, or not an event pixelgate takes.
    Other,
}

impl Kind {
    /// The kind of `payload`, from the fields each kind always has.
    pub fn of(payload: &Value) -> Kind {
        let is_sqs = payload.get("Records").and_then(Value::as_array).and_then(|r| r.first()).is_some_and(|r| r.get("eventSource").and_then(Value::as_str) == Some("aws:sqs"));
        if is_sqs {
            Kind::Sqs
        } else if payload.get("detail-type").is_some_and(Value::is_string) && payload.get("detail").is_some() {
            Kind::EventBridge
        } else {
            Kind::Other
        }
    }
}

/// `--event-name-map`: an EventBridge `detail-type` → the event name its records get when
/// `detail` names none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventNames(HashMap<String, String>);

impl EventNames {
    /// `ProfileViewed=PageView,LinkClicked=ViewContent`.
    pub fn parse(text: &str) -> Result<EventNames, String> {
        let mut map = HashMap::new();
        for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (from, to) = pair.split_once('=').ok_or_else(|| format!("{pair:?}: expected DetailType=EventName"))?;
            let (from, to) = (from.trim(), to.trim());
            if from.is_empty() || to.is_empty() {
                return Err(format!("{pair:?}: both the detail-type and the event name are needed"));
            }
            if map.insert(from.to_owned(), to.to_owned()).is_some() {
                return Err(format!("{from:?} is mapped twice"));
            }
        }
        Ok(EventNames(map))
    }

    /// The event name for `detail_type`: its mapping, else itself.
    pub fn name<'a>(&'a self, detail_type: &'a str) -> &'a str {
        self.0.get(detail_type).map_or(detail_type, String::as_str)
    }
}

/// The non-HTTP inputs: where their events go.
#[derive(Clone)]
pub struct Inputs {
    dispatcher: Dispatcher,
    names: EventNames,
}

/// The answer to an SQS batch: the messages to deliver again.
#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct SqsAnswer {
    #[serde(rename = "batchItemFailures")]
    pub batch_item_failures: Vec<ItemFailure>,
}

/// One message to deliver again.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct ItemFailure {
    #[serde(rename = "itemIdentifier")]
    pub item_identifier: String,
}

impl Inputs {
    /// Events into `dispatcher`; EventBridge detail-types named through `names`.
    pub fn new(dispatcher: Dispatcher, names: EventNames) -> Inputs {
        Inputs { dispatcher, names }
    }

    /// Takes each message of an SQS batch; the ones not taken, by `messageId`.
    pub fn sqs(&self, payload: Value) -> SqsAnswer {
        let mut answer = SqsAnswer::default();
        for record in payload.get("Records").and_then(Value::as_array).into_iter().flatten() {
            let Some(id) = record.get("messageId").and_then(Value::as_str) else {
                // Nothing to report it by: SQS always sends one, so this batch is not SQS's.
                tracing::warn!("an SQS record without a messageId was ignored");
                continue;
            };
            let taken = match record.get("body").and_then(Value::as_str) {
                Some(body) => serde_json::from_str::<Value>(body).map_err(|e| format!("body: not JSON: {e}")).and_then(|v| self.take(v, Source::Sqs)),
                None => Err("body: missing".to_owned()),
            };
            match taken {
                Ok(()) => metrics::counter!(m::INPUT_EVENTS, "source" => "sqs", "outcome" => "accepted").increment(1),
                Err(error) => {
                    metrics::counter!(m::INPUT_EVENTS, "source" => "sqs", "outcome" => "rejected").increment(1);
                    tracing::warn!(
                        message_id = id,
                        error,
                        "SQS message not taken; reported in batchItemFailures, so SQS delivers it again (then to the queue's dead-letter queue)"
                    );
                    answer.batch_item_failures.push(ItemFailure { item_identifier: id.to_owned() });
                }
            }
        }
        answer
    }

    /// Takes an EventBridge event: `detail` as the event, the `detail-type` (through
    /// `--event-name-map`) as its name when it has none.
    pub fn eventbridge(&self, payload: Value) -> Result<Value, Diagnostic> {
        let id = payload.get("id").and_then(Value::as_str).unwrap_or_default().to_owned();
        let detail_type = payload.get("detail-type").and_then(Value::as_str).unwrap_or_default();
        let taken = match payload.get("detail") {
            Some(Value::Object(detail)) => {
                let mut detail = detail.clone();
                if !event::names_event(&detail) {
                    detail.insert("event".into(), Value::String(self.names.name(detail_type).to_owned()));
                }
                self.take(Value::Object(detail), Source::EventBridge)
            }
            _ => Err("detail: must be a JSON object of parameters".to_owned()),
        };
        match taken {
            Ok(()) => {
                metrics::counter!(m::INPUT_EVENTS, "source" => "eventbridge", "outcome" => "accepted").increment(1);
                Ok(serde_json::json!({"accepted": 1}))
            }
            Err(error) => {
                metrics::counter!(m::INPUT_EVENTS, "source" => "eventbridge", "outcome" => "rejected").increment(1);
                tracing::warn!(
                    event_id = id,
                    detail_type,
                    error,
                    "EventBridge event not taken; the invocation fails, so EventBridge retries it (then its rule's dead-letter queue)"
                );
                Err(Diagnostic { error_type: "InvalidEvent".into(), error_message: format!("EventBridge event {id}: {error}") })
            }
        }
    }

    /// One event object into the intake.
    fn take(&self, event: Value, source: Source) -> Result<(), String> {
        let (captured, _) = event::captured(event, source)?;
        self.dispatcher.try_submit_captured(captured).map_err(|reason| format!("not taken: no room in the intake now ({reason})"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_told_apart_by_their_fields() {
        assert_eq!(Kind::of(&serde_json::json!({"Records": [{"eventSource": "aws:sqs", "messageId": "1", "body": "{}"}]})), Kind::Sqs);
        assert_eq!(Kind::of(&serde_json::json!({"Records": [{"eventSource": "aws:s3"}]})), Kind::Other);
        assert_eq!(Kind::of(&serde_json::json!({"detail-type": "ProfileViewed", "source": "linkin.bio", "detail": {}})), Kind::EventBridge);
        assert_eq!(Kind::of(&serde_json::json!({"version": "2.0", "rawPath": "/p.gif"})), Kind::Other);
    }

    #[test]
    fn event_name_maps_parse_or_say_why() {
        let names = EventNames::parse("ProfileViewed=PageView, LinkClicked=ViewContent").unwrap();
        assert_eq!((names.name("ProfileViewed"), names.name("Other")), ("PageView", "Other"));
        assert_eq!(EventNames::parse("").unwrap(), EventNames::default());
        for bad in ["ProfileViewed", "=PageView", "A=B,A=C"] {
            assert!(EventNames::parse(bad).is_err(), "{bad}");
        }
    }
}
