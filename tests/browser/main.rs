//! The pixel in a real browser: Debian's headless Chromium loads pages from two origins that
//! `fetch()` the real `pixelgate` binary, so CORS (`docs/parameters.md`) and a pixel's allowed
//! domains (`docs/accounts.md#allowed-domains-and-cors`) are checked by the browser that enforces
//! them, not by a client that only reads headers.
//!
//! The browser is `$PIXELGATE_CHROMIUM` (scripts/test installs Debian's `chromium` and sets it),
//! else `chromium` on PATH. Without one the tests fail, naming what they tried: they never skip.

#[path = "../common/mod.rs"]
pub mod common;

mod chromium;
mod pages;

mod cors;
