//! The Python of the venv `scripts/test` creates and installs `tests/requirements.txt` into:
//! moto in server mode, and Meta's Python Business SDK (the hashing oracle). Tests that need it
//! fail without it, never skip.

use std::path::{Path, PathBuf};

/// `$PIXELGATE_PYTHON` (or the older `$PIXELGATE_MOTO_PYTHON`), else the repository's
/// `.venv/bin/python`; panics, saying what `needs` it and how to install it, if there is none.
pub fn python(needs: &str) -> PathBuf {
    let from_env = std::env::var_os("PIXELGATE_PYTHON").or_else(|| std::env::var_os("PIXELGATE_MOTO_PYTHON")).map(PathBuf::from);
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    match from_env.or_else(|| venv.exists().then_some(venv)) {
        Some(p) if p.exists() => p,
        other => panic!(
            "{needs} needs the Python tests/requirements.txt is installed into, and found none ({}): run scripts/test, which installs it into .venv",
            other.map_or("PIXELGATE_PYTHON / PIXELGATE_MOTO_PYTHON unset and no .venv/bin/python".into(), |p| format!("{} does not exist", p.display()))
        ),
    }
}
