//! The raw records the file sink writes under `<data>/raw`: NDJSON files, `*.ndjson` once closed
//! and `*.ndjson.open` while written. Two readers, for two moments:
//! - [`read_records`] once the writer has flushed or stopped: every line of every file, and a file
//!   that ends mid-line is a failure;
//! - [`read_records_so_far`] while a server may still be writing: the complete lines only, as the
//!   file being written may end mid-batch.

use std::path::{Path, PathBuf};

use serde_json::Value;

/// Every file below `dir` (none if it does not exist).
pub fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// The raw files with records, closed and open, in name (so time) order.
fn record_files(data: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = files_below(&data.join("raw"))
        .into_iter()
        .filter(|p| {
            let name = p.to_string_lossy();
            name.ends_with(".ndjson") || name.ends_with(".ndjson.open")
        })
        .collect();
    files.sort();
    files
}

fn parse(file: &Path, lines: &str) -> Vec<Value> {
    lines.lines().map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("bad JSON line in {}: {e}: {line}", file.display()))).collect()
}

/// Every record under `<data>/raw`, in file order, for a writer that has flushed or stopped:
/// panics if a file ends mid-line or a line is not JSON.
pub fn read_records(data: &Path) -> Vec<Value> {
    let mut out = Vec::new();
    for f in record_files(data) {
        let text = std::fs::read_to_string(&f).unwrap();
        assert!(text.is_empty() || text.ends_with('\n'), "{} ends mid-line", f.display());
        out.extend(parse(&f, &text));
    }
    out
}

/// Every complete record line under `<data>/raw` so far, in file order, for a writer that may be
/// writing: a file's last line counts once its newline is there.
pub fn read_records_so_far(data: &Path) -> Vec<Value> {
    let mut out = Vec::new();
    for f in record_files(data) {
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        let complete = text.rfind('\n').map_or("", |end| &text[..end]);
        out.extend(parse(&f, complete));
    }
    out
}
