//! Who may do what (`docs/accounts.md#roles`, `Principal::access`): every role × every action × its own account's
//! things and another account's, over HTTP against the real binary, on both stores.
//!
//! Setup, with the bootstrap key: accounts `acc_a` and `acc_b`; pixels `111` and `112` registered
//! to `acc_a`, `221` to `acc_b`; six keys made through `POST /v1/keys`. [`TABLE`] is the expected
//! status of every cell, written out; destructive cells get fresh resources, so the cells do not
//! depend on their order. Where a cell answers "not there" (`404`, or the `400` of a body naming
//! an account that is not there), the same request about something that does not exist at all
//! (its *twin*) must answer byte for byte the same.

use serde_json::{Value, json};

use crate::helpers::{ADMIN_KEY, Answer, Api, NO_SUCH_ACCOUNT, NO_SUCH_KEY, Site, UNREGISTERED, unique};

/// The six keys of the matrix, in the column order of [`TABLE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Host admin.
    HostAdmin,
    /// Host manager of `acc_a`.
    HostManager,
    /// Host viewer of `acc_a`.
    HostViewer,
    /// Admin of `acc_a`.
    AccountAdmin,
    /// Manager of `acc_a`, assigned pixel `111`.
    AccountManager,
    /// Viewer of `acc_a`.
    AccountViewer,
}

use Role::*;

const ROLES: [Role; 6] = [HostAdmin, HostManager, HostViewer, AccountAdmin, AccountManager, AccountViewer];

impl Role {
    /// The `POST /v1/keys` body of a key of this role.
    fn body(self) -> Value {
        match self {
            HostAdmin => json!({"role": "admin", "name": "host admin"}),
            HostManager => json!({"role": "manager", "accounts": ["acc_a"]}),
            HostViewer => json!({"role": "viewer", "accounts": ["acc_a"]}),
            AccountAdmin => json!({"role": "admin", "account_id": "acc_a"}),
            AccountManager => json!({"role": "manager", "account_id": "acc_a", "pixels": ["111"]}),
            AccountViewer => json!({"role": "viewer", "account_id": "acc_a"}),
        }
    }
}

/// The actions. "Own" is `acc_a` and its pixels, "other" is `acc_b` and `221`; `111` is assigned
/// to the account manager, `112` is not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    GetAccountOwn,
    GetAccountOther,
    PatchAccountOwn,
    PatchAccountOther,
    /// `acc_a` still has pixels.
    DeleteAccountOwn,
    /// `acc_b` still has a pixel.
    DeleteAccountOther,
    /// A fresh account without pixels.
    DeleteAccountEmpty,
    PostAccount,
    ListAccounts,
    GetPixelOwn,
    GetPixelUnassigned,
    GetPixelOther,
    GetPixelUnregistered,
    /// `PUT` of an existing pixel with its own account: a settings update.
    PutPixelOwn,
    PutPixelUnassigned,
    PutPixelOther,
    PatchPixelOwn,
    PatchPixelUnassigned,
    PatchPixelOther,
    /// A fresh pixel of `acc_a`; the account manager's cell uses a manager key assigned to it.
    DeletePixelOwn,
    /// A fresh pixel of `acc_a`, assigned to no key.
    DeletePixelUnassigned,
    /// A fresh pixel of `acc_b`.
    DeletePixelOther,
    /// Registering a fresh pixel id to `acc_a`.
    PutNewPixelOwn,
    /// Registering a fresh pixel id to `acc_b`.
    PutNewPixelOther,
    /// `PUT /v1/pixels/221` with `acc_a`: `221` belongs to `acc_b`.
    ClaimOtherPixel,
    GetTokenOwn,
    GetTokenUnassigned,
    GetTokenOther,
    /// A pixel registered to no account (a Part I token's): the host's.
    GetTokenUnregistered,
    PutTokenOwn,
    PutTokenUnassigned,
    PutTokenOther,
    /// A fresh pixel id registered to no account.
    PutTokenUnregistered,
    GetDeliveriesOwn,
    GetDeliveriesOther,
    PostKeyOwn,
    PostKeyOther,
    PostKeyHost,
    ListKeysOwn,
    ListKeysOther,
    /// A fresh key of `acc_a`.
    RevokeKeyOwn,
    /// A fresh key of `acc_b`.
    RevokeKeyOther,
    /// A fresh host key.
    RevokeKeyHost,
    /// A fresh key of the cell's own shape, revoking itself.
    RevokeKeySelf,
    ListAuditOwn,
    ListAuditOther,
    ListPixelsOwn,
    ListPixelsOther,
}

use Action::*;

/// The expected status of every cell. Columns: host admin, host manager {acc_a}, host viewer
/// {acc_a}, admin of acc_a, manager of acc_a {111}, viewer of acc_a.
#[rustfmt::skip]
const TABLE: &[(Action, [u16; 6])] = &[
    //                          HA   HM   HV   AA   AM   AV
    (GetAccountOwn,          [200, 200, 200, 200, 200, 200]),
    (GetAccountOther,        [200, 404, 404, 404, 404, 404]),
    (PatchAccountOwn,        [200, 200, 403, 200, 403, 403]),
    (PatchAccountOther,      [200, 404, 404, 404, 404, 404]),
    (DeleteAccountOwn,       [409, 403, 403, 403, 403, 403]),
    (DeleteAccountOther,     [409, 404, 404, 404, 404, 404]),
    (DeleteAccountEmpty,     [204, 404, 404, 404, 404, 404]),
    (PostAccount,            [201, 403, 403, 403, 403, 403]),
    (ListAccounts,           [200, 200, 200, 200, 200, 200]),
    (GetPixelOwn,            [200, 200, 200, 200, 200, 200]),
    (GetPixelUnassigned,     [200, 200, 200, 200, 404, 200]),
    (GetPixelOther,          [200, 404, 404, 404, 404, 404]),
    (GetPixelUnregistered,   [404, 404, 404, 404, 404, 404]),
    (PutPixelOwn,            [200, 200, 403, 200, 200, 403]),
    (PutPixelUnassigned,     [200, 200, 403, 200, 404, 403]),
    // As if 221 and acc_b did not exist: a PUT naming an account that is not there (see
    // PutNewPixelOther).
    (PutPixelOther,          [200, 400, 400, 400, 400, 400]),
    (PatchPixelOwn,          [200, 200, 403, 200, 200, 403]),
    (PatchPixelUnassigned,   [200, 200, 403, 200, 404, 403]),
    (PatchPixelOther,        [200, 404, 404, 404, 404, 404]),
    (DeletePixelOwn,         [204, 204, 403, 204, 403, 403]),
    (DeletePixelUnassigned,  [204, 204, 403, 204, 404, 403]),
    (DeletePixelOther,       [204, 404, 404, 404, 404, 404]),
    (PutNewPixelOwn,         [201, 201, 403, 201, 403, 403]),
    // The account is named in the body: "account_id: no such account", as for one that does
    // not exist.
    (PutNewPixelOther,       [201, 400, 400, 400, 400, 400]),
    (ClaimOtherPixel,        [409, 409, 409, 409, 409, 409]),
    (GetTokenOwn,            [200, 200, 200, 200, 200, 200]),
    (GetTokenUnassigned,     [200, 200, 200, 200, 404, 200]),
    (GetTokenOther,          [200, 404, 404, 404, 404, 404]),
    (GetTokenUnregistered,   [200, 404, 404, 404, 404, 404]),
    (PutTokenOwn,            [204, 204, 403, 204, 204, 403]),
    (PutTokenUnassigned,     [204, 204, 403, 204, 404, 403]),
    (PutTokenOther,          [204, 404, 404, 404, 404, 404]),
    (PutTokenUnregistered,   [204, 404, 404, 404, 404, 404]),
    (GetDeliveriesOwn,       [200, 200, 200, 200, 200, 200]),
    (GetDeliveriesOther,     [200, 404, 404, 404, 404, 404]),
    (PostKeyOwn,             [201, 403, 403, 201, 403, 403]),
    (PostKeyOther,           [201, 404, 404, 404, 404, 404]),
    (PostKeyHost,            [201, 403, 403, 403, 403, 403]),
    (ListKeysOwn,            [200, 403, 403, 200, 403, 403]),
    (ListKeysOther,          [200, 404, 404, 404, 404, 404]),
    (RevokeKeyOwn,           [204, 403, 403, 204, 403, 403]),
    (RevokeKeyOther,         [204, 404, 404, 404, 404, 404]),
    (RevokeKeyHost,          [204, 403, 403, 403, 403, 403]),
    (RevokeKeySelf,          [204, 204, 204, 204, 204, 204]),
    (ListAuditOwn,           [200, 403, 403, 200, 403, 403]),
    (ListAuditOther,         [200, 404, 404, 404, 404, 404]),
    (ListPixelsOwn,          [200, 200, 200, 200, 200, 200]),
    (ListPixelsOther,        [200, 404, 404, 404, 404, 404]),
];

/// One request.
#[derive(Debug, Clone)]
struct Req {
    method: &'static str,
    path: String,
    body: Option<Value>,
}

fn req(method: &'static str, path: impl Into<String>, body: Option<Value>) -> Req {
    Req { method, path: path.into(), body }
}

/// What to check after a destructive cell: that the thing is gone after a 2xx, and still there
/// after a refusal.
enum After {
    Nothing,
    /// `GET` this path with the bootstrap key: 404 once deleted, 200 while there.
    Exists(String),
    /// This key: refused (401) once revoked, accepted while there.
    KeyWorks(String),
}

/// One prepared cell.
struct Cell {
    /// The key to send (the role's, or a fresh one).
    key: String,
    req: Req,
    /// The same request about something that does not exist.
    twin: Option<Req>,
    after: After,
}

/// The server, the six keys and what the cells create.
struct World {
    api: Api,
    keys: Vec<String>,
}

impl World {
    fn key(&self, role: Role) -> String {
        self.keys[ROLES.iter().position(|r| *r == role).unwrap()].clone()
    }

    fn fresh_pixel_id() -> String {
        format!("{}", 5_000_000 + unique())
    }

    async fn fresh_pixel(&self, account: &str) -> String {
        let id = World::fresh_pixel_id();
        self.api.register(&id, account).await;
        id
    }

    async fn prepare(&self, action: Action, role: Role) -> Cell {
        let mut key = self.key(role);
        let mut after = After::Nothing;
        let token = json!({"access_token": "EAAmatrixToken0123456789abcdef"});
        let unregistered = |method, suffix: &str, body: Option<Value>| Some(req(method, format!("/v1/pixels/{UNREGISTERED}{suffix}"), body));
        let (r, twin) = match action {
            GetAccountOwn => (req("GET", "/v1/accounts/acc_a", None), None),
            GetAccountOther => (req("GET", "/v1/accounts/acc_b", None), Some(req("GET", format!("/v1/accounts/{NO_SUCH_ACCOUNT}"), None))),
            PatchAccountOwn => (req("PATCH", "/v1/accounts/acc_a", Some(json!({"name": "Shop A"}))), None),
            PatchAccountOther => (
                req("PATCH", "/v1/accounts/acc_b", Some(json!({"name": "Shop B"}))),
                Some(req("PATCH", format!("/v1/accounts/{NO_SUCH_ACCOUNT}"), Some(json!({"name": "Shop B"})))),
            ),
            DeleteAccountOwn => {
                after = After::Exists("/v1/accounts/acc_a".into());
                (req("DELETE", "/v1/accounts/acc_a", None), None)
            }
            DeleteAccountOther => {
                after = After::Exists("/v1/accounts/acc_b".into());
                (req("DELETE", "/v1/accounts/acc_b", None), Some(req("DELETE", format!("/v1/accounts/{NO_SUCH_ACCOUNT}"), None)))
            }
            DeleteAccountEmpty => {
                let id = format!("acc_empty{}", unique());
                self.api.create_account(&id).await;
                after = After::Exists(format!("/v1/accounts/{id}"));
                (req("DELETE", format!("/v1/accounts/{id}"), None), Some(req("DELETE", format!("/v1/accounts/{NO_SUCH_ACCOUNT}"), None)))
            }
            PostAccount => (req("POST", "/v1/accounts", Some(json!({"name": "New shop"}))), None),
            ListAccounts => (req("GET", "/v1/accounts", None), None),
            GetPixelOwn => (req("GET", "/v1/pixels/111", None), None),
            GetPixelUnassigned => (req("GET", "/v1/pixels/112", None), unregistered("GET", "", None)),
            GetPixelOther => (req("GET", "/v1/pixels/221", None), unregistered("GET", "", None)),
            GetPixelUnregistered => (req("GET", format!("/v1/pixels/{UNREGISTERED}"), None), None),
            PutPixelOwn => (req("PUT", "/v1/pixels/111", Some(json!({"account_id": "acc_a", "test_event_code": "TEST111"}))), None),
            PutPixelUnassigned => (req("PUT", "/v1/pixels/112", Some(json!({"account_id": "acc_a", "test_event_code": "TEST112"}))), None),
            PutPixelOther => (
                req("PUT", "/v1/pixels/221", Some(json!({"account_id": "acc_b", "test_event_code": "TEST221"}))),
                unregistered("PUT", "", Some(json!({"account_id": NO_SUCH_ACCOUNT, "test_event_code": "TEST221"}))),
            ),
            PatchPixelOwn => (req("PATCH", "/v1/pixels/111", Some(json!({"test_event_code": "TEST1"}))), None),
            PatchPixelUnassigned => {
                (req("PATCH", "/v1/pixels/112", Some(json!({"test_event_code": "TEST1"}))), unregistered("PATCH", "", Some(json!({"test_event_code": "TEST1"}))))
            }
            PatchPixelOther => (req("PATCH", "/v1/pixels/221", Some(json!({"test_event_code": "TEST1"}))), unregistered("PATCH", "", Some(json!({"test_event_code": "TEST1"})))),
            DeletePixelOwn | DeletePixelUnassigned | DeletePixelOther => {
                let account = if action == DeletePixelOther { "acc_b" } else { "acc_a" };
                let id = self.fresh_pixel(account).await;
                if action == DeletePixelOwn && role == AccountManager {
                    key = self.api.create_key(json!({"role": "manager", "account_id": "acc_a", "pixels": [id]})).await.1;
                }
                after = After::Exists(format!("/v1/pixels/{id}"));
                (req("DELETE", format!("/v1/pixels/{id}"), None), unregistered("DELETE", "", None))
            }
            PutNewPixelOwn => (req("PUT", format!("/v1/pixels/{}", World::fresh_pixel_id()), Some(json!({"account_id": "acc_a"}))), None),
            PutNewPixelOther => {
                let twin = req("PUT", format!("/v1/pixels/{}", World::fresh_pixel_id()), Some(json!({"account_id": NO_SUCH_ACCOUNT})));
                (req("PUT", format!("/v1/pixels/{}", World::fresh_pixel_id()), Some(json!({"account_id": "acc_b"}))), Some(twin))
            }
            ClaimOtherPixel => {
                after = After::Exists("/v1/pixels/221".into());
                (req("PUT", "/v1/pixels/221", Some(json!({"account_id": "acc_a"}))), None)
            }
            GetTokenOwn => (req("GET", "/v1/pixels/111/token", None), None),
            GetTokenUnassigned => (req("GET", "/v1/pixels/112/token", None), unregistered("GET", "/token", None)),
            GetTokenOther => (req("GET", "/v1/pixels/221/token", None), unregistered("GET", "/token", None)),
            GetTokenUnregistered => (req("GET", format!("/v1/pixels/{UNREGISTERED}/token"), None), None),
            PutTokenOwn => (req("PUT", "/v1/pixels/111/token", Some(token)), None),
            PutTokenUnassigned => (req("PUT", "/v1/pixels/112/token", Some(token.clone())), unregistered("PUT", "/token", Some(token))),
            PutTokenOther => (req("PUT", "/v1/pixels/221/token", Some(token.clone())), unregistered("PUT", "/token", Some(token))),
            PutTokenUnregistered => (req("PUT", format!("/v1/pixels/{}/token", World::fresh_pixel_id()), Some(token)), None),
            GetDeliveriesOwn => (req("GET", "/v1/pixels/111/deliveries", None), None),
            GetDeliveriesOther => (req("GET", "/v1/pixels/221/deliveries", None), unregistered("GET", "/deliveries", None)),
            PostKeyOwn => (req("POST", "/v1/keys", Some(json!({"role": "viewer", "account_id": "acc_a"}))), None),
            PostKeyOther => (
                req("POST", "/v1/keys", Some(json!({"role": "viewer", "account_id": "acc_b"}))),
                Some(req("POST", "/v1/keys", Some(json!({"role": "viewer", "account_id": NO_SUCH_ACCOUNT})))),
            ),
            PostKeyHost => (req("POST", "/v1/keys", Some(json!({"role": "viewer"}))), None),
            ListKeysOwn => (req("GET", "/v1/keys?account_id=acc_a", None), None),
            ListKeysOther => (req("GET", "/v1/keys?account_id=acc_b", None), Some(req("GET", format!("/v1/keys?account_id={NO_SUCH_ACCOUNT}"), None))),
            RevokeKeyOwn | RevokeKeyOther | RevokeKeyHost | RevokeKeySelf => {
                let body = match action {
                    RevokeKeyOwn => json!({"role": "viewer", "account_id": "acc_a"}),
                    RevokeKeyOther => json!({"role": "viewer", "account_id": "acc_b"}),
                    RevokeKeyHost => json!({"role": "viewer"}),
                    _ => role.body(),
                };
                let (id, fresh) = self.api.create_key(body).await;
                if action == RevokeKeySelf {
                    key = fresh.clone();
                }
                after = After::KeyWorks(fresh);
                (req("DELETE", format!("/v1/keys/{id}"), None), Some(req("DELETE", format!("/v1/keys/{NO_SUCH_KEY}"), None)))
            }
            ListAuditOwn => (req("GET", "/v1/audit?account_id=acc_a", None), None),
            ListAuditOther => (req("GET", "/v1/audit?account_id=acc_b", None), Some(req("GET", format!("/v1/audit?account_id={NO_SUCH_ACCOUNT}"), None))),
            ListPixelsOwn => (req("GET", "/v1/pixels?account_id=acc_a", None), None),
            ListPixelsOther => (req("GET", "/v1/pixels?account_id=acc_b", None), Some(req("GET", format!("/v1/pixels?account_id={NO_SUCH_ACCOUNT}"), None))),
        };
        Cell { key, req: r, twin, after }
    }

    async fn send(&self, key: &str, r: &Req) -> Answer {
        self.api.send(Some(key), r.method, &r.path, r.body.as_ref()).await
    }
}

/// The ids in `list[field]`, each object's `id_field`.
fn ids(v: &Value, field: &str, id_field: &str) -> Vec<String> {
    v[field].as_array().unwrap_or_else(|| panic!("{field} in {v}")).iter().map(|x| x[id_field].as_str().unwrap().to_owned()).collect()
}

/// What the listings must hold beyond their status; a failure message, if any.
fn check_listing(action: Action, role: Role, a: &Answer) -> Option<String> {
    let v = a.json();
    let wrong = |what: String| Some(format!("{action:?} by {role:?}: {what}: {}", a.text));
    match action {
        ListAccounts => {
            let got = ids(&v, "accounts", "account_id");
            if role == HostAdmin {
                if !(got.contains(&"acc_a".into()) && got.contains(&"acc_b".into())) {
                    return wrong(format!("a host admin lists every account, got {got:?}"));
                }
            } else if got != ["acc_a"] {
                return wrong(format!("only acc_a, got {got:?}"));
            }
        }
        ListPixelsOwn => {
            let got = ids(&v, "pixels", "pixel_id");
            let want_112 = role != AccountManager;
            if !got.contains(&"111".into()) || got.contains(&"112".into()) != want_112 || got.contains(&"221".into()) {
                return wrong(format!("111{} and never 221, got {got:?}", if want_112 { ", 112" } else { " but not 112 (not assigned)" }));
            }
        }
        ListKeysOwn | ListKeysOther => {
            let want = if action == ListKeysOwn { "acc_a" } else { "acc_b" };
            let keys = v["keys"].as_array().unwrap();
            if keys.is_empty() || keys.iter().any(|k| k["account_id"] != want || k.get("key").is_some() || k.to_string().contains("pgk_")) {
                return wrong(format!("keys of {want} only, never a key itself"));
            }
        }
        ListAuditOwn | ListAuditOther => {
            let want = if action == ListAuditOwn { "acc_a" } else { "acc_b" };
            let entries = v["entries"].as_array().unwrap();
            if entries.is_empty() || entries.iter().any(|e| e["account_id"] != want) {
                return wrong(format!("entries of {want} only"));
            }
        }
        ListPixelsOther if ids(&v, "pixels", "pixel_id").iter().any(|p| p == "111" || p == "112") || !ids(&v, "pixels", "pixel_id").contains(&"221".into()) => {
            return wrong("221 and never acc_a's pixels".into());
        }
        PostKeyOwn | PostKeyOther | PostKeyHost if !v["key"].as_str().is_some_and(|k| k.starts_with("pgk_")) => {
            return wrong("the new key, shown once".into());
        }
        _ => {}
    }
    None
}

/// Runs the whole matrix on `site`, collecting every wrong cell, then fails listing them all.
async fn run_matrix(site: Site) {
    let api = site.serve(&[]);
    for id in ["acc_a", "acc_b"] {
        api.create_account(id).await;
    }
    for (p, a) in [("111", "acc_a"), ("112", "acc_a"), ("221", "acc_b")] {
        api.register(p, a).await;
    }
    let mut keys = Vec::new();
    for role in ROLES {
        keys.push(api.create_key(role.body()).await.1);
    }
    let world = World { api, keys };

    let mut failures = Vec::new();
    let mut cells = 0;
    for (action, want) in TABLE {
        for (role, want) in ROLES.iter().zip(want) {
            cells += 1;
            let cell = world.prepare(*action, *role).await;
            let a = world.send(&cell.key, &cell.req).await;
            let r = &cell.req;
            let at = format!("{action:?} by {role:?} ({} {})", r.method, r.path);
            if a.status != *want {
                failures.push(format!("{at}: want {want}, got {} {}", a.status, a.text));
                continue;
            }
            if a.status >= 400 {
                let obj = a.json();
                if obj.as_object().is_none_or(|o| o.len() != 1 || !o["error"].is_string()) {
                    failures.push(format!("{at}: an error is {{\"error\":…}}, got {}", a.text));
                }
            } else if let Some(f) = (a.status != 204).then(|| check_listing(*action, *role, &a)).flatten() {
                failures.push(f);
            }
            if let (Some(twin), 400 | 404) = (&cell.twin, a.status) {
                let t = world.send(&cell.key, twin).await;
                if (t.status, &t.text) != (a.status, &a.text) {
                    failures.push(format!("{at}: answers {} {} but about something that does not exist ({} {}) {} {}", a.status, a.text, twin.method, twin.path, t.status, t.text));
                }
            }
            let done = (200..300).contains(&a.status);
            match &cell.after {
                After::Nothing => {}
                After::Exists(path) => {
                    let there = world.api.admin("GET", path, None).await.status;
                    if there != if done { 404 } else { 200 } {
                        failures.push(format!("{at}: answered {} but GET {path} then answers {there}", a.status));
                    }
                }
                After::KeyWorks(key) => {
                    let used = world.api.send(Some(key), "GET", "/v1/accounts", None).await.status;
                    if (used == 401) != done {
                        failures.push(format!("{at}: answered {} but the key then gets {used}", a.status));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} of {cells} cells wrong on {}:\n{}", failures.len(), site.name(), failures.join("\n"));
}

/// No key, a garbage key, a well-formed unknown key and a revoked key: `401` with
/// `WWW-Authenticate: Bearer`, the same answer for the last three.
async fn run_authentication(site: Site) {
    let api = site.serve(&[]);
    api.create_account("acc_a").await;
    let (id, key) = api.create_key(json!({"role": "viewer", "account_id": "acc_a"})).await;
    assert_eq!(api.send(Some(&key), "GET", "/v1/accounts/acc_a", None).await.status, 200);
    assert_eq!(api.ok("DELETE", &format!("/v1/keys/{id}"), None).await, Value::Null);

    let unknown = format!("pgk_{}", "A".repeat(43));
    let mut invalid = Vec::new();
    // (what, the Authorization header, whether a key was sent)
    for (what, authorization, sent) in [
        ("no key", None, false),
        ("an empty bearer", Some("Bearer ".to_owned()), false),
        ("basic auth", Some("Basic YWRtaW46YWRtaW4=".to_owned()), false),
        ("a garbage key", Some("Bearer garbage".to_owned()), true),
        ("a well-formed unknown key", Some(format!("Bearer {unknown}")), true),
        ("a revoked key", Some(format!("Bearer {key}")), true),
        ("the admin key with a typo", Some(format!("Bearer {ADMIN_KEY}x")), true),
    ] {
        for (method, path, body) in [("GET", "/v1/accounts/acc_a", None), ("POST", "/v1/accounts", Some(br#"{"name":"x"}"#.to_vec())), ("GET", "/v1/pixels/111/token", None)] {
            let a = api.send_with(authorization.as_deref(), method, path, body).await;
            assert_eq!(a.status, 401, "{what}: {method} {path}: {}", a.text);
            assert_eq!(a.headers.get("www-authenticate").map(|v| v.to_str().unwrap()), Some("Bearer"), "{what}: {:?}", a.headers);
            a.error();
            if sent {
                invalid.push((what, a.text));
            }
        }
    }
    let first = &invalid[0].1;
    assert!(invalid.iter().all(|(_, t)| t == first), "an unknown, a revoked and a garbage key get the same answer: {invalid:#?}");
    let accounts = api.ok("GET", "/v1/accounts", None).await;
    assert_eq!(ids(&accounts, "accounts", "account_id"), ["acc_a"], "nothing was created without a key");
}

#[tokio::test]
async fn roles_on_the_embedded_store() {
    run_matrix(Site::sqlite()).await;
}

#[tokio::test]
async fn roles_on_dynamodb() {
    run_matrix(Site::dynamodb("matrix")).await;
}

#[tokio::test]
async fn without_a_valid_key_everything_is_401_on_the_embedded_store() {
    run_authentication(Site::sqlite()).await;
}

#[tokio::test]
async fn without_a_valid_key_everything_is_401_on_dynamodb() {
    run_authentication(Site::dynamodb("auth")).await;
}

/// Deleting an account revokes its keys, at once on the instance that deleted it; an account
/// made again under the same id does not bring them back.
#[tokio::test]
async fn deleting_an_account_revokes_its_keys() {
    let site = Site::sqlite();
    let api = site.serve(&[]);
    api.create_account("acc_gone").await;
    let (_, admin) = api.create_key(json!({"role": "admin", "account_id": "acc_gone"})).await;
    let (_, viewer) = api.create_key(json!({"role": "viewer", "account_id": "acc_gone"})).await;
    let (_, host_viewer) = api.create_key(json!({"role": "viewer", "accounts": ["acc_gone"]})).await;
    for key in [&admin, &viewer, &host_viewer] {
        assert_eq!(api.send(Some(key), "GET", "/v1/accounts/acc_gone", None).await.status, 200);
    }
    let a = api.send(Some(&admin), "DELETE", "/v1/accounts/acc_gone", None).await;
    assert_eq!(a.status, 403, "an account admin may not delete its account: {}", a.text);
    assert_eq!(api.admin("DELETE", "/v1/accounts/acc_gone", None).await.status, 204);
    for key in [&admin, &viewer] {
        let a = api.send(Some(key), "GET", "/v1/accounts", None).await;
        assert_eq!(a.status, 401, "the account's keys go with it: {}", a.text);
    }
    // The host viewer's assignment now names nothing.
    let a = api.send(Some(&host_viewer), "GET", "/v1/accounts/acc_gone", None).await;
    assert_eq!((a.status, a.error()), (404, "no such account".to_owned()), "{}", a.text);
    assert_eq!(ids(&api.ok("GET", "/v1/accounts", None).await, "accounts", "account_id"), Vec::<String>::new());
    let audit = api.ok("GET", "/v1/audit?account_id=acc_gone", None).await;
    assert_eq!(audit["entries"][0]["action"], "account.delete", "{audit}");

    api.create_account("acc_gone").await;
    for key in [&admin, &viewer] {
        assert_eq!(api.send(Some(key), "GET", "/v1/accounts/acc_gone", None).await.status, 401, "revoked for good");
    }
    assert!(api.ok("GET", "/v1/keys?account_id=acc_gone", None).await["keys"].as_array().unwrap().is_empty());
}
