//! User agents of crawlers, monitors, previews and HTTP libraries: such hits are flagged `bot`.

use std::sync::LazyLock;

use aho_corasick::AhoCorasick;

/// User-agent fragments of crawlers, monitors, previews and HTTP libraries.
const BOT_MARKERS: &[&str] = &[
    "bot",
    "crawl",
    "spider",
    "slurp",
    "headless",
    "lighthouse",
    "facebookexternalhit",
    "preview",
    "monitor",
    "curl/",
    "wget/",
    "python-requests",
    "python-urllib",
    "aiohttp",
    "go-http-client",
    "java/",
    "okhttp",
    "axios/",
    "node-fetch",
    "libwww",
    "scrapy",
    "httpclient",
    "phantomjs",
];

static BOTS: LazyLock<AhoCorasick> = LazyLock::new(|| AhoCorasick::builder().ascii_case_insensitive(true).build(BOT_MARKERS).expect("static patterns build"));

/// A user agent and whether it is a bot's.
type Verdict = (Box<str>, bool);

/// Whether a user agent names a crawler or a script rather than a person's browser.
pub fn looks_like_bot(user_agent: &str) -> bool {
    // Traffic repeats a few user agents; remembering the last verdicts per thread skips the
    // automaton for them (a direct-mapped table: a collision just runs the automaton).
    const SLOTS: usize = 64;
    thread_local! {
        static RECENT: std::cell::RefCell<Vec<Option<Verdict>>> = std::cell::RefCell::new(vec![None; SLOTS]);
    }
    let b = user_agent.as_bytes();
    let slot = b.len().wrapping_mul(31).wrapping_add(b.last().map_or(0, |&c| c as usize)).wrapping_add(b.get(b.len() / 2).map_or(0, |&c| c as usize * 7)) % SLOTS;
    RECENT.with_borrow_mut(|recent| match &recent[slot] {
        Some((ua, verdict)) if **ua == *user_agent => *verdict,
        _ => {
            let verdict = BOTS.is_match(user_agent);
            if user_agent.len() <= 512 {
                recent[slot] = Some((user_agent.into(), verdict));
            }
            verdict
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bots_are_recognised_case_insensitively() {
        assert!(looks_like_bot("Mozilla/5.0 (compatible; Googlebot/2.1)"));
        assert!(looks_like_bot("curl/8.5.0"));
        assert!(!looks_like_bot("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36"));
    }
}
