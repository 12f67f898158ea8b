//! Serving and routing: each request is recorded, then answered — by the script, after any
//! delay, or by validation — and what was accepted is recorded with the answer.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use serde_json::Value;

use super::answer::{Answer, Outcome};
use super::record::{GraphEvent, GraphRequest, Shared, mask};
use super::validation::{parse_path, process, token_verdict};

pub(super) async fn handle(req: Request<Incoming>, shared: Arc<Shared>) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = req.method().to_string();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or_default().to_owned();
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let (content_type, user_agent) = (header("content-type"), header("user-agent"));
    let raw = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();

    let token_in_query = form_urlencoded::parse(query.as_bytes()).any(|(k, _)| k == "access_token");
    let (version, pixel_id) = parse_path(&path).unwrap_or_default();
    let mut body: Option<Value> = serde_json::from_slice(&raw).ok();
    let token = body.as_ref().and_then(|b| b.get("access_token")).and_then(Value::as_str).map(str::to_owned).filter(|t| !t.is_empty());
    if let Some(Value::Object(o)) = &mut body
        && let Some(t) = o.get_mut("access_token")
    {
        *t = Value::String(mask(t.as_str().unwrap_or_default()));
    }

    let (index, answer, delay, trace) = {
        let mut s = shared.lock();
        s.trace += 1;
        let index = s.requests.len();
        let token_ok = token.as_ref().is_some_and(|t| s.tokens.get(&pixel_id).is_some_and(|ts| ts.contains(t)));
        s.requests.push(GraphRequest {
            index,
            method: method.clone(),
            path: path.clone(),
            pixel_id: pixel_id.clone(),
            version: version.clone(),
            body: body.clone(),
            token_in_query,
            token_in_body: token.is_some(),
            token_ok,
            content_type,
            user_agent,
            received_at: SystemTime::now(),
            received: Instant::now(),
            answered: None,
            status: 0,
            error_code: None,
            rule: None,
            message: None,
        });
        let answer = s.script.pop_front().unwrap_or(Answer::Accept);
        (index, answer, s.delay, format!("AFake{:07}", s.trace))
    };
    shared.changed.notify_all();

    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let mut answer = answer;
    while let Answer::Delay(d, then) = answer {
        tokio::time::sleep(d).await;
        answer = *then;
    }

    let outcome = match answer {
        Answer::Hang => std::future::pending::<Outcome>().await,
        Answer::Delay(..) => unreachable!(),
        Answer::Accept => {
            let verdict = token_verdict(token.as_deref(), &pixel_id, &shared.lock().tokens);
            process(&method, &version, &pixel_id, token_in_query, verdict, body.as_ref(), &trace)
        }
        scripted => scripted.scripted_error(&trace),
    };

    let response = {
        let mut s = shared.lock();
        let test_event_code = body.as_ref().and_then(|b| b.get("test_event_code")).and_then(Value::as_str).map(str::to_owned);
        for event in &outcome.accepted {
            s.events.push(GraphEvent { pixel_id: pixel_id.clone(), version: version.clone(), test_event_code: test_event_code.clone(), request: index, event: event.clone() });
        }
        let r = &mut s.requests[index];
        r.status = outcome.status.as_u16();
        r.answered = Some(Instant::now());
        r.error_code = outcome.error_code;
        r.rule = outcome.rule;
        r.message = outcome.message;
        let mut resp = Response::new(Full::new(Bytes::from(outcome.body.to_string())));
        *resp.status_mut() = outcome.status;
        let h = resp.headers_mut();
        h.insert("content-type", "application/json; charset=UTF-8".parse().unwrap());
        h.insert("x-fb-trace-id", trace.parse().unwrap());
        if outcome.error_code == Some(190) {
            h.insert("www-authenticate", "OAuth \"Facebook Platform\" \"invalid_token\" \"Invalid OAuth access token - Cannot parse access token\"".parse().unwrap());
        }
        resp
    };
    shared.changed.notify_all();
    Ok(response)
}
