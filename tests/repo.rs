//! The repository keeps its shape: `src/`'s top-level modules stay in the layers
//! `docs/architecture.md#module-map` lists (so no import cycle can creep in), and every link into
//! `docs/` resolves while nothing points at files outside the repository.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// `src/`'s top-level modules, bottom layer first. A module may use the modules of the layers
/// before its own, and those of its own layer only if they are listed before it.
const LAYERS: &[&[&str]] = &[
    &["error", "metrics", "telemetry", "batch", "retry", "secret", "seal", "clock", "pace", "simd", "pii", "address"],
    &["record"],
    &["params", "tokens", "registry", "notify"],
    &["pipeline"],
    &["sink", "forward"],
    &["api", "edge"],
    &["runtime"],
    &["app"],
    &["config"],
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every file below `dir` whose name ends in one of `suffixes`.
fn files(dir: &Path, suffixes: &[&str]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if suffixes.iter().any(|s| path.to_string_lossy().ends_with(s)) {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The top-level module a file of `src/` belongs to (`None` for the crate roots).
fn module_of(rel: &Path) -> Option<String> {
    let mut parts = rel.components().map(|c| c.as_os_str().to_string_lossy().into_owned());
    let first = parts.next()?;
    match first.strip_suffix(".rs") {
        Some("lib" | "main") => None,
        Some(name) => Some(name.to_owned()),
        None => Some(first),
    }
}

/// A file's text up to its inline test module, if any: what the module uses when built.
fn built_text(text: &str) -> &str {
    let cut = ["#[cfg(test)]\nmod tests {", "#[cfg(test)]\npub mod tests {"].iter().filter_map(|m| text.find(m)).min();
    &text[..cut.unwrap_or(text.len())]
}

/// The `crate::<module>` names a text uses (paths, `use crate::{a, b}` groups), with line numbers.
fn used_modules(text: &str) -> Vec<(String, usize)> {
    let mut used = Vec::new();
    let line_of = |at: usize| text[..at].matches('\n').count() + 1;
    let ident = |s: &str| s.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect::<String>();
    for (at, _) in text.match_indices("crate::") {
        let preceded = text[..at].chars().next_back().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        if preceded {
            continue;
        }
        let rest = &text[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            for item in group.split(',') {
                let name = ident(item.trim());
                if !name.is_empty() && name != "self" {
                    used.push((name, line_of(at)));
                }
            }
        } else {
            let name = ident(rest);
            if !name.is_empty() {
                used.push((name, line_of(at)));
            }
        }
    }
    used
}

#[test]
fn modules_use_only_the_layers_below_them() {
    let rank: BTreeMap<&str, (usize, usize)> = LAYERS.iter().enumerate().flat_map(|(layer, mods)| mods.iter().enumerate().map(move |(i, m)| (*m, (layer, i)))).collect();
    let src = root().join("src");
    let mut wrong = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for path in files(&src, &[".rs"]) {
        let rel = path.strip_prefix(&src).unwrap();
        // Test modules in files of their own may use anything.
        if rel.file_name().is_some_and(|n| n == "tests.rs") || rel.components().any(|c| c.as_os_str() == "tests") {
            continue;
        }
        let Some(me) = module_of(rel) else { continue };
        seen.insert(me.clone());
        let Some(&my_rank) = rank.get(me.as_str()) else {
            wrong.push(format!("src/{}: module `{me}` is in no layer; add it to LAYERS and to docs/architecture.md", rel.display()));
            continue;
        };
        let text = std::fs::read_to_string(&path).unwrap();
        for (used, line) in used_modules(built_text(&text)) {
            if used == me {
                continue;
            }
            match rank.get(used.as_str()) {
                Some(&theirs) if theirs < my_rank => {}
                Some(_) => wrong.push(format!("src/{}:{line}: `{me}` uses `{used}`, which is not below it", rel.display())),
                None => wrong.push(format!("src/{}:{line}: `{me}` uses `crate::{used}`, which is in no layer", rel.display())),
            }
        }
    }
    for listed in rank.keys() {
        if !seen.contains(*listed) {
            wrong.push(format!("LAYERS lists `{listed}`, which src/ does not have"));
        }
    }
    assert!(wrong.is_empty(), "the layers are broken:\n{}", wrong.join("\n"));
}

#[test]
fn the_layer_check_reads_paths_groups_and_skips_tests() {
    let text = "use crate::record::Hit;\nuse crate::{pipeline, params::Captured};\nlet x = crate::metrics::HITS; // not mycrate::edge\n#[cfg(test)]\nmod tests {\n    use crate::app::App;\n}\n";
    let used: Vec<(String, usize)> = used_modules(built_text(text));
    let names: Vec<&str> = used.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["record", "pipeline", "params", "metrics"]);
    assert_eq!(used[3].1, 3);
    assert_eq!(module_of(Path::new("forward/meta/client.rs")).as_deref(), Some("forward"));
    assert_eq!(module_of(Path::new("simd.rs")).as_deref(), Some("simd"));
    assert_eq!(module_of(Path::new("lib.rs")), None);
}

/// GitHub's anchor for a heading: lowercase, punctuation dropped, spaces to hyphens.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// The anchors of a Markdown file's headings (outside code blocks).
fn anchors(markdown: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut fenced = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced && line.starts_with('#') {
            out.push(anchor(line.trim_start_matches('#')));
        }
    }
    out
}

/// The files whose text may link into `docs/` or name files: sources, tests, docs, scripts,
/// the template and the examples.
fn linking_files() -> Vec<PathBuf> {
    let root = root();
    let mut all = Vec::new();
    for dir in ["src", "tests", "docs", "scripts", "bench", "events", ".ci"] {
        all.extend(files(&root.join(dir), &[".rs", ".md", ".sh", ".py", ".lua", ".json", ".txt", "run", "test", "validate-template"]));
    }
    all.extend(["README.md", "CHANGELOG.md", "template.yaml", "samconfig.toml", "Cargo.toml"].iter().map(|f| root.join(f)).filter(|p| p.exists()));
    all
}

#[test]
fn every_link_into_docs_resolves() {
    let root = root();
    let mut wrong = Vec::new();
    for path in linking_files() {
        let Ok(text) = std::fs::read_to_string(&path) else { continue };
        let rel = path.strip_prefix(&root).unwrap().display().to_string();
        for (at, _) in text.match_indices("docs/") {
            let rest = &text[at..];
            let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || "/._-#".contains(c))).unwrap_or(rest.len());
            let link = rest[..end].trim_end_matches(['.', ')']);
            let (file, fragment) = link.split_once('#').map_or((link, None), |(f, a)| (f, Some(a)));
            if !file.ends_with(".md") {
                continue;
            }
            // Relative links inside docs/ name their siblings without the folder.
            let target = root.join(file);
            let Ok(markdown) = std::fs::read_to_string(&target) else {
                wrong.push(format!("{rel}: {link}: no such file"));
                continue;
            };
            if let Some(fragment) = fragment
                && !anchors(&markdown).iter().any(|a| a == fragment)
            {
                wrong.push(format!("{rel}: {link}: no heading with that anchor"));
            }
        }
    }
    assert!(wrong.is_empty(), "links into docs/ that do not resolve:\n{}", wrong.join("\n"));
}

#[test]
fn nothing_refers_to_files_outside_the_repository() {
    let root = root();
    let outside = ["SPEC §", "SPEC.md", "capi.md", "rust-aws.md", "destinations.md", "peers.md", "../shared", "shared/reference", "seeds/"];
    let mut wrong = Vec::new();
    for path in linking_files() {
        if path.ends_with("tests/repo.rs") {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&path) else { continue };
        for (n, line) in text.lines().enumerate() {
            if let Some(what) = outside.iter().find(|o| line.contains(*o)) {
                wrong.push(format!("{}:{}: names `{what}`", path.strip_prefix(&root).unwrap().display(), n + 1));
            }
        }
    }
    assert!(wrong.is_empty(), "references to files outside the repository:\n{}", wrong.join("\n"));
}

#[test]
fn anchors_are_made_as_github_makes_them() {
    assert_eq!(anchor(" The pixel answer"), "the-pixel-answer");
    assert_eq!(anchors("# A\n```\n# not a heading\n```\n## fbp and fbc\n### Answers, and retries!"), ["a", "fbp-and-fbc", "answers-and-retries"]);
}
