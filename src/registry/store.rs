//! [`Registry`]: every read and change of accounts, keys and pixels, each asked of a
//! [`Principal`] first, each change written with its audit entry in one transaction.

use std::sync::Arc;

use serde::de::DeserializeOwned;

use super::directory::Directory;
use super::error::RegistryError;
use super::ids::{AccountId, KeyId, key_digest, new_key};
use super::keys::KeyCache;
use super::kv::{Cond, Item, Kv, TxError, Write};
use super::layout as at;
use super::model::{Account, AuditEntry, Forwarding, KeyRecord, PixelRecord, Role, WebhookDelivery};
use super::principal::{Access, Principal, Target};
use super::requests::{AccountPatch, MAX_ASSIGNED, NewAccount, NewKey, PixelChange, check_name, check_pixel};
use super::webhook::{WebhookPolicy, check_secret, check_url, secret_place};
use crate::record::PixelId;
use crate::secret::Secret;
use crate::tokens::{TokenCache, TokenStatusView, now_ms};

/// How often a change is tried again when another change to the same document came between its
/// read and its write.
const ATTEMPTS: usize = 5;
/// Most audit entries one answer lists.
pub const AUDIT_PAGE: usize = 500;
/// Most pixels or keys one answer lists.
pub const LIST_PAGE: usize = 10_000;

/// Most keys an account deletion revokes in its one transaction (two writes each).
const MAX_KEYS_DELETED: usize = 45;

const NO_ACCOUNT: &str = "no such account";
const NO_PIXEL: &str = "no such pixel";
const NO_KEY: &str = "no such key";

/// A pixel as answers show it: its record and what is set of its destinations.
#[derive(Debug, Clone)]
pub struct PixelView {
    /// The record.
    pub record: PixelRecord,
    /// Meta's token, without the token.
    pub meta: TokenStatusView,
}

/// The registry over its store.
pub struct Registry {
    kv: Kv,
    tokens: Arc<TokenCache>,
    directory: Arc<Directory>,
    keys: Arc<KeyCache>,
    webhooks: WebhookPolicy,
}

/// An account's webhook, ready to be called.
#[derive(Debug)]
pub struct WebhookTarget {
    /// Where to POST.
    pub url: String,
    /// What to sign with.
    pub secret: Secret,
}

/// Whether a principal may go as far as `need` with a target, as the error the API answers.
fn require(access: Access, need: Access, missing: &str, what: &str) -> Result<(), RegistryError> {
    match access {
        Access::Hidden => Err(RegistryError::NotFound(missing.to_owned())),
        a if a >= need => Ok(()),
        _ => Err(RegistryError::Forbidden(format!("this key may not {what}"))),
    }
}

fn decode<T: DeserializeOwned>(item: &Item) -> Result<T, RegistryError> {
    serde_json::from_str(&item.doc).map_err(|e| RegistryError::Unavailable(format!("the registry holds a malformed document at {}: {e}", item.pk)))
}

fn tx_error(e: TxError) -> RegistryError {
    match e {
        TxError::Conflict(_) => RegistryError::Conflict("changed by another request at the same time; try again".into()),
        TxError::Store(e) => e.into(),
    }
}

impl Registry {
    /// A registry in `kv`; Meta tokens through `tokens`; changes shown at once to `directory`
    /// (the hot path's view) and `keys` (the key cache).
    pub fn new(kv: Kv, tokens: Arc<TokenCache>, directory: Arc<Directory>, keys: Arc<KeyCache>) -> Registry {
        Registry { kv, tokens, directory, keys, webhooks: WebhookPolicy::default() }
    }

    /// The same, with webhook targets checked under `policy` (`--allow-private-webhooks`).
    pub fn with_webhook_policy(mut self, policy: WebhookPolicy) -> Registry {
        self.webhooks = policy;
        self
    }

    /// The store.
    pub fn kv(&self) -> &Kv {
        &self.kv
    }

    /// The key cache (authentication).
    pub fn keys(&self) -> &Arc<KeyCache> {
        &self.keys
    }

    /// The token cache.
    pub fn tokens(&self) -> &Arc<TokenCache> {
        &self.tokens
    }

    async fn get<T: DeserializeOwned>(&self, pk: &str) -> Result<Option<(T, u64)>, RegistryError> {
        match self.kv.get(pk).await? {
            Some(item) => Ok(Some((decode(&item)?, item.rev))),
            None => Ok(None),
        }
    }

    fn audit(&self, who: &Principal, action: &str, target: &str, account: Option<&AccountId>, fields: Vec<String>) -> (Write, AuditEntry) {
        let entry = AuditEntry { at: now_ms(), key_id: who.key_id.clone(), action: action.into(), target: target.into(), account_id: account.cloned(), fields };
        let sk = format!("{}#{:020}#{:016x}", at::scope(account), entry.at, rand::random::<u64>());
        (Write::Put(at::item(format!("audit#{sk}"), Some((at::AUDIT, sk)), &entry, 1), Cond::Absent), entry)
    }

    // ---- accounts ----

    /// `POST /v1/accounts`.
    pub async fn create_account(&self, who: &Principal, body: NewAccount) -> Result<Account, RegistryError> {
        require(who.access(Target::Host), Access::Write, NO_ACCOUNT, "create accounts (a host admin key may)")?;
        let name = check_name("name", &body.name)?;
        let id = match body.account_id.as_deref() {
            Some(id) => AccountId::parse(id).map_err(|e| RegistryError::field("account_id", e))?,
            None => AccountId::generate(),
        };
        let now = now_ms();
        let account =
            Account { account_id: id.clone(), name, created_at: now, updated_at: now, pixel_count: 0, webhook_url: None, webhook_secret: None, webhook_last_delivery: None };
        let (audit, _) = self.audit(who, "account.create", id.as_str(), Some(&id), vec!["name".into()]);
        let put = Write::Put(at::item(at::account(&id), Some((at::ACCOUNTS, id.to_string())), &account, 1), Cond::Absent);
        match self.kv.transact(vec![put, audit]).await {
            Ok(()) => Ok(account),
            Err(TxError::Conflict(0)) => Err(RegistryError::Conflict(format!("account_id: {id} already exists"))),
            Err(e) => Err(tx_error(e)),
        }
    }

    /// `GET /v1/accounts`: those the key may read.
    pub async fn list_accounts(&self, who: &Principal) -> Result<Vec<Account>, RegistryError> {
        let items = match (&who.account_id, who.role) {
            (Some(own), _) => self.kv.get(&at::account(own)).await?.into_iter().collect(),
            (None, Role::Admin) => self.kv.list(at::ACCOUNTS, "", false, LIST_PAGE).await?,
            (None, _) => {
                let mut items = Vec::new();
                for a in &who.accounts {
                    items.extend(self.kv.get(&at::account(a)).await?);
                }
                items
            }
        };
        let mut accounts: Vec<Account> = items.iter().map(decode).collect::<Result<_, _>>()?;
        accounts.retain(|a| who.access(Target::Account(&a.account_id)) >= Access::Read);
        accounts.sort_by(|a, b| a.account_id.cmp(&b.account_id));
        Ok(accounts)
    }

    async fn account(&self, who: &Principal, id: &str, need: Access, deletion: bool, what: &str) -> Result<(Account, u64), RegistryError> {
        let Ok(id) = AccountId::parse(id) else {
            return Err(RegistryError::NotFound(NO_ACCOUNT.into()));
        };
        let target = |a| if deletion { Target::AccountDeletion(a) } else { Target::Account(a) };
        if who.access(target(&id)) == Access::Hidden {
            return Err(RegistryError::NotFound(NO_ACCOUNT.into()));
        }
        let found = self.get::<Account>(&at::account(&id)).await?.ok_or_else(|| RegistryError::NotFound(NO_ACCOUNT.into()))?;
        require(who.access(target(&id)), need, NO_ACCOUNT, what)?;
        Ok(found)
    }

    /// `GET /v1/accounts/{id}`.
    pub async fn get_account(&self, who: &Principal, id: &str) -> Result<Account, RegistryError> {
        Ok(self.account(who, id, Access::Read, false, "read this account").await?.0)
    }

    /// `PATCH /v1/accounts/{id}`. A webhook URL is checked (`https`, a public target) before
    /// anything is written, and needs a secret, given now or before.
    pub async fn update_account(&self, who: &Principal, id: &str, patch: AccountPatch) -> Result<Account, RegistryError> {
        let name = patch.name.as_deref().map(|n| check_name("name", n)).transpose()?;
        // A URL is checked (its name resolved) only for a key that may change the account.
        if matches!(patch.webhook_url, Some(Some(_))) {
            self.account(who, id, Access::Write, false, "change this account").await?;
        }
        let url = match patch.webhook_url {
            Some(Some(u)) => Some(Some(check_url(&u, self.webhooks).await.map_err(|e| RegistryError::field("webhook_url", e))?.to_string())),
            other => other.map(|_| None),
        };
        let secret = match patch.webhook_secret {
            Some(Some(s)) => Some(Some(check_secret(&s).map_err(|e| RegistryError::field("webhook_secret", e))?)),
            other => other.map(|_| None),
        };
        for _ in 0..ATTEMPTS {
            let (mut account, rev) = self.account(who, id, Access::Write, false, "change this account").await?;
            let mut fields = Vec::new();
            if let Some(name) = &name {
                account.name = name.clone();
                fields.push("name".to_owned());
            }
            if let Some(url) = &url {
                if account.webhook_url != *url {
                    account.webhook_last_delivery = None;
                }
                account.webhook_url = url.clone();
                fields.push("webhook_url".to_owned());
            }
            if let Some(secret) = &secret {
                account.webhook_secret = secret.as_ref().map(|s| self.tokens.store().sealer().seal(&secret_place(&account.account_id), s));
                fields.push("webhook_secret".to_owned());
            }
            if account.webhook_url.is_some() && account.webhook_secret.is_none() {
                return Err(RegistryError::field("webhook_secret", "required while webhook_url is set: every delivery is signed with it"));
            }
            account.updated_at = now_ms();
            let (audit, _) = self.audit(who, "account.update", account.account_id.as_str(), Some(&account.account_id), fields);
            let put = Write::Put(at::item(at::account(&account.account_id), Some((at::ACCOUNTS, account.account_id.to_string())), &account, rev + 1), Cond::Rev(rev));
            match self.kv.transact(vec![put, audit]).await {
                Ok(()) => return Ok(account),
                Err(TxError::Conflict(_)) => continue,
                Err(e) => return Err(tx_error(e)),
            }
        }
        Err(tx_error(TxError::Conflict(0)))
    }

    /// The account's webhook and its secret, opened, if it has one (the notifier, per notice).
    pub async fn webhook(&self, account: &AccountId) -> Result<Option<WebhookTarget>, RegistryError> {
        let Some((a, _)) = self.get::<Account>(&at::account(account)).await? else { return Ok(None) };
        let (Some(url), Some(sealed)) = (a.webhook_url, a.webhook_secret) else { return Ok(None) };
        let secret = self.tokens.store().sealer().open(&secret_place(account), &sealed).map_err(|e| RegistryError::Unavailable(format!("{account}'s webhook_secret: {e}")))?;
        Ok(Some(WebhookTarget { url, secret }))
    }

    /// Keeps how a notice to the account's webhook at `url` went, for its settings to show,
    /// unless the URL changed meanwhile or a later delivery already ended. Not a change through
    /// the API: no audit entry, and `updated_at` stays.
    pub async fn record_webhook_delivery(&self, account: &AccountId, url: &str, delivery: WebhookDelivery) -> Result<(), RegistryError> {
        for _ in 0..ATTEMPTS {
            let Some((mut a, rev)) = self.get::<Account>(&at::account(account)).await? else { return Ok(()) };
            if a.webhook_url.as_deref() != Some(url) || a.webhook_last_delivery.as_ref().is_some_and(|last| last.at > delivery.at) {
                return Ok(());
            }
            a.webhook_last_delivery = Some(delivery.clone());
            let put = Write::Put(at::item(at::account(account), Some((at::ACCOUNTS, account.to_string())), &a, rev + 1), Cond::Rev(rev));
            match self.kv.transact(vec![put]).await {
                Ok(()) => return Ok(()),
                Err(TxError::Conflict(_)) => continue,
                Err(e) => return Err(tx_error(e)),
            }
        }
        Err(tx_error(TxError::Conflict(0)))
    }

    /// `DELETE /v1/accounts/{id}`: refused while it has pixels; its keys go with it.
    pub async fn delete_account(&self, who: &Principal, id: &str) -> Result<(), RegistryError> {
        for _ in 0..ATTEMPTS {
            let (account, rev) = self.account(who, id, Access::Write, true, "delete accounts (a host admin key may)").await?;
            if account.pixel_count > 0 {
                return Err(RegistryError::Conflict(format!(
                    "{} still has {} pixel(s); delete them first (GET /v1/pixels?account_id={})",
                    account.account_id, account.pixel_count, account.account_id
                )));
            }
            let keys = self.kv.list(at::KEYS, &format!("{}#", account.account_id), false, MAX_KEYS_DELETED + 1).await?;
            if keys.len() > MAX_KEYS_DELETED {
                return Err(RegistryError::Conflict(format!(
                    "{} has more than {MAX_KEYS_DELETED} keys; revoke them first (GET /v1/keys?account_id={})",
                    account.account_id, account.account_id
                )));
            }
            let mut writes = vec![Write::Delete(at::account(&account.account_id), Cond::Rev(rev))];
            let mut revoked = Vec::new();
            for item in &keys {
                let key: KeyRecord = decode(item)?;
                writes.push(Write::Delete(item.pk.clone(), Cond::Any));
                writes.push(Write::Delete(at::key_digest(&key.digest), Cond::Any));
                revoked.push(key.digest);
            }
            writes.push(self.audit(who, "account.delete", account.account_id.as_str(), Some(&account.account_id), vec![]).0);
            match self.kv.transact(writes).await {
                Ok(()) => {
                    for digest in revoked {
                        self.keys.forget(&digest).await;
                    }
                    return Ok(());
                }
                Err(TxError::Conflict(_)) => continue,
                Err(e) => return Err(tx_error(e)),
            }
        }
        Err(tx_error(TxError::Conflict(0)))
    }

    // ---- keys ----

    /// `POST /v1/keys`: the record and the key, shown this once.
    pub async fn create_key(&self, who: &Principal, body: NewKey) -> Result<(KeyRecord, Secret), RegistryError> {
        let account = body.account_id.as_deref().map(AccountId::parse).transpose().map_err(|e| RegistryError::field("account_id", e))?;
        let name = body.name.as_deref().map(|n| check_name("name", n)).transpose()?;
        let accounts: Vec<AccountId> = match (&body.accounts, &account, body.role) {
            (None, _, _) => vec![],
            (Some(_), Some(_), _) => return Err(RegistryError::field("accounts", "only a host key (no account_id) is assigned accounts; an account manager is assigned pixels")),
            (Some(_), None, Role::Admin) => return Err(RegistryError::field("accounts", "a host admin may do everything; assign accounts to a manager or viewer")),
            (Some(list), None, _) if list.len() > MAX_ASSIGNED => return Err(RegistryError::field("accounts", format_args!("at most {MAX_ASSIGNED}"))),
            (Some(list), None, _) => {
                list.iter().enumerate().map(|(i, a)| AccountId::parse(a).map_err(|e| RegistryError::field(&format!("accounts[{i}]"), e))).collect::<Result<_, _>>()?
            }
        };
        let pixels: Vec<String> = match (&body.pixels, &account, body.role) {
            (None, _, _) => vec![],
            (Some(_), Some(_), Role::Manager) => {
                let list = body.pixels.as_ref().expect("matched Some");
                if list.len() > MAX_ASSIGNED {
                    return Err(RegistryError::field("pixels", format_args!("at most {MAX_ASSIGNED}")));
                }
                list.iter().enumerate().map(|(i, p)| check_pixel(&format!("pixels[{i}]"), p).map(|p| p.to_string())).collect::<Result<_, _>>()?
            }
            (Some(_), _, _) => return Err(RegistryError::field("pixels", "only an account manager (role manager with account_id) is assigned pixels")),
        };
        require(who.access(Target::Keys(account.as_ref())), Access::Write, NO_ACCOUNT, "create keys here (an admin of this scope may)")?;
        // What the key is assigned must exist, and be the caller's to give.
        let mut checks = Vec::new();
        if let Some(a) = &account {
            let (_, rev) = self.get::<Account>(&at::account(a)).await?.ok_or_else(|| RegistryError::NotFound(NO_ACCOUNT.into()))?;
            checks.push(Write::Check(at::account(a), Cond::Rev(rev)));
            for (i, p) in pixels.iter().enumerate() {
                let owned = self.get::<PixelRecord>(&at::pixel(p)).await?.is_some_and(|(px, _)| &px.account_id == a);
                if !owned {
                    return Err(RegistryError::field(&format!("pixels[{i}]"), format_args!("pixel {p} is not registered to {a}")));
                }
            }
        }
        for (i, a) in accounts.iter().enumerate() {
            if self.kv.get(&at::account(a)).await?.is_none() {
                return Err(RegistryError::field(&format!("accounts[{i}]"), format_args!("{a}: {NO_ACCOUNT}")));
            }
        }
        let key = new_key();
        let record = KeyRecord {
            key_id: KeyId::generate(),
            name,
            role: body.role,
            account_id: account.clone(),
            accounts,
            pixels,
            created_at: now_ms(),
            last_used_at: None,
            digest: key_digest(key.expose()),
        };
        let sk = format!("{}#{}", at::scope(account.as_ref()), record.key_id);
        let mut writes = vec![
            Write::Put(at::item(at::key(&record.key_id), Some((at::KEYS, sk)), &record, 1), Cond::Absent),
            Write::Put(at::item(at::key_digest(&record.digest), None, &record, 1), Cond::Absent),
            self.audit(who, "key.create", record.key_id.as_str(), account.as_ref(), vec!["role".into()]).0,
        ];
        writes.extend(checks);
        self.kv.transact(writes).await.map_err(tx_error)?;
        Ok((record, key))
    }

    /// `GET /v1/keys`: the keys of a scope (`None`: the caller's own scope).
    pub async fn list_keys(&self, who: &Principal, account: Option<&str>) -> Result<Vec<KeyRecord>, RegistryError> {
        let account = match account {
            Some(a) => Some(AccountId::parse(a).map_err(|_| RegistryError::NotFound(NO_ACCOUNT.into()))?),
            None => who.account_id.clone(),
        };
        require(who.access(Target::Keys(account.as_ref())), Access::Read, NO_ACCOUNT, "list keys (an admin of this scope may)")?;
        let items = self.kv.list(at::KEYS, &format!("{}#", at::scope(account.as_ref())), false, LIST_PAGE).await?;
        let mut keys: Vec<KeyRecord> = items.iter().map(decode).collect::<Result<_, _>>()?;
        for k in &mut keys {
            if let Some(used) = self.keys.last_used(&k.key_id) {
                k.last_used_at = Some(k.last_used_at.map_or(used, |u| u.max(used)));
            }
        }
        Ok(keys)
    }

    /// `DELETE /v1/keys/{key_id}`: refused at once here, within the cache TTL elsewhere.
    pub async fn revoke_key(&self, who: &Principal, key_id: &str) -> Result<(), RegistryError> {
        let Ok(id) = KeyId::parse(key_id) else {
            return Err(RegistryError::NotFound(NO_KEY.into()));
        };
        let (key, rev) = self.get::<KeyRecord>(&at::key(&id)).await?.ok_or_else(|| RegistryError::NotFound(NO_KEY.into()))?;
        // A key may always revoke itself.
        if who.key_id != key.key_id {
            require(who.access(Target::Keys(key.account_id.as_ref())), Access::Write, NO_KEY, "revoke keys here (an admin of this scope may)")?;
        }
        let writes = vec![
            Write::Delete(at::key(&id), Cond::Rev(rev)),
            Write::Delete(at::key_digest(&key.digest), Cond::Any),
            self.audit(who, "key.revoke", id.as_str(), key.account_id.as_ref(), vec![]).0,
        ];
        self.kv.transact(writes).await.map_err(tx_error)?;
        self.keys.forget(&key.digest).await;
        Ok(())
    }

    // ---- pixels ----

    /// The pixel's record, if registered.
    async fn pixel_record(&self, pixel: &PixelId) -> Result<Option<(PixelRecord, u64)>, RegistryError> {
        self.get::<PixelRecord>(&at::pixel(pixel.as_str())).await
    }

    /// Checks that `who` may go as far as `need` with the pixel, registered or not; its record.
    pub async fn pixel_access(&self, who: &Principal, id: &str, need: Access) -> Result<(PixelId, Option<(PixelRecord, u64)>), RegistryError> {
        let pixel = check_pixel("pixel_id", id)?;
        let found = self.pixel_record(&pixel).await?;
        let access = match &found {
            Some((px, _)) => who.access(Target::Pixel(&px.account_id, pixel.as_str())),
            None => who.access(Target::UnownedPixel),
        };
        require(access, need, NO_PIXEL, "change this pixel")?;
        Ok((pixel, found))
    }

    /// `GET /v1/pixels/{id}`.
    pub async fn get_pixel(&self, who: &Principal, id: &str) -> Result<PixelView, RegistryError> {
        let (pixel, found) = self.pixel_access(who, id, Access::Read).await?;
        let (record, _) = found.ok_or_else(|| RegistryError::NotFound(NO_PIXEL.into()))?;
        self.view(&pixel, record).await
    }

    async fn view(&self, pixel: &PixelId, record: PixelRecord) -> Result<PixelView, RegistryError> {
        let meta = self.tokens.status(pixel).await?;
        Ok(PixelView { record, meta })
    }

    /// `PUT /v1/pixels/{id}`: registers the pixel to the body's account (`true`: created) or
    /// updates it there.
    pub async fn put_pixel(&self, who: &Principal, id: &str, account: Option<AccountId>, change: PixelChange) -> Result<(PixelView, bool), RegistryError> {
        let pixel = check_pixel("pixel_id", id)?;
        let account = account.ok_or_else(|| RegistryError::field("account_id", "required: the account the pixel is registered to"))?;
        // An account this key cannot see is answered before the pixel is looked at, so the answer
        // says nothing about where the pixel is registered.
        if who.access(Target::AccountPixels(&account)) == Access::Hidden {
            return Err(RegistryError::field("account_id", NO_ACCOUNT));
        }
        for _ in 0..ATTEMPTS {
            match self.pixel_record(&pixel).await? {
                Some((px, _)) if px.account_id != account => {
                    // Another account's, or moving it: either way not by PUT.
                    return Err(RegistryError::Conflict(format!("pixel {pixel} is registered to another account; it must be deleted there first")));
                }
                Some(_) => return Ok((self.patch_pixel_checked(who, &pixel, change).await?, false)),
                None => {}
            }
            let (mut acct, rev) = self.get::<Account>(&at::account(&account)).await?.ok_or_else(|| RegistryError::field("account_id", NO_ACCOUNT))?;
            require(who.access(Target::AccountPixels(&account)), Access::Write, NO_ACCOUNT, "add pixels to this account (its admins and host managers may)")?;
            let now = now_ms();
            let mut record = PixelRecord {
                pixel_id: pixel.to_string(),
                account_id: account.clone(),
                name: None,
                allowed_domains: vec![],
                test_event_code: None,
                forwarding: Forwarding::On,
                created_at: now,
                updated_at: now,
            };
            apply(&mut record, &change);
            acct.pixel_count += 1;
            acct.updated_at = now;
            let mut fields = change.fields();
            fields.insert(0, "account_id".into());
            let writes = vec![
                Write::Put(at::item(at::pixel(pixel.as_str()), Some((at::PIXELS, format!("{account}#{pixel}"))), &record, 1), Cond::Absent),
                Write::Put(at::item(at::account(&account), Some((at::ACCOUNTS, account.to_string())), &acct, rev + 1), Cond::Rev(rev)),
                self.audit(who, "pixel.create", &format!("pixel:{pixel}"), Some(&account), fields).0,
            ];
            match self.kv.transact(writes).await {
                Ok(()) => {}
                Err(TxError::Conflict(_)) => continue,
                Err(e) => return Err(tx_error(e)),
            }
            self.directory.changed(pixel, Some(&record)).await;
            if let Err(e) = self.write_token(&pixel, &change).await {
                // Undo the registration, so a failed request leaves nothing behind.
                let undo = vec![Write::Delete(at::pixel(pixel.as_str()), Cond::Rev(1))];
                if let Err(undo_err) = self.kv.transact(undo).await {
                    tracing::error!(pixel_id = %pixel, error = %undo_err, "could not undo a pixel registration whose token write failed");
                } else {
                    self.decrement_pixels(&account).await;
                    self.directory.changed(pixel, None).await;
                }
                return Err(e);
            }
            return Ok((self.view(&pixel, record).await?, true));
        }
        Err(tx_error(TxError::Conflict(0)))
    }

    async fn decrement_pixels(&self, account: &AccountId) {
        for _ in 0..ATTEMPTS {
            let Ok(Some((mut acct, rev))) = self.get::<Account>(&at::account(account)).await else { return };
            acct.pixel_count = acct.pixel_count.saturating_sub(1);
            let put = Write::Put(at::item(at::account(account), Some((at::ACCOUNTS, account.to_string())), &acct, rev + 1), Cond::Rev(rev));
            if self.kv.transact(vec![put]).await.is_ok() {
                return;
            }
        }
    }

    async fn write_token(&self, pixel: &PixelId, change: &PixelChange) -> Result<(), RegistryError> {
        match &change.meta_token {
            None => Ok(()),
            Some(Some(token)) => self.tokens.set(pixel, token.clone()).await.map(|_| ()).map_err(Into::into),
            Some(None) => self.tokens.delete(pixel).await.map(|_| ()).map_err(Into::into),
        }
    }

    /// `PATCH /v1/pixels/{id}`.
    pub async fn patch_pixel(&self, who: &Principal, id: &str, change: PixelChange) -> Result<PixelView, RegistryError> {
        let pixel = check_pixel("pixel_id", id)?;
        self.pixel_access(who, id, Access::Write).await?.1.ok_or_else(|| RegistryError::NotFound(NO_PIXEL.into()))?;
        self.patch_pixel_checked(who, &pixel, change).await
    }

    async fn patch_pixel_checked(&self, who: &Principal, pixel: &PixelId, change: PixelChange) -> Result<PixelView, RegistryError> {
        for _ in 0..ATTEMPTS {
            let (_, found) = self.pixel_access(who, pixel.as_str(), Access::Write).await?;
            let (before, rev) = found.ok_or_else(|| RegistryError::NotFound(NO_PIXEL.into()))?;
            let mut record = before.clone();
            apply(&mut record, &change);
            record.updated_at = now_ms();
            let sk = format!("{}#{pixel}", record.account_id);
            let (audit, entry) = self.audit(who, "pixel.update", &format!("pixel:{pixel}"), Some(&record.account_id), change.fields());
            let audit_pk = audit.pk().to_owned();
            let writes = vec![Write::Put(at::item(at::pixel(pixel.as_str()), Some((at::PIXELS, sk.clone())), &record, rev + 1), Cond::Rev(rev)), audit];
            match self.kv.transact(writes).await {
                Ok(()) => {}
                Err(TxError::Conflict(_)) => continue,
                Err(e) => return Err(tx_error(e)),
            }
            self.directory.changed(*pixel, Some(&record)).await;
            if let Err(e) = self.write_token(pixel, &change).await {
                // Put the settings back as they were, so a failed request leaves nothing half-written.
                let undo = vec![Write::Put(at::item(at::pixel(pixel.as_str()), Some((at::PIXELS, sk)), &before, rev + 2), Cond::Rev(rev + 1)), Write::Delete(audit_pk, Cond::Any)];
                match self.kv.transact(undo).await {
                    Ok(()) => self.directory.changed(*pixel, Some(&before)).await,
                    Err(undo_err) => tracing::error!(pixel_id = %pixel, error = %undo_err, action = %entry.action, "could not undo a settings change whose token write failed"),
                }
                return Err(e);
            }
            return self.view(pixel, record).await;
        }
        Err(tx_error(TxError::Conflict(0)))
    }

    /// `DELETE /v1/pixels/{id}`: unregisters it and removes its credentials.
    pub async fn delete_pixel(&self, who: &Principal, id: &str) -> Result<(), RegistryError> {
        for _ in 0..ATTEMPTS {
            let (pixel, found) = self.pixel_access(who, id, Access::Write).await?;
            let (record, rev) = found.ok_or_else(|| RegistryError::NotFound(NO_PIXEL.into()))?;
            require(who.access(Target::AccountPixels(&record.account_id)), Access::Write, NO_PIXEL, "remove pixels from this account (its admins and host managers may)")?;
            let (mut acct, acct_rev) = self.get::<Account>(&at::account(&record.account_id)).await?.ok_or_else(|| RegistryError::NotFound(NO_PIXEL.into()))?;
            acct.pixel_count = acct.pixel_count.saturating_sub(1);
            acct.updated_at = now_ms();
            let writes = vec![
                Write::Delete(at::pixel(pixel.as_str()), Cond::Rev(rev)),
                Write::Put(at::item(at::account(&acct.account_id), Some((at::ACCOUNTS, acct.account_id.to_string())), &acct, acct_rev + 1), Cond::Rev(acct_rev)),
                self.audit(who, "pixel.delete", &format!("pixel:{pixel}"), Some(&record.account_id), vec![]).0,
            ];
            match self.kv.transact(writes).await {
                Ok(()) => {}
                Err(TxError::Conflict(_)) => continue,
                Err(e) => return Err(tx_error(e)),
            }
            self.directory.changed(pixel, None).await;
            if let Err(e) = self.tokens.delete(&pixel).await {
                tracing::warn!(pixel_id = %pixel, error = %e, "pixel unregistered but its token could not be removed; it is now the host's to delete");
            }
            return Ok(());
        }
        Err(tx_error(TxError::Conflict(0)))
    }

    /// `GET /v1/pixels?account_id=`: the account's pixels this key may read.
    pub async fn list_pixels(&self, who: &Principal, account: Option<&str>) -> Result<Vec<PixelView>, RegistryError> {
        let account = match (account, &who.account_id) {
            (Some(a), _) => AccountId::parse(a).map_err(|_| RegistryError::NotFound(NO_ACCOUNT.into()))?,
            (None, Some(own)) => own.clone(),
            (None, None) => return Err(RegistryError::field("account_id", "name the account: GET /v1/pixels?account_id=acc_…")),
        };
        require(who.access(Target::AccountPixels(&account)), Access::Read, NO_ACCOUNT, "list this account's pixels")?;
        let items = self.kv.list(at::PIXELS, &format!("{account}#"), false, LIST_PAGE).await?;
        let mut out = Vec::with_capacity(items.len());
        for item in &items {
            let record: PixelRecord = decode(item)?;
            if who.access(Target::Pixel(&account, &record.pixel_id)) < Access::Read {
                continue;
            }
            let pixel = check_pixel("pixel_id", &record.pixel_id)?;
            out.push(self.view(&pixel, record).await?);
        }
        Ok(out)
    }

    // ---- tokens (Part I routes) and audit ----

    /// Records a change made outside a registry transaction (a token set or deleted through the
    /// Part I routes) in the audit log, before it is made.
    pub async fn audit_token_change(&self, who: &Principal, pixel: &PixelId, owner: Option<&AccountId>, action: &str) -> Result<String, RegistryError> {
        let (write, _) = self.audit(who, action, &format!("pixel:{pixel}"), owner, vec!["destinations.meta".into()]);
        let pk = write.pk().to_owned();
        self.kv.transact(vec![write]).await.map_err(tx_error)?;
        Ok(pk)
    }

    /// Takes back an audit entry whose change then failed.
    pub async fn retract_audit(&self, pk: String) {
        if let Err(e) = self.kv.transact(vec![Write::Delete(pk, Cond::Any)]).await {
            tracing::warn!(error = %e, "could not take back the audit entry of a failed change");
        }
    }

    /// `GET /v1/audit?account_id=`: newest first.
    pub async fn audit_log(&self, who: &Principal, account: Option<&str>) -> Result<Vec<AuditEntry>, RegistryError> {
        let account = match account {
            Some(a) => Some(AccountId::parse(a).map_err(|_| RegistryError::NotFound(NO_ACCOUNT.into()))?),
            None => who.account_id.clone(),
        };
        require(who.access(Target::Audit(account.as_ref())), Access::Read, NO_ACCOUNT, "read the audit log (admins of this scope may)")?;
        let items = self.kv.list(at::AUDIT, &format!("{}#", at::scope(account.as_ref())), true, AUDIT_PAGE).await?;
        items.iter().map(decode).collect()
    }
}

/// Applies a checked change to a record.
fn apply(record: &mut PixelRecord, change: &PixelChange) {
    if let Some(name) = &change.name {
        record.name = name.clone();
    }
    if let Some(domains) = &change.allowed_domains {
        record.allowed_domains = domains.clone();
    }
    if let Some(code) = &change.test_event_code {
        record.test_event_code = code.clone();
    }
    if let Some(f) = change.forwarding {
        record.forwarding = f;
    }
}
