//! How registry values look in answers: times as RFC 3339, secrets only as `{"set":…}`.

use serde_json::{Value, json};

use crate::registry::{Account, AuditEntry, KeyRecord, PixelView};

/// Milliseconds since the epoch as RFC 3339 (UTC, milliseconds).
pub fn time(ms: i64) -> String {
    humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64)).to_string()
}

/// An account.
pub fn account(a: &Account) -> Value {
    let last = a.webhook_last_delivery.as_ref().map(|d| {
        json!({
            "delivery_id": d.delivery_id, "at": time(d.at), "outcome": d.outcome, "attempts": d.attempts, "status": d.status, "error": d.error, "pixel_id": d.pixel_id,
        })
    });
    json!({
        "account_id": a.account_id, "name": a.name, "created_at": time(a.created_at), "updated_at": time(a.updated_at), "pixels": a.pixel_count,
        "webhook_url": a.webhook_url, "webhook_secret": { "set": a.webhook_secret.is_some() }, "webhook_last_delivery": last,
    })
}

/// A key, without the key.
pub fn key(k: &KeyRecord) -> Value {
    json!({
        "key_id": k.key_id, "name": k.name, "role": k.role, "account_id": k.account_id, "accounts": k.accounts, "pixels": k.pixels,
        "created_at": time(k.created_at), "last_used_at": k.last_used_at.map(time),
    })
}

/// A pixel and what is set of its destinations.
pub fn pixel(p: &PixelView) -> Value {
    let r = &p.record;
    json!({
        "pixel_id": r.pixel_id, "account_id": r.account_id, "name": r.name, "allowed_domains": r.allowed_domains,
        "test_event_code": r.test_event_code, "forwarding": r.forwarding,
        "destinations": { "meta": { "set": p.meta.set, "status": p.meta.status, "updated_at": p.meta.updated_at } },
        "created_at": time(r.created_at), "updated_at": time(r.updated_at),
    })
}

/// An audit entry.
pub fn audit(e: &AuditEntry) -> Value {
    json!({ "at": time(e.at), "key_id": e.key_id, "action": e.action, "target": e.target, "account_id": e.account_id, "fields": e.fields })
}
