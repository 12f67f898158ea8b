//! The bodies the accounts API and the CLI take (`docs/api.md`), strict: an unknown field, a wrong
//! type or a bad value is a `400` whose message names the field. Nothing is written before a whole
//! body has been checked.

use serde::{Deserialize, Deserializer};

use super::domains::{MAX_DOMAINS, parse_domain};
use super::error::RegistryError;
use super::ids::AccountId;
use super::model::{Forwarding, Role};
use crate::record::PixelId;
use crate::secret::Secret;

/// Longest name of an account, key or pixel.
pub const MAX_NAME: usize = 200;
/// Longest Meta test-event code accepted (Meta's are like `TEST12345`).
const MAX_TEST_CODE: usize = 64;
/// Longest access token accepted.
const MAX_TOKEN: usize = 4096;
/// Most accounts or pixels assigned to one key.
pub const MAX_ASSIGNED: usize = 1000;

/// `bytes` as a `T`, or a `400` naming the field that is wrong.
pub fn parse<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, RegistryError> {
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        None => return Err(RegistryError::Invalid("the body is empty; send a JSON object".into())),
        // serde reads a struct from an array too (fields by position): only objects are bodies.
        Some(b) if *b != b'{' => return Err(RegistryError::Invalid("body: send a JSON object ({\"field\": …})".into())),
        Some(_) => {}
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.inner().to_string();
        if path == "." || path.is_empty() { RegistryError::Invalid(format!("body: {inner}")) } else { RegistryError::Invalid(format!("{path}: {inner}")) }
    })
}

/// `Some(None)` for an explicit `null`, `Some(Some(v))` for a value, `None` (by `default`) when
/// the field is absent: how a PATCH tells "clear it" from "leave it".
fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// `POST /v1/accounts`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewAccount {
    /// Required.
    pub name: String,
    /// Chosen by the caller, else by the server.
    #[serde(default)]
    pub account_id: Option<String>,
}

/// `PATCH /v1/accounts/{id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountPatch {
    /// A new name.
    #[serde(default)]
    pub name: Option<String>,
    /// Where notices are POSTed; `null` stops them.
    #[serde(default, deserialize_with = "nullable")]
    pub webhook_url: Option<Option<String>>,
    /// What they are signed with (write-only); `null` clears it (only with no URL).
    #[serde(default, deserialize_with = "nullable")]
    pub webhook_secret: Option<Option<String>>,
}

/// `POST /v1/keys`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    /// `admin`, `manager` or `viewer`.
    pub role: Role,
    /// The account; absent = a host key.
    #[serde(default)]
    pub account_id: Option<String>,
    /// A host manager's or viewer's accounts.
    #[serde(default)]
    pub accounts: Option<Vec<String>>,
    /// An account manager's pixels.
    #[serde(default)]
    pub pixels: Option<Vec<String>>,
    /// A name people read.
    #[serde(default)]
    pub name: Option<String>,
}

/// Meta credentials in a pixel body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetaCredentials {
    /// The Conversions API access token (write-only).
    pub access_token: String,
}

/// `destinations` in a pixel body; `null` removes one.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Destinations {
    /// Meta's Conversions API.
    #[serde(default, deserialize_with = "nullable")]
    pub meta: Option<Option<MetaCredentials>>,
}

/// `PUT` and `PATCH /v1/pixels/{id}`: the account (PUT only) and any settings.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PixelBody {
    /// The account it is registered to (PUT).
    #[serde(default)]
    pub account_id: Option<String>,
    /// A name people read; `null` clears it.
    #[serde(default, deserialize_with = "nullable")]
    pub name: Option<Option<String>>,
    /// Pages allowed to send its hits.
    #[serde(default)]
    pub allowed_domains: Option<Vec<String>>,
    /// Test mode; `null` clears it.
    #[serde(default, deserialize_with = "nullable")]
    pub test_event_code: Option<Option<String>>,
    /// `on` or `off`.
    #[serde(default)]
    pub forwarding: Option<Forwarding>,
    /// Credentials per destination.
    #[serde(default)]
    pub destinations: Option<Destinations>,
}

/// A checked pixel body: every value valid.
#[derive(Debug, Default)]
pub struct PixelChange {
    /// See [`PixelBody`].
    pub name: Option<Option<String>>,
    /// Lowercased, deduplicated.
    pub allowed_domains: Option<Vec<String>>,
    /// See [`PixelBody`].
    pub test_event_code: Option<Option<String>>,
    /// See [`PixelBody`].
    pub forwarding: Option<Forwarding>,
    /// `Some(Some(token))` sets Meta's token, `Some(None)` removes it.
    pub meta_token: Option<Option<Secret>>,
}

impl PixelChange {
    /// The names of the fields this change sets or clears, for the audit log.
    pub fn fields(&self) -> Vec<String> {
        let mut f = Vec::new();
        let mut add = |set: bool, name: &str| {
            if set {
                f.push(name.to_owned());
            }
        };
        add(self.name.is_some(), "name");
        add(self.allowed_domains.is_some(), "allowed_domains");
        add(self.test_event_code.is_some(), "test_event_code");
        add(self.forwarding.is_some(), "forwarding");
        add(self.meta_token.is_some(), "destinations.meta");
        f
    }
}

impl PixelBody {
    /// Checks every field; the account id (PUT) is returned apart.
    pub fn check(self) -> Result<(Option<AccountId>, PixelChange), RegistryError> {
        let account = self.account_id.as_deref().map(AccountId::parse).transpose().map_err(|e| RegistryError::field("account_id", e))?;
        let name = self.name.map(|n| n.map(|n| check_name("name", &n)).transpose()).transpose()?;
        let allowed_domains = match self.allowed_domains {
            None => None,
            Some(list) if list.len() > MAX_DOMAINS => return Err(RegistryError::field("allowed_domains", format_args!("at most {MAX_DOMAINS} domains"))),
            Some(list) => {
                let mut out = Vec::with_capacity(list.len());
                for (i, d) in list.iter().enumerate() {
                    let d = parse_domain(d).map_err(|e| RegistryError::field(&format!("allowed_domains[{i}]"), e))?;
                    if !out.contains(&d) {
                        out.push(d);
                    }
                }
                Some(out)
            }
        };
        let test_event_code = match self.test_event_code {
            Some(Some(code)) => {
                let ok = !code.is_empty() && code.len() <= MAX_TEST_CODE && code.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                if !ok {
                    return Err(RegistryError::field(
                        "test_event_code",
                        format_args!("1-{MAX_TEST_CODE} letters, digits, '_' or '-' (e.g. \"TEST12345\" from Events Manager), or null to leave test mode"),
                    ));
                }
                Some(Some(code))
            }
            other => other,
        };
        let meta_token = match self.destinations.and_then(|d| d.meta) {
            None => None,
            Some(None) => Some(None),
            Some(Some(m)) => Some(Some(check_token("destinations.meta.access_token", &m.access_token)?)),
        };
        Ok((account, PixelChange { name, allowed_domains, test_event_code, forwarding: self.forwarding, meta_token }))
    }
}

/// A name: trimmed, 1–[`MAX_NAME`] characters, no control characters.
pub fn check_name(field: &str, name: &str) -> Result<String, RegistryError> {
    let n = name.trim();
    if n.is_empty() || n.chars().count() > MAX_NAME || n.chars().any(char::is_control) {
        return Err(RegistryError::field(field, format_args!("1-{MAX_NAME} characters, no control characters")));
    }
    Ok(n.to_owned())
}

/// An access token: non-empty, one line, no spaces, at most [`MAX_TOKEN`] bytes.
pub fn check_token(field: &str, token: &str) -> Result<Secret, RegistryError> {
    let t = token.trim();
    if t.is_empty() {
        return Err(RegistryError::field(field, "is empty"));
    }
    if t.len() > MAX_TOKEN || t.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(RegistryError::field(field, format_args!("at most {MAX_TOKEN} bytes, no spaces or line breaks")));
    }
    Ok(Secret::new(t))
}

/// A pixel id in a body or path.
pub fn check_pixel(field: &str, id: &str) -> Result<PixelId, RegistryError> {
    PixelId::parse(id).map_err(|_| RegistryError::field(field, format_args!("a pixel id is 1-32 digits (got {:?})", super::ids::clip(id))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err<T: for<'de> Deserialize<'de> + std::fmt::Debug>(body: &str) -> String {
        parse::<T>(body.as_bytes()).unwrap_err().to_string()
    }

    #[test]
    fn every_wrong_body_names_its_field() {
        assert!(err::<NewAccount>(r#"{"name":"a","nmae":"b"}"#).contains("`nmae`"));
        assert!(err::<NewAccount>("{}").contains("`name`"));
        assert!(err::<NewAccount>("").contains("empty"));
        assert!(err::<NewAccount>("[1]").starts_with("body:"));
        assert!(err::<NewAccount>(r#"["Shop X"]"#).starts_with("body:"), "an array is not read as the fields in order");
        assert!(err::<PixelBody>(r#"{"allowed_domains":[1]}"#).starts_with("allowed_domains[0]:"));
        assert!(err::<PixelBody>(r#"{"forwarding":"maybe"}"#).starts_with("forwarding:"));
        assert!(err::<PixelBody>(r#"{"destinations":{"tiktok":{}}}"#).contains("`tiktok`"));
        assert!(err::<NewKey>(r#"{"role":"owner"}"#).starts_with("role:"));
        let checked = |b: &str| parse::<PixelBody>(b.as_bytes()).unwrap().check().unwrap_err().to_string();
        assert!(checked(r#"{"allowed_domains":["ok.com","https://x.com"]}"#).starts_with("allowed_domains[1]:"));
        assert!(checked(r#"{"test_event_code":"has space"}"#).starts_with("test_event_code:"));
        assert!(checked(r#"{"account_id":"shop"}"#).starts_with("account_id:"));
        assert!(checked(r#"{"destinations":{"meta":{"access_token":" "}}}"#).starts_with("destinations.meta.access_token:"));
        assert!(checked(&format!(r#"{{"name":"{}"}}"#, "n".repeat(201))).starts_with("name:"));
    }

    #[test]
    fn null_clears_and_absent_leaves() {
        let (_, c) = parse::<PixelBody>(br#"{"test_event_code":null,"destinations":{"meta":null},"allowed_domains":["A.com","a.com"]}"#).unwrap().check().unwrap();
        assert_eq!(c.test_event_code, Some(None));
        assert!(matches!(c.meta_token, Some(None)));
        assert_eq!(c.allowed_domains.as_deref(), Some(&["a.com".to_owned()][..]));
        assert_eq!(c.name, None);
        assert_eq!(c.fields(), ["allowed_domains", "test_event_code", "destinations.meta"]);
    }
}
