//! `pixelgate tokens set|status|delete` on the embedded store.

use crate::common::process::pixelgate;

const TOKEN: &str = "EAABsbCS1iHgBAKZCtokenforcli";

#[test]
fn set_from_stdin_then_status_and_delete_never_print_the_token() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_str().unwrap();
    let set = pixelgate(&["tokens", "set", "1234567890", "--data-dir", dir], &format!("{TOKEN}\n"), &[]);
    set.assert_hides(TOKEN);
    let v = set.json();
    assert_eq!((&v["pixel_id"], &v["set"], &v["status"]), (&"1234567890".into(), &true.into(), &"active".into()), "{v}");
    assert!(v["updated_at"].as_str().unwrap().ends_with('Z'), "{v}");

    let status = pixelgate(&["tokens", "status", "1234567890", "--data-dir", dir], "", &[]);
    status.assert_hides(TOKEN);
    assert_eq!(status.json(), v, "status shows what set stored");
    let keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
    assert_eq!(keys.len(), 4, "exactly the four fields: {keys:?}");

    // Neither the file nor anything the commands print holds the token: it is sealed under the
    // key file created on first use (owner-only).
    let db = std::fs::read(data.path().join("tokens.sqlite3")).unwrap();
    let wal = std::fs::read(data.path().join("tokens.sqlite3-wal")).unwrap_or_default();
    assert!(![&db, &wal].iter().any(|b| b.windows(TOKEN.len()).any(|w| w == TOKEN.as_bytes())), "the token is in the store in plaintext");
    assert!([db, wal].iter().any(|b| b.windows(5).any(|w| w == b"pgs1:")), "a sealed token is in the store");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(data.path().join("secrets.key")).unwrap().permissions().mode() & 0o777, 0o600);

    let delete = pixelgate(&["tokens", "delete", "1234567890", "--data-dir", dir], "", &[]);
    let gone = serde_json::json!({ "pixel_id": "1234567890", "set": false, "status": null, "updated_at": null });
    assert_eq!(delete.json(), gone);
    assert_eq!(pixelgate(&["tokens", "status", "1234567890", "--data-dir", dir], "", &[]).json(), gone);
    assert_eq!(pixelgate(&["tokens", "delete", "1234567890", "--data-dir", dir], "", &[]).json(), gone, "deleting nothing is fine");
}

#[test]
fn usage_errors_are_one_line_naming_what_to_fix() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_str().unwrap();
    for bad in ["12ab", "", "123456789012345678901234567890123"] {
        let run = pixelgate(&["tokens", "status", bad, "--data-dir", dir], "", &[]);
        assert!(run.one_line_error(2).contains("1-32 digits"), "{}", run.stderr);
    }
    let run = pixelgate(&["tokens", "set", "1", "--data-dir", dir], "\n", &[]);
    assert!(run.one_line_error(2).contains("no token on standard input"), "{}", run.stderr);
    let run = pixelgate(&["tokens", "set", "1", "--data-dir", dir], "two words\n", &[]);
    run.one_line_error(2);
    run.assert_hides("two words");

    let run = pixelgate(&["tokens", "status", "1", "--tokens", "dynamodb"], "", &[]);
    assert!(run.one_line_error(2).contains("--dynamodb-table [PIXELGATE_DYNAMODB_TABLE]"), "{}", run.stderr);
    let run = pixelgate(&["tokens", "status", "1"], "", &[("PIXELGATE_TOKENS", "dynamodb".into())]);
    assert!(run.one_line_error(2).contains("--dynamodb-table [PIXELGATE_DYNAMODB_TABLE]"), "{}", run.stderr);
    let run = pixelgate(&["tokens", "create-table"], "", &[]);
    assert!(run.one_line_error(2).contains("--dynamodb-table [PIXELGATE_DYNAMODB_TABLE]"), "{}", run.stderr);
}

#[test]
fn an_unusable_data_dir_is_one_line_naming_the_flag() {
    let file = tempfile::NamedTempFile::new().unwrap();
    let run = pixelgate(&["tokens", "status", "1", "--data-dir", file.path().to_str().unwrap()], "", &[]);
    assert!(run.one_line_error(1).contains("--data-dir [PIXELGATE_DATA_DIR]"), "{}", run.stderr);
}
