//! The user agents tests send.

/// A desktop Chrome: hits with it are not flagged `bot`, and the Conversions API gets it as
/// `client_user_agent`.
pub const BROWSER_UA: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 Safari/537.36";

/// A desktop Firefox, where a second, different browser is wanted.
pub const FIREFOX_UA: &str = "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0";

/// A command-line client: hits with it are flagged `bot`.
pub const BOT_UA: &str = "curl/8.5.0";
