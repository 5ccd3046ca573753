// The fuzz check, shared (by `include!`) between the cargo-fuzz target `fuzz_targets/apply.rs`
// and the stable fallback test `tests/fuzz_fallback.rs`.
//
// Applies `data` as a layer into a fresh root at `<tmp>/berth-fuzz-<pid>/x/y/root`, beside a victim file, and
// panics if anything outside the root appeared, vanished or changed. The first byte picks the
// whiteout mode and the symlink containment, so all four combinations are explored.

/// Paths under `outer` outside `root`, with their sizes; `root` itself must stay a directory.
fn outside_root(outer: &std::path::Path, root: &std::path::Path) -> Vec<(std::path::PathBuf, u64)> {
    fn walk(
        dir: &std::path::Path,
        root: &std::path::Path,
        out: &mut Vec<(std::path::PathBuf, u64)>,
    ) {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        for p in names {
            let m = std::fs::symlink_metadata(&p).unwrap();
            if p == root {
                assert!(m.is_dir(), "the root was replaced");
                continue;
            }
            out.push((p.clone(), m.len()));
            if m.is_dir() {
                walk(&p, root, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(outer, root, &mut out);
    out
}

/// Makes every directory under `dir` traversable and writable again, so the temporary tree can
/// be removed when not running as root.
fn loosen(dir: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                loosen(&e.path());
            }
        }
    }
}

pub fn fuzz_apply(data: &[u8]) {
    use berth_archive::{apply_layer, ApplyLimits, ApplyOptions, Containment, WhiteoutMode};
    let flags = data.first().copied().unwrap_or(0);
    // A fixed sandbox per process (not a random temporary name), so libFuzzer's comparison
    // tracing can learn its absolute path and try symlinks and names aimed right at it.
    let sandbox = std::env::temp_dir().join(format!("berth-fuzz-{}", std::process::id()));
    if sandbox.exists() {
        loosen(&sandbox);
        std::fs::remove_dir_all(&sandbox).unwrap();
    }
    std::fs::create_dir(&sandbox).unwrap();
    let outer = sandbox.as_path();
    let root = outer.join("x/y/root");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(outer.join("x/y/victim"), b"victim").unwrap();
    std::fs::write(outer.join("x/passwd"), b"passwd").unwrap();
    let before = outside_root(outer, &root);
    let opts = ApplyOptions {
        whiteouts: if flags & 1 == 0 {
            WhiteoutMode::Delete
        } else {
            WhiteoutMode::Overlay
        },
        containment: if flags & 2 == 0 {
            Containment::Reject
        } else {
            Containment::InRoot
        },
        overlay_userxattr: flags & 4 == 0,
        limits: ApplyLimits {
            max_uncompressed_bytes: 16 << 20,
            max_entries: 4096,
            max_name_len: 4096,
        },
        ..ApplyOptions::default()
    };
    let _ = apply_layer(&root, data, &opts);
    assert_eq!(
        outside_root(outer, &root),
        before,
        "something outside the root changed"
    );
    assert_eq!(std::fs::read(outer.join("x/y/victim")).unwrap(), b"victim");
    assert_eq!(std::fs::read(outer.join("x/passwd")).unwrap(), b"passwd");
    loosen(&sandbox);
    std::fs::remove_dir_all(&sandbox).unwrap();
}
