//! Scripting failures: what the fake answers instead of validating ([`Answer`]), and the Graph
//! error shape every refusal has, scripted or not.

use std::time::Duration;

use hyper::StatusCode;
use serde_json::{Value, json};

use super::validation::Rule;

/// What the fake answers to one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Normal processing: validate, then 200 with `events_received` (or the validation error).
    Accept,
    /// HTTP 400, code 100 "Invalid parameter" (subcode 2804019), events not recorded.
    InvalidParameter,
    /// HTTP 400, code 190 "Invalid OAuth access token" (subcode 467), events not recorded.
    InvalidToken,
    /// HTTP 400, code 613 rate limit (subcode 1487742, `is_transient: true`).
    RateLimited,
    /// HTTP 500, code 1 "An unknown error occurred" (`is_transient: true`).
    ServerError,
    /// Wait, then give the inner answer.
    Delay(Duration, Box<Answer>),
    /// Never answer (the connection stays open until the fake is dropped).
    Hang,
}

impl Answer {
    /// `Answer::Delay(d, Box::new(then))`.
    pub fn delay(d: Duration, then: Answer) -> Answer {
        Answer::Delay(d, Box::new(then))
    }
}

/// What validation (or the script) decided for one request.
pub(super) struct Outcome {
    pub status: StatusCode,
    pub body: Value,
    pub error_code: Option<u16>,
    pub rule: Option<Rule>,
    pub message: Option<String>,
    /// The events to record as accepted.
    pub accepted: Vec<Value>,
}

impl Answer {
    /// The answer of a scripted error: every variant but `Accept`, `Delay` and `Hang`.
    pub(super) fn scripted_error(&self, trace: &str) -> Outcome {
        match self {
            Answer::InvalidParameter => error(StatusCode::BAD_REQUEST, 100, 2_804_019, "(#100) Invalid parameter", None, trace),
            Answer::InvalidToken => error(StatusCode::BAD_REQUEST, 190, 467, "Invalid OAuth access token - Cannot parse access token", None, trace),
            Answer::RateLimited => {
                let mut o = error(StatusCode::BAD_REQUEST, 613, 1_487_742, "(#613) Calls to this api have exceeded the rate limit.", None, trace);
                o.body["error"]["is_transient"] = json!(true);
                o
            }
            Answer::ServerError => {
                let mut o = error(StatusCode::INTERNAL_SERVER_ERROR, 1, 99, "An unknown error occurred", None, trace);
                o.body["error"]["is_transient"] = json!(true);
                o
            }
            Answer::Accept | Answer::Delay(..) | Answer::Hang => unreachable!("{self:?} is no scripted error"),
        }
    }
}

/// A Graph error: `{"error":{"message","type":"OAuthException","code","error_subcode","fbtrace_id"}}`.
pub(super) fn error(status: StatusCode, code: u16, subcode: u32, message: &str, rule: Option<Rule>, trace: &str) -> Outcome {
    let mut e = json!({"message": message, "type": "OAuthException", "code": code, "fbtrace_id": trace});
    if subcode != 0 {
        e["error_subcode"] = json!(subcode);
    }
    Outcome { status, body: json!({ "error": e }), error_code: Some(code), rule, message: Some(message.to_owned()), accepted: Vec::new() }
}
