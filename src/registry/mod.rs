//! Accounts, keys and pixels (`docs/accounts.md`): who may do what to which pixel, and each
//! registered pixel's settings.

pub mod kv;
