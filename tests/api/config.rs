//! Flags, env vars and one-line start-up errors (`docs/configuration.md`), through the real
//! binary.

use crate::common::net::free_port;
use crate::common::process::{Launch, pixelgate};

fn run(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let env: Vec<(&str, String)> = env.iter().map(|&(k, v)| (k, v.to_owned())).collect();
    let run = pixelgate(args, "", &env);
    (run.code, run.stdout, run.stderr)
}

fn assert_one_line_error(args: &[&str], env: &[(&str, &str)], must_contain: &[&str]) {
    let (code, _, err) = run(args, env);
    assert_eq!(code, 2, "{args:?}: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
    for m in must_contain {
        assert!(err.contains(m), "{args:?}: {err:?} lacks {m}");
    }
}

#[test]
fn bad_settings_stop_start_up_with_one_line_naming_flag_and_env() {
    assert_one_line_error(&["--listen", "nowhere"], &[], &["--listen", "PIXELGATE_LISTEN"]);
    assert_one_line_error(&[], &[("PIXELGATE_TRUSTED_PROXIES", "many")], &["--trusted-proxies", "PIXELGATE_TRUSTED_PROXIES"]);
    assert_one_line_error(&["serve", "--max-connections", "0"], &[], &["--max-connections", "PIXELGATE_MAX_CONNECTIONS"]);
    assert_one_line_error(&["--sink", "kafka"], &[], &["--sink", "PIXELGATE_SINK"]);
    assert_one_line_error(&["--sink", "firehose"], &[], &["--firehose-stream", "PIXELGATE_FIREHOSE_STREAM"]);
    assert_one_line_error(&["--tokens", "dynamodb"], &[], &["--dynamodb-table", "PIXELGATE_DYNAMODB_TABLE"]);
    assert_one_line_error(&["--log-level", "loud=="], &[], &["--log-level", "PIXELGATE_LOG_LEVEL"]);
    assert_one_line_error(&["--graph-url", "ftp://x"], &[], &["--graph-url", "PIXELGATE_GRAPH_URL"]);
    assert_one_line_error(&["--bogus"], &[], &["--bogus"]);
    let same = format!("127.0.0.1:{}", free_port());
    assert_one_line_error(&["--listen", &same, "--metrics-listen", &same], &[], &["--metrics-listen", "PIXELGATE_METRICS_LISTEN"]);
}

#[test]
fn an_address_in_use_is_reported_with_its_flag() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = run(&["--listen", &addr, "--metrics-listen", "127.0.0.1:0", "--data-dir", dir.path().to_str().unwrap()], &[]);
    assert_eq!(code, 1, "{err}");
    let last = err.trim_end().lines().last().unwrap();
    assert!(last.contains(&addr) && last.contains("--listen") && last.contains("PIXELGATE_LISTEN"), "{err}");
}

#[test]
fn help_lists_every_flag_with_its_env_var_and_default() {
    let (code, out, _) = run(&["--help"], &[]);
    assert_eq!(code, 0);
    for (flag, env, default) in [
        ("--listen", "PIXELGATE_LISTEN", Some("127.0.0.1:8080")),
        ("--metrics-listen", "PIXELGATE_METRICS_LISTEN", Some("127.0.0.1:9464")),
        ("--data-dir", "PIXELGATE_DATA_DIR", Some("./data")),
        ("--sink", "PIXELGATE_SINK", Some("file")),
        ("--firehose-stream", "PIXELGATE_FIREHOSE_STREAM", None),
        ("--tokens", "PIXELGATE_TOKENS", Some("local")),
        ("--dynamodb-table", "PIXELGATE_DYNAMODB_TABLE", None),
        ("--graph-url", "PIXELGATE_GRAPH_URL", Some("https://graph.facebook.com")),
        ("--graph-version", "PIXELGATE_GRAPH_VERSION", Some("v26.0")),
        ("--trusted-proxies", "PIXELGATE_TRUSTED_PROXIES", Some("0")),
        ("--admin-key", "PIXELGATE_ADMIN_KEY", None),
        ("--log-format", "PIXELGATE_LOG_FORMAT", Some("text")),
    ] {
        let block = out.split("\n      --").find(|b| b.starts_with(&format!("{} ", &flag[2..]))).unwrap_or_else(|| panic!("{flag} missing:\n{out}"));
        assert!(block.contains(&format!("[env: {env}")), "{flag}: {block}");
        if let Some(d) = default {
            assert!(block.contains(&format!("[default: {d}]")), "{flag}: {block}");
        }
    }
    let (code, out, _) = run(&["serve", "--help"], &[]);
    assert_eq!(code, 0);
    assert!(out.contains("PIXELGATE_HEADER_READ_TIMEOUT") && out.contains("PIXELGATE_LISTEN"), "{out}");
}

/// Starts the binary (`--listen` only as `args` or `env` say) and returns the address it serves
/// on, from its log.
fn serving_address(args: &[&str], env: &[(&str, &str)]) -> std::net::SocketAddr {
    Launch::new().args(args).envs(env.iter().copied()).serve().addr
}

#[test]
fn a_flag_beats_its_env_var_which_beats_the_default() {
    // The default port is 8080; an env var asking for any free port must be obeyed.
    let from_env = serving_address(&[], &[("PIXELGATE_LISTEN", "127.0.0.1:0")]);
    assert_ne!(from_env.port(), 8080);
    // The env var names a taken port; the flag must win or start-up would fail.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let from_flag = serving_address(&["--listen", "127.0.0.1:0"], &[("PIXELGATE_LISTEN", &taken.local_addr().unwrap().to_string())]);
    assert_ne!(from_flag, taken.local_addr().unwrap());
}

#[test]
fn the_bare_command_is_the_server_and_takes_its_flags() {
    assert_one_line_error(&[], &[("PIXELGATE_MAX_CONNECTIONS", "0")], &["--max-connections", "PIXELGATE_MAX_CONNECTIONS"]);
    assert_one_line_error(&["--header-read-timeout", "soon"], &[], &["--header-read-timeout", "PIXELGATE_HEADER_READ_TIMEOUT"]);
    let addr = serving_address(&["--listen", "127.0.0.1:0", "--max-connections", "5"], &[]);
    assert_ne!(addr.port(), 0);
}
