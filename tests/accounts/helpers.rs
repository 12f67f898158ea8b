//! What the accounts tests share: a [`Site`] (one store — SQLite under a data dir, or a DynamoDB
//! table on the shared moto server — with the registry CLI on it), servers started on it with the
//! bootstrap `--admin-key`, an [`Api`] client that keeps the status, headers and exact body of
//! every `/v1/` answer, and raw reads of the stores (every SQLite row, a DynamoDB Scan, the bytes
//! of every file) for the at-rest checks.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::{Value, json};

use crate::common::moto::{aws_env, moto, sdk_config};
use crate::common::process::{self, Launch, Run};
use crate::common::records::files_below;

/// The bootstrap host admin key of every server these tests start.
pub const ADMIN_KEY: &str = "accounts-bootstrap-admin-key-0123456789";

/// The `--secrets-key` of DynamoDB sites (every instance on one table shares it): 32 bytes, base64.
pub const SECRETS_KEY: &str = "cGl4ZWxnYXRlLWFjY291bnRzLXRlc3RzLWtleS0zMmI=";

pub(crate) use crate::eventually;

/// A number unique in this test process, for fresh pixel ids and names.
pub fn unique() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// A pixel id no test registers or gives a token (digits, so the API parses it).
pub const UNREGISTERED: &str = "987654321";
/// An account id no test creates.
pub const NO_SUCH_ACCOUNT: &str = "acc_nobody";
/// A well-formed key id no key has.
pub const NO_SUCH_KEY: &str = "key_00000000000000000000";

/// One store and its data dir.
pub struct Site {
    dir: tempfile::TempDir,
    /// The store flags every run and server gets.
    args: Vec<String>,
    /// The only environment runs and servers see.
    env: Vec<(&'static str, String)>,
    /// The DynamoDB table, for a DynamoDB site.
    pub table: Option<String>,
}

impl Site {
    /// The embedded store (SQLite under the data dir, a generated `secrets.key`).
    pub fn sqlite() -> Site {
        Site { dir: tempfile::tempdir().expect("temp dir"), args: vec![], env: vec![], table: None }
    }

    /// A fresh DynamoDB table on the shared moto server (made by `pixelgate tokens create-table`),
    /// with [`SECRETS_KEY`]. Panics if moto cannot be started: these tests never skip.
    pub fn dynamodb(test: &str) -> Site {
        let table = format!("pixelgate-accounts-{test}-{}", std::process::id()).replace('_', "-");
        let mut site = Site::sqlite();
        site.args = ["--tokens", "dynamodb", "--dynamodb-table", &table, "--secrets-key", SECRETS_KEY].map(String::from).to_vec();
        site.env = aws_env(&moto().endpoint);
        site.table = Some(table.clone());
        let created = site.run(&["tokens", "create-table"], "").json();
        assert_eq!(created["table"], table.as_str(), "{created}");
        site
    }

    /// Which store, for messages.
    pub fn name(&self) -> &'static str {
        if self.table.is_some() { "dynamodb" } else { "sqlite" }
    }

    /// `<tmp>/data`, the `--data-dir`.
    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// `pixelgate ARGS --data-dir <data>` with the store flags, `stdin` piped in.
    pub fn run(&self, args: &[&str], stdin: &str) -> Run {
        let data = self.data();
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--data-dir", data.to_str().expect("UTF-8 temp dir")]);
        all.extend(self.args.iter().map(String::as_str));
        process::pixelgate(&all, stdin, &self.env)
    }

    /// A server of this store, with `extra` flags, not yet started: no `--admin-key`, no data dir.
    pub fn launch(&self, extra: &[&str]) -> Launch {
        Launch::new().args(&self.args).args(extra).envs(self.env.iter().cloned())
    }

    /// A server on the site's data dir with the bootstrap key.
    pub fn serve(&self, extra: &[&str]) -> Api {
        Api::new(self.launch(&[&["--admin-key", ADMIN_KEY], extra].concat()).data_dir(&self.data()).serve())
    }

    /// A server of this store (the same table) on a data dir of its own, with the bootstrap key:
    /// another instance.
    pub fn serve_another(&self, extra: &[&str]) -> Api {
        Api::new(self.launch(&[&["--admin-key", ADMIN_KEY], extra].concat()).serve())
    }
}

/// One answer of the API, as it came.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl Answer {
    /// The body as JSON (panics, with the body, if it is not).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}), status {}: {:?}", self.status, self.text))
    }

    /// The message of an error answer, after checking the body is exactly `{"error": "<text>"}`.
    pub fn error(&self) -> String {
        let v = self.json();
        let obj = v.as_object().unwrap_or_else(|| panic!("an error body is an object: {}", self.text));
        assert_eq!(obj.len(), 1, "an error body has one field, `error`: {}", self.text);
        obj["error"].as_str().unwrap_or_else(|| panic!("`error` is a string: {}", self.text)).to_owned()
    }
}

/// A running server and an HTTP client for its `/v1/` API.
pub struct Api {
    pub server: process::Server,
    http: reqwest::Client,
}

impl Api {
    pub fn new(server: process::Server) -> Api {
        Api { server, http: reqwest::Client::builder().no_proxy().build().unwrap() }
    }

    /// `method path` with `key` (None: no `Authorization`), the JSON `body` if any.
    pub async fn send(&self, key: Option<&str>, method: &str, path: &str, body: Option<&Value>) -> Answer {
        self.send_raw(key, method, path, body.map(|b| b.to_string().into_bytes())).await
    }

    /// `method path` with `key` and exactly these body bytes (sent as `application/json`).
    pub async fn send_raw(&self, key: Option<&str>, method: &str, path: &str, body: Option<Vec<u8>>) -> Answer {
        self.send_with(key.map(|k| format!("Bearer {k}")).as_deref(), method, path, body).await
    }

    /// `method path` with this `Authorization` header value (None: none).
    pub async fn send_with(&self, authorization: Option<&str>, method: &str, path: &str, body: Option<Vec<u8>>) -> Answer {
        let mut req = self.http.request(method.parse().unwrap(), self.server.url(path));
        if let Some(a) = authorization {
            req = req.header(reqwest::header::AUTHORIZATION, a);
        }
        if let Some(body) = body {
            req = req.header(reqwest::header::CONTENT_TYPE, "application/json").body(body);
        }
        let r = req.send().await.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let (status, headers) = (r.status().as_u16(), r.headers().clone());
        Answer { status, headers, text: r.text().await.unwrap() }
    }

    /// With the bootstrap admin key.
    pub async fn admin(&self, method: &str, path: &str, body: Option<Value>) -> Answer {
        self.send(Some(ADMIN_KEY), method, path, body.as_ref()).await
    }

    /// With the bootstrap admin key; panics unless the answer is a 2xx; its JSON (Null if empty).
    pub async fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let a = self.admin(method, path, body).await;
        assert!((200..300).contains(&a.status), "{method} {path}: {} {}", a.status, a.text);
        if a.text.is_empty() { Value::Null } else { a.json() }
    }

    /// Creates the account `id`.
    pub async fn create_account(&self, id: &str) -> Value {
        self.ok("POST", "/v1/accounts", Some(json!({"name": format!("Shop {id}"), "account_id": id}))).await
    }

    /// Registers `pixel` to `account`.
    pub async fn register(&self, pixel: &str, account: &str) -> Value {
        self.ok("PUT", &format!("/v1/pixels/{pixel}"), Some(json!({"account_id": account}))).await
    }

    /// Creates a key (`POST /v1/keys` with `body`); its id and the key.
    pub async fn create_key(&self, body: Value) -> (String, String) {
        let v = self.ok("POST", "/v1/keys", Some(body)).await;
        let key = v["key"].as_str().unwrap_or_else(|| panic!("{v}")).to_owned();
        assert!(key.starts_with("pgk_"), "{v}");
        (v["key_id"].as_str().unwrap().to_owned(), key)
    }
}

/// Every row of every table of `<data>/tokens.sqlite3`, one line per row: `table: col=value, …`
/// (blobs lossily as text). Read through SQLite, so what is still in the WAL counts too.
pub fn sqlite_rows(data: &Path) -> Vec<String> {
    let conn = rusqlite::Connection::open_with_flags(data.join("tokens.sqlite3"), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).expect("the SQLite store opens");
    let tables: Vec<String> = {
        let mut q = conn.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").unwrap();
        q.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
    };
    assert!(tables.iter().any(|t| t == "tokens") && tables.iter().any(|t| t == "registry"), "{tables:?}");
    let mut out = Vec::new();
    for t in tables {
        let mut q = conn.prepare(&format!("SELECT * FROM \"{t}\"")).unwrap();
        let cols: Vec<String> = q.column_names().map(str::to_owned).collect();
        let mut rows = q.query([]).unwrap();
        while let Some(row) = rows.next().unwrap() {
            let cells: Vec<String> = (0..cols.len())
                .map(|i| {
                    let v = match row.get_ref(i).unwrap() {
                        rusqlite::types::ValueRef::Null => "NULL".to_owned(),
                        rusqlite::types::ValueRef::Integer(n) => n.to_string(),
                        rusqlite::types::ValueRef::Real(f) => f.to_string(),
                        rusqlite::types::ValueRef::Text(b) | rusqlite::types::ValueRef::Blob(b) => String::from_utf8_lossy(b).into_owned(),
                    };
                    format!("{}={v}", cols[i])
                })
                .collect();
            out.push(format!("{t}: {}", cells.join(", ")));
        }
    }
    out
}

/// The `access_token` column of the SQLite `tokens` row of `pixel`.
pub fn sqlite_token_column(data: &Path, pixel: &str) -> Option<String> {
    let conn = rusqlite::Connection::open_with_flags(data.join("tokens.sqlite3"), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    conn.query_row("SELECT access_token FROM tokens WHERE pixel_id = ?1", [pixel], |r| r.get(0)).ok()
}

/// The test's own client of moto.
pub async fn dynamodb() -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::new(&sdk_config().await)
}

/// Every item of `table` (a full Scan, every page).
pub async fn scan(table: &str) -> Vec<HashMap<String, AttributeValue>> {
    let client = dynamodb().await;
    let mut out = Vec::new();
    let mut start = None;
    loop {
        let page = client.scan().table_name(table).set_exclusive_start_key(start).send().await.expect("Scan");
        out.extend(page.items().iter().cloned());
        start = page.last_evaluated_key().cloned();
        if start.is_none() {
            return out;
        }
    }
}

/// An item as one line of text: every attribute and value.
pub fn item_text(item: &HashMap<String, AttributeValue>) -> String {
    let mut attrs: Vec<String> = item.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    attrs.sort();
    attrs.join(", ")
}

/// The item under `pk` (the table's partition key is `pixel_id`).
pub async fn get_item(table: &str, pk: &str) -> Option<HashMap<String, AttributeValue>> {
    let out = dynamodb().await.get_item().table_name(table).key("pixel_id", AttributeValue::S(pk.to_owned())).consistent_read(true).send().await.expect("GetItem");
    out.item().cloned()
}

/// The string attribute `attr` of `item`.
pub fn attr_s<'a>(item: &'a HashMap<String, AttributeValue>, attr: &str) -> &'a str {
    item.get(attr).and_then(|v| v.as_s().ok()).unwrap_or_else(|| panic!("{attr} in {}", item_text(item)))
}

/// The number attribute `attr` of `item`.
pub fn attr_n(item: &HashMap<String, AttributeValue>, attr: &str) -> u64 {
    item.get(attr).and_then(|v| v.as_n().ok()).and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("{attr} in {}", item_text(item)))
}

/// Every file below `dir` with its bytes.
pub fn files_with_bytes(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    files_below(dir).into_iter().map(|p| (p.clone(), std::fs::read(&p).unwrap_or_default())).collect()
}

/// Whether `needle` occurs in `hay`.
pub fn contains_bytes(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}
