//! Malformed requests: every one is a 4xx `{"error":…}` whose message names what is wrong, and
//! leaves the store exactly as it was — through the API (every listing) and underneath it (every
//! SQLite row).

use serde_json::{Value, json};

use crate::helpers::{ADMIN_KEY, Api, Site, sqlite_rows};

/// Everything the API lists, with the bootstrap key (which has no last-use time to change), plus
/// every row of the store.
async fn snapshot(api: &Api, site: &Site) -> (Vec<Value>, Vec<String>) {
    let mut seen = vec![api.ok("GET", "/v1/accounts", None).await, api.ok("GET", "/v1/keys", None).await, api.ok("GET", "/v1/audit", None).await];
    for a in ["acc_a", "acc_b"] {
        seen.push(api.ok("GET", &format!("/v1/accounts/{a}"), None).await);
        for what in ["pixels", "keys", "audit"] {
            seen.push(api.ok("GET", &format!("/v1/{what}?account_id={a}"), None).await);
        }
    }
    for p in ["111", "4001", "4002"] {
        seen.push(api.ok("GET", &format!("/v1/pixels/{p}/token"), None).await);
    }
    (seen, sqlite_rows(&site.data()))
}

/// A site with `acc_a` (pixel 111, a token on it), `acc_b`, and a key of each kind.
async fn populated() -> (Site, Api) {
    let site = Site::sqlite();
    let api = site.serve(&[]);
    api.create_account("acc_a").await;
    api.create_account("acc_b").await;
    api.register("111", "acc_a").await;
    api.ok("PUT", "/v1/pixels/111/token", Some(json!({"access_token": "EAAbadinputtoken0123456789"}))).await;
    api.create_key(json!({"role": "admin", "account_id": "acc_a"})).await;
    api.create_key(json!({"role": "viewer"})).await;
    (site, api)
}

/// Sends each `(method, path, body bytes, status, text the message must contain)` with the
/// bootstrap key; checks the answer and that nothing changed; a list of what was wrong.
async fn refuse_all(api: &Api, site: &Site, cases: &[Case<'_>]) -> Vec<String> {
    let before = snapshot(api, site).await;
    let mut wrong = Vec::new();
    for (method, path, body, status, names) in cases {
        let shown = body.as_ref().map(|b| String::from_utf8_lossy(&b[..b.len().min(120)]).into_owned());
        let a = api.send_raw(Some(ADMIN_KEY), method, path, body.clone()).await;
        if a.status != *status {
            wrong.push(format!("{method} {path} {shown:?}: want {status}, got {} {}", a.status, a.text));
            continue;
        }
        let v: Option<Value> = serde_json::from_str(&a.text).ok();
        let message = v.as_ref().and_then(|v| v.as_object()).filter(|o| o.len() == 1).and_then(|o| o["error"].as_str());
        match message {
            None => wrong.push(format!("{method} {path} {shown:?}: not {{\"error\":…}}: {}", a.text)),
            Some(m) if !m.contains(names) => wrong.push(format!("{method} {path} {shown:?}: the message does not name {names:?}: {m}")),
            Some(_) => {}
        }
        let after = snapshot(api, site).await;
        if after != before {
            wrong.push(format!("{method} {path} {shown:?}: answered {} but changed the store:\nbefore {:#?}\nafter {:#?}", a.status, before, after));
            break;
        }
    }
    wrong
}

/// A malformed request: method, path, body bytes, the status it must get and a text its message
/// must contain.
type Case<'a> = (&'a str, &'a str, Option<Vec<u8>>, u16, &'a str);

fn j(v: Value) -> Option<Vec<u8>> {
    Some(v.to_string().into_bytes())
}

fn b(s: &str) -> Option<Vec<u8>> {
    Some(s.as_bytes().to_vec())
}

#[tokio::test]
async fn every_malformed_request_names_its_field_and_changes_nothing() {
    let (site, api) = populated().await;
    let long = "n".repeat(201);
    let huge = json!({"name": "x".repeat(70 * 1024)});
    let too_long_id = format!("/v1/pixels/{}", "1".repeat(33));
    let huge_pixel = json!({"account_id": "acc_a", "allowed_domains": vec!["a.example"; 8 * 1024]});
    let cases: Vec<Case> = vec![
        // Not a JSON object.
        ("POST", "/v1/accounts", b("not json"), 400, "body"),
        ("POST", "/v1/accounts", b("{\"name\":"), 400, "name"),
        ("POST", "/v1/accounts", b(""), 400, "empty"),
        ("POST", "/v1/accounts", None, 400, "empty"),
        ("POST", "/v1/accounts", b("  \n"), 400, "empty"),
        ("POST", "/v1/accounts", b("\"Shop\""), 400, "body"),
        ("POST", "/v1/accounts", b("null"), 400, "body"),
        ("PUT", "/v1/pixels/4001", b("not json"), 400, "body"),
        ("PATCH", "/v1/pixels/111", b(""), 400, "empty"),
        // Unknown fields, missing ones, wrong types.
        ("POST", "/v1/accounts", j(json!({"name": "x", "nmae": "y"})), 400, "nmae"),
        ("POST", "/v1/accounts", j(json!({})), 400, "name"),
        ("POST", "/v1/accounts", j(json!({"name": 5})), 400, "name"),
        ("POST", "/v1/accounts", j(json!({"name": "x", "account_id": 7})), 400, "account_id"),
        ("PATCH", "/v1/accounts/acc_a", j(json!({"nmae": "x"})), 400, "nmae"),
        ("PATCH", "/v1/accounts/acc_a", j(json!({"name": ["x"]})), 400, "name"),
        ("POST", "/v1/keys", j(json!({})), 400, "role"),
        ("POST", "/v1/keys", j(json!({"role": "owner"})), 400, "role"),
        ("POST", "/v1/keys", j(json!({"role": "viewer", "scope": "host"})), 400, "scope"),
        ("POST", "/v1/keys", j(json!({"role": "viewer", "accounts": "acc_a"})), 400, "accounts"),
        ("PUT", "/v1/pixels/4001", j(json!({"account_id": "acc_a", "allowed_domain": ["a.example"]})), 400, "allowed_domain"),
        ("PUT", "/v1/pixels/4001", j(json!({"account_id": "acc_a", "allowed_domains": "a.example"})), 400, "allowed_domains"),
        ("PUT", "/v1/pixels/4001", j(json!({"account_id": "acc_a", "allowed_domains": [1]})), 400, "allowed_domains[0]"),
        ("PUT", "/v1/pixels/4001", j(json!({"account_id": "acc_a", "forwarding": "maybe"})), 400, "forwarding"),
        ("PUT", "/v1/pixels/4001", j(json!({"account_id": "acc_a", "destinations": {"tiktok": {}}})), 400, "tiktok"),
        ("PUT", "/v1/pixels/4001", j(json!({"account_id": "acc_a", "destinations": {"meta": {"token": "EAAx"}}})), 400, "token"),
        ("PATCH", "/v1/pixels/111", j(json!({"test_event_code": 12345})), 400, "test_event_code"),
        ("PATCH", "/v1/pixels/111", j(json!({"ldu": "yes", "forwarding": "on"})), 400, "ldu"),
        ("PUT", "/v1/pixels/111/token", j(json!({"token": "EAAx"})), 400, "token"),
        ("PUT", "/v1/pixels/111/token", j(json!({})), 400, "access_token"),
        ("PUT", "/v1/pixels/111/token", j(json!({"access_token": 5})), 400, "access_token"),
        // Values out of range.
        ("POST", "/v1/accounts", j(json!({"name": long})), 400, "name"),
        ("POST", "/v1/accounts", j(json!({"name": "  "})), 400, "name"),
        ("POST", "/v1/accounts", j(json!({"name": "a\u{7}b"})), 400, "name"),
        ("PATCH", "/v1/accounts/acc_a", j(json!({"name": long})), 400, "name"),
        ("PATCH", "/v1/accounts/acc_a", j(json!({"webhook_url": 5})), 400, "webhook_url"),
        ("PATCH", "/v1/accounts/acc_a", j(json!({"webhook_url": "http://hooks.example.com/x", "webhook_secret": "s3cret-value"})), 400, "webhook_url"),
        ("PATCH", "/v1/accounts/acc_a", j(json!({"webhook_url": "https://169.254.169.254/", "webhook_secret": "s3cret-value"})), 400, "webhook_url"),
        ("PATCH", "/v1/accounts/acc_a", j(json!({"webhook_url": "https://93.184.215.14/x"})), 400, "webhook_secret"),
        ("PATCH", "/v1/accounts/acc_a", j(json!({"webhook_url": "https://93.184.215.14/x", "webhook_secret": ""})), 400, "webhook_secret"),
        ("PATCH", "/v1/accounts/acc_a", j(json!({"name": "Renamed", "webhook_url": "https://93.184.215.14/x", "webhook_secret": "a\nb"})), 400, "webhook_secret"),
        ("POST", "/v1/accounts", j(json!({"name": "x", "account_id": "shop"})), 400, "account_id"),
        ("POST", "/v1/accounts", j(json!({"name": "x", "account_id": "acc_"})), 400, "account_id"),
        ("POST", "/v1/accounts", j(json!({"name": "x", "account_id": "acc_a b"})), 400, "account_id"),
        ("POST", "/v1/accounts", j(json!({"name": "x", "account_id": format!("acc_{}", "a".repeat(41))})), 400, "account_id"),
        ("POST", "/v1/keys", j(json!({"role": "viewer", "account_id": "shop"})), 400, "account_id"),
        ("POST", "/v1/keys", j(json!({"role": "viewer", "name": long})), 400, "name"),
        ("POST", "/v1/keys", j(json!({"role": "manager", "accounts": ["shop"]})), 400, "accounts[0]"),
        ("POST", "/v1/keys", j(json!({"role": "manager", "accounts": ["acc_a", "acc_nobody"]})), 400, "accounts[1]"),
        ("POST", "/v1/keys", j(json!({"role": "admin", "accounts": ["acc_a"]})), 400, "accounts"),
        ("POST", "/v1/keys", j(json!({"role": "viewer", "account_id": "acc_a", "accounts": ["acc_a"]})), 400, "accounts"),
        ("POST", "/v1/keys", j(json!({"role": "manager", "account_id": "acc_a", "pixels": ["12a"]})), 400, "pixels[0]"),
        ("POST", "/v1/keys", j(json!({"role": "manager", "account_id": "acc_a", "pixels": ["111", "999"]})), 400, "pixels[1]"),
        ("POST", "/v1/keys", j(json!({"role": "viewer", "account_id": "acc_a", "pixels": ["111"]})), 400, "pixels"),
        ("PUT", "/v1/pixels/4001", j(json!({})), 400, "account_id"),
        ("PUT", "/v1/pixels/4001", j(json!({"account_id": "shop"})), 400, "account_id"),
        ("PUT", "/v1/pixels/4001", j(json!({"account_id": "acc_nobody"})), 400, "account_id"),
        ("PUT", "/v1/pixels/4001", j(json!({"account_id": "acc_a", "name": long})), 400, "name"),
        ("PUT", "/v1/pixels/4001", j(json!({"account_id": "acc_a", "allowed_domains": ["https://shop.example/"]})), 400, "allowed_domains[0]"),
        ("PUT", "/v1/pixels/4001", j(json!({"account_id": "acc_a", "allowed_domains": ["ok.example", "bad domain"]})), 400, "allowed_domains[1]"),
        ("PUT", "/v1/pixels/4001", j(json!({"account_id": "acc_a", "test_event_code": "has space"})), 400, "test_event_code"),
        ("PUT", "/v1/pixels/4001", j(json!({"account_id": "acc_a", "test_event_code": ""})), 400, "test_event_code"),
        ("PUT", "/v1/pixels/4001", j(json!({"account_id": "acc_a", "test_event_code": "T".repeat(65)})), 400, "test_event_code"),
        ("PUT", "/v1/pixels/4001", j(json!({"account_id": "acc_a", "destinations": {"meta": {"access_token": " "}}})), 400, "destinations.meta.access_token"),
        ("PUT", "/v1/pixels/4001", j(json!({"account_id": "acc_a", "destinations": {"meta": {"access_token": "EAA x"}}})), 400, "destinations.meta.access_token"),
        ("PATCH", "/v1/pixels/111", j(json!({"allowed_domains": ["localhost:8080"]})), 400, "allowed_domains[0]"),
        ("PATCH", "/v1/pixels/111", j(json!({"test_event_code": "TEST<script>"})), 400, "test_event_code"),
        ("PATCH", "/v1/pixels/111", j(json!({"account_id": "acc_b"})), 400, "account_id"),
        ("PUT", "/v1/pixels/111/token", j(json!({"access_token": ""})), 400, "access_token"),
        ("PUT", "/v1/pixels/111/token", j(json!({"access_token": "EAA\nx"})), 400, "access_token"),
        // Over 64 KiB.
        ("POST", "/v1/accounts", j(huge.clone()), 413, "64 KiB"),
        ("PATCH", "/v1/accounts/acc_a", j(huge), 413, "64 KiB"),
        ("PUT", "/v1/pixels/4001", j(huge_pixel), 413, "64 KiB"),
        // Bad pixel ids in the path.
        ("GET", "/v1/pixels/abc", None, 400, "pixel_id"),
        ("GET", "/v1/pixels/-1", None, 400, "pixel_id"),
        ("GET", &too_long_id, None, 400, "pixel_id"),
        ("PUT", "/v1/pixels/12a", j(json!({"account_id": "acc_a"})), 400, "pixel_id"),
        ("PATCH", "/v1/pixels/1.5", j(json!({"forwarding": "off"})), 400, "pixel_id"),
        ("DELETE", "/v1/pixels/x111", None, 400, "pixel_id"),
        ("GET", "/v1/pixels/abc/token", None, 400, "pixel_id"),
        ("PUT", "/v1/pixels/abc/token", j(json!({"access_token": "EAAvalid"})), 400, "pixel_id"),
        ("DELETE", "/v1/pixels/abc/token", None, 400, "pixel_id"),
        ("GET", "/v1/pixels/abc/deliveries", None, 400, "pixel_id"),
        // Unknown query parameters.
        ("GET", "/v1/pixels?account_id=acc_a&acount=acc_b", None, 400, "acount"),
        ("GET", "/v1/pixels?acount_id=acc_a", None, 400, "acount_id"),
        ("GET", "/v1/keys?scope=host", None, 400, "scope"),
        ("GET", "/v1/audit?account_id=acc_a&limit=5", None, 400, "limit"),
    ];
    let wrong = refuse_all(&api, &site, &cases).await;
    assert!(wrong.is_empty(), "{} of {} malformed requests were not refused as they should be:\n{}", wrong.len(), cases.len(), wrong.join("\n"));
}

/// A JSON array is not an object: serde's derived structs also accept a sequence of their
/// fields in order (`["Shop"]` for `{"name":"Shop"}`), which the API must not.
#[tokio::test]
async fn a_json_array_is_not_a_body() {
    let (site, api) = populated().await;
    let cases: Vec<Case> = vec![
        ("POST", "/v1/accounts", b("[]"), 400, "body"),
        ("POST", "/v1/accounts", b("[1]"), 400, "body"),
        ("POST", "/v1/accounts", b(r#"["Shop X"]"#), 400, "body"),
        ("POST", "/v1/accounts", b(r#"["Shop Y","acc_y"]"#), 400, "body"),
        ("PATCH", "/v1/accounts/acc_a", b(r#"["Renamed"]"#), 400, "body"),
        ("POST", "/v1/keys", b(r#"["admin"]"#), 400, "body"),
        ("PUT", "/v1/pixels/4001", b(r#"["acc_a"]"#), 400, "body"),
        ("PATCH", "/v1/pixels/111", b(r#"[null, null, ["evil.example"]]"#), 400, "body"),
        ("PUT", "/v1/pixels/111/token", b(r#"["EAAarraytoken"]"#), 400, "body"),
    ];
    let wrong = refuse_all(&api, &site, &cases).await;
    assert!(wrong.is_empty(), "{} of {} array bodies were not refused:\n{}", wrong.len(), cases.len(), wrong.join("\n"));
}

/// `account_id` is the only query parameter of the API: a route that takes none refuses one
/// too, rather than ignoring a filter the caller believes applies.
#[tokio::test]
async fn routes_without_query_parameters_refuse_them() {
    let (site, api) = populated().await;
    let cases: Vec<Case> = vec![
        ("GET", "/v1/accounts?acount_id=acc_a", None, 400, "acount_id"),
        ("GET", "/v1/accounts/acc_a?fields=name", None, 400, "fields"),
        ("GET", "/v1/pixels/111?verbose=1", None, 400, "verbose"),
        ("GET", "/v1/pixels/111/token?reveal=1", None, 400, "reveal"),
    ];
    let wrong = refuse_all(&api, &site, &cases).await;
    assert!(wrong.is_empty(), "{} of {} unknown query parameters were ignored:\n{}", wrong.len(), cases.len(), wrong.join("\n"));
}

#[tokio::test]
async fn a_pixel_put_with_one_bad_field_writes_nothing() {
    let (site, api) = populated().await;
    let account_before = api.ok("GET", "/v1/accounts/acc_a", None).await;
    assert_eq!(account_before["pixels"], 1, "{account_before}");
    let audit_before = api.ok("GET", "/v1/audit?account_id=acc_a", None).await;
    let rows_before = sqlite_rows(&site.data());
    let good = json!({"account_id": "acc_a", "name": "Landing", "allowed_domains": ["shop.example"], "test_event_code": "TEST1", "forwarding": "on",
                      "destinations": {"meta": {"access_token": "EAAgoodtoken0123456789"}}});
    for (field, bad) in [
        ("name", json!("")),
        ("allowed_domains", json!(["shop.example", "https://x.example"])),
        ("test_event_code", json!("TEST 1")),
        ("forwarding", json!("sometimes")),
        ("destinations", json!({"meta": {"access_token": ""}})),
        ("destinations", json!({"meta": {"access_token": "EAAgood", "extra": 1}})),
        ("account_id", json!("acc_a!")),
        ("account_id", json!("acc_nobody")),
        ("colour", json!("red")),
    ] {
        let mut body = good.clone();
        body[field] = bad;
        let a = api.admin("PUT", "/v1/pixels/4002", Some(body.clone())).await;
        assert_eq!(a.status, 400, "{body}: {}", a.text);
        assert!(a.error().contains(field), "{body}: {}", a.text);
        assert!(!a.text.contains("EAAgood"), "{}", a.text);
        assert_eq!(api.admin("GET", "/v1/pixels/4002", None).await.status, 404, "{body}: no pixel");
        assert_eq!(api.ok("GET", "/v1/pixels/4002/token", None).await["set"], false, "{body}: no token");
        assert_eq!(api.ok("GET", "/v1/accounts/acc_a", None).await, account_before, "{body}: the pixel count is unchanged");
        assert_eq!(api.ok("GET", "/v1/audit?account_id=acc_a", None).await, audit_before, "{body}: no audit entry");
        assert_eq!(sqlite_rows(&site.data()), rows_before, "{body}: no row changed");
    }
    // The same body without the bad field goes through, and is what changes the store.
    let a = api.admin("PUT", "/v1/pixels/4002", Some(good)).await;
    assert_eq!(a.status, 201, "{}", a.text);
    assert_eq!(api.ok("GET", "/v1/accounts/acc_a", None).await["pixels"], 2);
    assert_eq!(api.ok("GET", "/v1/pixels/4002/token", None).await["set"], true);
    let audit = api.ok("GET", "/v1/audit?account_id=acc_a", None).await;
    assert_eq!(audit["entries"][0]["action"], "pixel.create", "{audit}");
    assert_eq!(audit["entries"][0]["target"], "pixel:4002", "{audit}");
}
