//! Headless Chromium from the command line: load a page, let its scripts run, and read back the
//! DOM they left (`--dump-dom`). No DevTools protocol, no driver: one process per page, on a
//! fresh profile, killed (with everything it started) if it overruns.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::user_agents::BROWSER_UA;

/// How long one page load may take on the wall clock, whatever its virtual-time budget.
const WALL_TIMEOUT: Duration = Duration::from_secs(25);

/// A Chromium that runs.
pub struct Chromium {
    bin: PathBuf,
    /// What `--version` printed, e.g. `Chromium 156.0.8078.114 built on Debian GNU/Linux 12`.
    pub version: String,
}

impl Chromium {
    /// `$PIXELGATE_CHROMIUM` if set, else `chromium` on PATH, once `--version` ran; panics,
    /// saying what was tried and how to get one, if it does not run. A test that needs a browser
    /// fails without one: it never skips.
    pub fn find() -> Chromium {
        let (bin, source) = match std::env::var_os("PIXELGATE_CHROMIUM") {
            Some(bin) if !bin.is_empty() => (PathBuf::from(bin), "$PIXELGATE_CHROMIUM"),
            _ => (PathBuf::from("chromium"), "`chromium` on PATH ($PIXELGATE_CHROMIUM is not set)"),
        };
        let help = "the browser tests need Debian's chromium: run them through scripts/test (which installs it and sets \
                    PIXELGATE_CHROMIUM), or `apt-get install chromium`, or point PIXELGATE_CHROMIUM at a Chromium binary";
        let out =
            Command::new(&bin).arg("--version").stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("NO CHROMIUM: {source} = {} does not run: {e}; {help}", bin.display()));
        let version = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        assert!(
            out.status.success() && version.contains("Chrom"),
            "NO CHROMIUM: `{} --version` ({source}) exited {} printing {version:?}, stderr {:?}; {help}",
            bin.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Chromium { bin, version }
    }

    /// Loads `url` in a new headless browser on a fresh profile and returns the DOM as its
    /// scripts left it once `budget` of virtual time has passed (virtual time stands still while
    /// a fetch is in flight, so a slow answer still lands in the DOM). Blocking: call it from
    /// `spawn_blocking` in an async test.
    pub fn dump_dom(&self, url: &str, budget: Duration) -> Dump {
        let dir = tempfile::tempdir().expect("temp dir");
        let (stdout, stderr) = (dir.path().join("dom.html"), dir.path().join("chromium.log"));
        let mut cmd = Command::new(&self.bin);
        cmd.args([
            // The new headless mode (the old one is a separate binary, chrome-headless-shell, that
            // Debian does not ship); `--dump-dom` and `--virtual-time-budget` work in it.
            "--headless",
            // Tests run as root in containers, where Chromium's sandbox cannot start.
            "--no-sandbox",
            "--disable-gpu",
            // Loopback must never go through a proxy from the environment.
            "--no-proxy-server",
            // Nothing but the page under test on the network, and a faster start.
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            // A desktop Chrome's user agent instead of `HeadlessChrome/…`, which pixelgate rightly
            // flags `bot`: the page's hits should look like a visitor's, and bot policy is not
            // what these tests are about.
            &format!("--user-agent={BROWSER_UA}"),
            // The console on standard error: a CORS refusal is a bare `TypeError` to the page, and
            // only the console says why (see [`Dump::console`]).
            "--enable-logging=stderr",
            "--dump-dom",
            &format!("--virtual-time-budget={}", budget.as_millis()),
        ]);
        cmd.arg(format!("--user-data-dir={}", dir.path().join("profile").display())).arg(url);
        // HOME too, so that nothing lands in the real one (~/.pki, crash reports, fontconfig).
        cmd.env("HOME", dir.path()).stdin(Stdio::null());
        cmd.stdout(std::fs::File::create(&stdout).unwrap()).stderr(std::fs::File::create(&stderr).unwrap());
        // Its own process group: the browser, its zygote and renderers go together.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let started = Instant::now();
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("{} does not start: {e}", self.bin.display()));
        let group = child.id() as libc::pid_t;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if started.elapsed() > WALL_TIMEOUT {
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        // Whatever of the group is left: all of it on a timeout, stray helpers otherwise.
        // SAFETY: kill(2) with a negative pid signals the process group this function created
        // (its leader is our child); it touches no memory.
        unsafe { libc::kill(-group, libc::SIGKILL) };
        let _ = child.wait();
        let dump = Dump {
            url: url.to_owned(),
            dom: std::fs::read_to_string(&stdout).unwrap_or_default(),
            log: std::fs::read_to_string(&stderr).unwrap_or_default(),
            took: started.elapsed(),
        };
        match status {
            None => panic!("chromium did not finish {url} within {WALL_TIMEOUT:?}\n{dump}"),
            Some(s) if !s.success() => panic!("chromium exited {s} on {url}\n{dump}"),
            Some(_) => dump,
        }
    }
}

/// What one page load left.
pub struct Dump {
    pub url: String,
    /// The serialised DOM (`--dump-dom`).
    pub dom: String,
    /// Chromium's standard error.
    pub log: String,
    pub took: Duration,
}

impl Dump {
    /// The JSON text of the element `<TAG id="ID">`: what a page's script wrote there with
    /// `textContent` (HTML-escaped by the serialiser, unescaped here). Panics, showing the DOM and
    /// the browser's log, if the element is missing or does not hold JSON (e.g. the script did
    /// not finish).
    pub fn json_in(&self, tag: &str, id: &str) -> Value {
        let open = format!("<{tag} id=\"{id}\">");
        let text = self.dom.split_once(&open).and_then(|(_, rest)| rest.split_once(&format!("</{tag}>"))).map(|(text, _)| text);
        let text = text.unwrap_or_else(|| panic!("no {open} in the DOM of {}\n{self}", self.url));
        let text = text.replace("&lt;", "<").replace("&gt;", ">").replace("&nbsp;", "\u{a0}").replace("&amp;", "&");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{open} of {} holds no JSON ({e}): {text:?}\n{self}", self.url))
    }

    /// The page's console messages (`--enable-logging=stderr` prints them as `…:CONSOLE:…] "…"`),
    /// e.g. Chromium's reason for refusing a fetch: `Access to fetch at '…' from origin '…' has
    /// been blocked by CORS policy: …`.
    pub fn console(&self) -> Vec<&str> {
        self.log.lines().filter_map(|l| l.split_once(":CONSOLE:").map(|(_, m)| m.split_once("] ").map_or(m, |(_, m)| m))).collect()
    }
}

impl std::fmt::Display for Dump {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The last lines of the log: D-Bus complaints come first and say nothing.
        let log: Vec<&str> = self.log.lines().collect();
        let tail = log[log.len().saturating_sub(40)..].join("\n");
        write!(f, "--- DOM of {} after {:?} ---\n{}\n--- chromium's stderr (last 40 lines) ---\n{tail}", self.url, self.took, self.dom)
    }
}
