//! Tidy: checks of the repository itself, in the manner of rust-analyzer's `tidy.rs`. They read
//! the workspace from the filesystem (nothing here names a crate), so a crate left out of the
//! workspace members or of ARCHITECTURE.md, or an overgrown source file, fails `cargo test`.
//!
//! `unwrap()` outside tests is clippy's job: the workspace lint `clippy::unwrap_used` is `warn`
//! (CI denies warnings) and `clippy.toml` allows it in tests.

// Test helpers outside #[test] functions: a panic is a failed test.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};

/// Source files allowed past [`MAX_LINES`], each with its reason.
const LONG_FILES: &[(&str, &str)] = &[];
/// The most lines a source file may have (the house rule: no file over ~800 lines).
const MAX_LINES: usize = 800;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn manifest(dir: &Path) -> toml::Table {
    let path = dir.join("Cargo.toml");
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.parse()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The strings of `workspace.<key>` in the root manifest (`members`, `exclude`).
fn workspace_list(key: &str) -> Vec<String> {
    manifest(&root())["workspace"]
        .get(key)
        .and_then(|v| v.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn skipped(name: &str) -> bool {
    name == "target" || name.starts_with('.')
}

/// Every directory under `dir` (itself included) holding a Cargo.toml, relative to the root.
fn crate_dirs(dir: &Path, out: &mut Vec<String>) {
    if dir.join("Cargo.toml").is_file() {
        let rel = dir.strip_prefix(root()).unwrap();
        out.push(rel.to_string_lossy().into_owned());
    }
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() && !skipped(&name) {
            crate_dirs(&path, out);
        }
    }
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            if !skipped(&name) {
                rust_files(&path, out);
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

/// Whether `word` appears in `text` between characters that cannot continue a crate name or
/// path (so `crates/ops` is not found in `crates/ops-extra`).
fn mentions(text: &str, word: &str) -> bool {
    let continues = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    text.match_indices(word).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + word.len()..].chars().next();
        !before.is_some_and(continues) && !after.is_some_and(continues)
    })
}

#[test]
fn every_crate_is_a_workspace_member() {
    let members = workspace_list("members");
    let exclude = workspace_list("exclude");
    let mut dirs = Vec::new();
    crate_dirs(&root().join("crates"), &mut dirs);
    assert!(!dirs.is_empty(), "no crates under {}", root().display());
    let missing: Vec<&String> = dirs
        .iter()
        .filter(|d| !members.contains(d) && !exclude.contains(d))
        .collect();
    assert!(
        missing.is_empty(),
        "crates missing from the workspace members in Cargo.toml (add them, or to `exclude` \
         if they must stay out): {missing:?}"
    );
    let stale: Vec<&String> = members
        .iter()
        .filter(|m| !root().join(m).join("Cargo.toml").is_file())
        .collect();
    assert!(
        stale.is_empty(),
        "workspace members without a Cargo.toml: {stale:?}"
    );
}

#[test]
fn every_workspace_crate_is_in_the_architecture_map() {
    let arch = fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
    let mut unmapped = Vec::new();
    for member in workspace_list("members") {
        let package = manifest(&root().join(&member));
        let name = package["package"]["name"].as_str().unwrap().to_string();
        for word in [member, name] {
            if !mentions(&arch, &word) {
                unmapped.push(word);
            }
        }
    }
    assert!(
        unmapped.is_empty(),
        "ARCHITECTURE.md does not mention these workspace crates (each crate's path and \
         package name belong in its code map): {unmapped:?}"
    );
}

#[test]
fn no_source_file_is_overgrown() {
    let mut files = Vec::new();
    for top in ["crates", "tests"] {
        rust_files(&root().join(top), &mut files);
    }
    assert!(!files.is_empty(), "no sources under {}", root().display());
    let mut long = Vec::new();
    for path in files {
        let rel = path
            .strip_prefix(root())
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let lines = fs::read_to_string(&path).unwrap().lines().count();
        if lines > MAX_LINES && !LONG_FILES.iter().any(|(f, _)| *f == rel) {
            long.push(format!("{rel} ({lines} lines)"));
        }
    }
    assert!(
        long.is_empty(),
        "files over {MAX_LINES} lines (split them, or list them in LONG_FILES with a reason): \
         {long:?}"
    );
    for (file, reason) in LONG_FILES {
        assert!(!reason.is_empty(), "LONG_FILES entry {file} needs a reason");
    }
}

#[test]
fn mentions_are_whole_words() {
    assert!(mentions("the `crates/ops` crate", "crates/ops"));
    assert!(mentions("(berth-ops).", "berth-ops"));
    assert!(!mentions("crates/ops-extra", "crates/ops"));
    assert!(!mentions("berth-opsy", "berth-ops"));
    assert!(!mentions("xberth-ops", "berth-ops"));
}
