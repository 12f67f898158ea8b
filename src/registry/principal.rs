//! Who is asking, and what they may do: the one place that decides (`docs/accounts.md#roles`).
//!
//! A verified key becomes a [`Principal`]; every registry call takes one and asks
//! [`Principal::access`] about its target. The answer is a level: [`Access::Hidden`] (answer as if
//! the thing did not exist: `404`), [`Access::Known`] (it exists for this key, which may neither
//! read nor change it: `403`), [`Access::Read`] (a change is `403`), [`Access::Write`].

use super::ids::{AccountId, KeyId};
use super::model::{KeyRecord, Role};

/// A verified caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The key's id, for the audit log.
    pub key_id: KeyId,
    /// Its role.
    pub role: Role,
    /// Its account; `None` = host.
    pub account_id: Option<AccountId>,
    /// A host manager's or viewer's accounts.
    pub accounts: Vec<AccountId>,
    /// An account manager's pixels.
    pub pixels: Vec<String>,
}

/// How far a principal may go with a target; ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Access {
    /// Not there for this key: `404`, the same answer as for what does not exist.
    Hidden,
    /// There, but neither readable nor changeable: `403`.
    Known,
    /// Readable: a change is `403`.
    Read,
    /// Readable and changeable.
    Write,
}

/// What a request is about.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    /// The host: creating accounts, host settings.
    Host,
    /// An account's record and settings.
    Account(&'a AccountId),
    /// Deleting an account.
    AccountDeletion(&'a AccountId),
    /// Registering pixels to an account (and listing them).
    AccountPixels(&'a AccountId),
    /// A pixel registered to an account.
    Pixel(&'a AccountId, &'a str),
    /// A pixel registered to no account (a Part I token): the host's.
    UnownedPixel,
    /// The keys of a scope (`None` = host keys).
    Keys(Option<&'a AccountId>),
    /// The audit log of a scope (`None` = the host's own).
    Audit(Option<&'a AccountId>),
}

impl Principal {
    /// The bootstrap host administrator (`--admin-key`).
    pub fn bootstrap() -> Principal {
        Principal { key_id: KeyId::bootstrap(), role: Role::Admin, account_id: None, accounts: vec![], pixels: vec![] }
    }

    /// The CLI: a host administrator, audited as `key_cli`.
    pub fn cli() -> Principal {
        Principal { key_id: KeyId::cli(), ..Principal::bootstrap() }
    }

    /// The principal a stored key stands for.
    pub fn of(key: &KeyRecord) -> Principal {
        Principal { key_id: key.key_id.clone(), role: key.role, account_id: key.account_id.clone(), accounts: key.accounts.clone(), pixels: key.pixels.clone() }
    }

    /// Whether this is a host key.
    pub fn is_host(&self) -> bool {
        self.account_id.is_none()
    }

    /// How far this principal may go with `target`.
    pub fn access(&self, target: Target<'_>) -> Access {
        use Access::*;
        use Role::*;
        match &self.account_id {
            None => {
                let assigned = |a: &AccountId| self.role == Admin || self.accounts.contains(a);
                match (self.role, target) {
                    (Admin, _) => Write,
                    (_, Target::Host) => Read,
                    (_, Target::UnownedPixel) => Hidden,
                    (role, Target::Account(a) | Target::AccountPixels(a) | Target::Pixel(a, _)) if assigned(a) => {
                        if role == Manager {
                            Write
                        } else {
                            Read
                        }
                    }
                    (_, Target::AccountDeletion(a)) if assigned(a) => Read,
                    (_, Target::Keys(Some(a)) | Target::Audit(Some(a))) if assigned(a) => Known,
                    (_, Target::Keys(None) | Target::Audit(None)) => Known,
                    _ => Hidden,
                }
            }
            Some(own) => {
                let mine = |a: &AccountId| a == own;
                match (self.role, target) {
                    (_, Target::Host | Target::Keys(None) | Target::Audit(None)) => Known,
                    (_, Target::UnownedPixel) => Hidden,
                    (Admin, Target::Account(a) | Target::AccountPixels(a) | Target::Pixel(a, _) | Target::Keys(Some(a))) if mine(a) => Write,
                    (Admin, Target::Audit(Some(a))) if mine(a) => Read,
                    (Manager, Target::Pixel(a, p)) if mine(a) => {
                        if self.pixels.iter().any(|x| x == p) {
                            Write
                        } else {
                            Hidden
                        }
                    }
                    (Viewer, Target::Pixel(a, _)) if mine(a) => Read,
                    (_, Target::Account(a) | Target::AccountPixels(a) | Target::AccountDeletion(a)) if mine(a) => Read,
                    (_, Target::Keys(Some(a)) | Target::Audit(Some(a))) if mine(a) => Known,
                    _ => Hidden,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(role: Role, account: Option<&str>, accounts: &[&str], pixels: &[&str]) -> Principal {
        Principal {
            key_id: KeyId::generate(),
            role,
            account_id: account.map(|a| AccountId::parse(a).unwrap()),
            accounts: accounts.iter().map(|a| AccountId::parse(a).unwrap()).collect(),
            pixels: pixels.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn the_role_table_of_the_spec() {
        use Access::*;
        let (a, b) = (AccountId::parse("acc_a").unwrap(), AccountId::parse("acc_b").unwrap());
        let targets = |t: &str| -> Target<'_> {
            match t {
                "host" => Target::Host,
                "acc" => Target::Account(&a),
                "acc_del" => Target::AccountDeletion(&a),
                "acc_px" => Target::AccountPixels(&a),
                "px1" => Target::Pixel(&a, "1"),
                "px2" => Target::Pixel(&a, "2"),
                "unowned" => Target::UnownedPixel,
                "keys" => Target::Keys(Some(&a)),
                "host_keys" => Target::Keys(None),
                "audit" => Target::Audit(Some(&a)),
                "other" => Target::Account(&b),
                "other_px" => Target::Pixel(&b, "9"),
                "other_keys" => Target::Keys(Some(&b)),
                _ => unreachable!(),
            }
        };
        let cols = ["host", "acc", "acc_del", "acc_px", "px1", "px2", "unowned", "keys", "host_keys", "audit", "other", "other_px", "other_keys"];
        let rows: Vec<(Principal, [Access; 13])> = vec![
            (p(Role::Admin, None, &[], &[]), [Write; 13]),
            (p(Role::Manager, None, &["acc_a"], &[]), [Read, Write, Read, Write, Write, Write, Hidden, Known, Known, Known, Hidden, Hidden, Hidden]),
            (p(Role::Viewer, None, &["acc_a"], &[]), [Read, Read, Read, Read, Read, Read, Hidden, Known, Known, Known, Hidden, Hidden, Hidden]),
            (p(Role::Admin, Some("acc_a"), &[], &[]), [Known, Write, Read, Write, Write, Write, Hidden, Write, Known, Read, Hidden, Hidden, Hidden]),
            (p(Role::Manager, Some("acc_a"), &[], &["1"]), [Known, Read, Read, Read, Write, Hidden, Hidden, Known, Known, Known, Hidden, Hidden, Hidden]),
            (p(Role::Viewer, Some("acc_a"), &[], &[]), [Known, Read, Read, Read, Read, Read, Hidden, Known, Known, Known, Hidden, Hidden, Hidden]),
        ];
        for (who, want) in rows {
            for (col, want) in cols.iter().zip(want) {
                assert_eq!(who.access(targets(col)), want, "{:?} {:?} on {col}", who.role, who.account_id);
            }
        }
    }
}
