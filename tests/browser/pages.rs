//! The pages the browser loads: each on a loopback server of its own (so on an origin of its own),
//! with a script that calls the pixel the two ways a page's own code does, a CORS `fetch()` of the
//! GIF with credentials and a JSON beacon that needs a preflight, and writes what the browser let
//! it see into `<pre id="out">` as JSON.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{Response, StatusCode, header};
use http_body_util::Full;

use crate::common::http_server::HttpServer;

/// A page being served. Dropping it stops its server.
pub struct Page {
    server: HttpServer,
}

impl Page {
    /// Serves, at `/`, the page named `name` (its event ids are `<name>-get` and `<name>-post`)
    /// calling the pixel at `pixel` (`http://127.0.0.1:<port>`); anything else is a 404.
    pub fn serve(name: &str, pixel: &str) -> Page {
        let html: Arc<str> = html(name, pixel).into();
        let server = HttpServer::start(&format!("page-{name}"), move |req| {
            let html = html.clone();
            async move {
                let r = if req.uri().path() == "/" {
                    Response::builder()
                        .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
                        .header(header::CACHE_CONTROL, "no-store")
                        .body(Full::new(Bytes::copy_from_slice(html.as_bytes())))
                } else {
                    Response::builder().status(StatusCode::NOT_FOUND).body(Full::new(Bytes::new()))
                };
                Ok::<_, Infallible>(r.unwrap())
            }
        });
        Page { server }
    }

    /// The port it listens on (on 127.0.0.1, so `http://localhost:<port>/` reaches it too).
    pub fn port(&self) -> u16 {
        self.server.addr().port()
    }
}

/// The page. Each call records `{ok:true, status, type, content_type, bytes}` when the fetch
/// resolved, which under `mode: "cors"` means the browser let the page read the answer, or
/// `{ok:false, error}` when it rejected (a CORS refusal is a `TypeError: Failed to fetch`, the
/// reason only in the browser's console). The JSON is written with `<`, `>` and `&` as JSON
/// escapes, so the serialised DOM holds it verbatim.
fn html(name: &str, pixel: &str) -> String {
    const SCRIPT: &str = r#"
const PIXEL = "__PIXEL__", PAGE = "__PAGE__";
async function attempt(call) {
  try {
    const r = await call();
    const body = await r.arrayBuffer();
    return { ok: true, status: r.status, type: r.type, content_type: r.headers.get("content-type"), bytes: body.byteLength };
  } catch (e) {
    return { ok: false, error: String(e) };
  }
}
(async () => {
  const out = { page: PAGE, origin: location.origin };
  try {
    out.get = await attempt(() => fetch(PIXEL + "/p.gif?pixel_id=4242&event=Lead&event_id=" + PAGE + "-get", { mode: "cors", credentials: "include" }));
    out.post = await attempt(() => fetch(PIXEL + "/tr?pixel_id=4242", {
      method: "POST", mode: "cors", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ event: "Purchase", event_id: PAGE + "-post" }),
    }));
  } catch (e) {
    out.fatal = String(e);
  }
  out.done = true;
  document.getElementById("out").textContent =
    JSON.stringify(out).replace(/</g, "\\u003c").replace(/>/g, "\\u003e").replace(/&/g, "\\u0026");
})();
"#;
    let script = SCRIPT.replace("__PIXEL__", pixel).replace("__PAGE__", name);
    format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>page {name}</title></head>\n<body><pre id=\"out\">pending</pre>\n<script>{script}</script></body></html>\n"
    )
}
