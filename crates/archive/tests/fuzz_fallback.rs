//! The fuzz target's check on stable Rust: the committed seeds, any local cargo-fuzz corpus, and
//! generated inputs (random layers built from hostile names and link targets, then mutated by
//! byte flips, truncation and compression) run through the same `fuzz_apply` as
//! `fuzz/fuzz_targets/apply.rs`.
//!
//! `BERTH_FUZZ_ITERS` (default 300) sets how many generated inputs; `BERTH_FUZZ_SEED` the RNG
//! seed (default fixed, so failures reproduce); `BERTH_FUZZ_WRITE_SEEDS=<dir>` writes the
//! unmutated generated layers there (how `fuzz/seeds/apply` was made).

// Test helpers outside #[test] functions: a panic is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use common::{gzip, layer, E};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

include!("../fuzz/harness.rs");

const NAMES: &[&str] = &[
    "a",
    "a/b",
    "a/b/c",
    "..",
    "../x",
    "../../passwd",
    "a/../../x",
    "/abs",
    "./a",
    "evil",
    "evil/x",
    "evil/y/z",
    "l",
    "l/x",
    ".wh.a",
    ".wh..",
    ".wh...",
    "a/.wh.b",
    "a/.wh..wh..opq",
    ".wh..wh..opq",
    "evil/.wh.victim",
    "evil/.wh..wh..opq",
    "x/../../y",
    "",
    ".",
];

const TARGETS: &[&str] = &[
    "..",
    "../..",
    "../../..",
    "/",
    "/etc",
    "/etc/passwd",
    "a",
    "a/b",
    "evil",
    "l",
    "/proc/self/root",
    "/proc/self/cwd",
    "x/../..",
    "",
];

fn pick<'a>(rng: &mut StdRng, v: &[&'a str]) -> &'a str {
    v[rng.gen_range(0..v.len())]
}

fn random_layer(rng: &mut StdRng) -> Vec<u8> {
    let n = rng.gen_range(1..8);
    let mut entries = Vec::new();
    for _ in 0..n {
        let name = pick(rng, NAMES);
        let target = pick(rng, TARGETS);
        let e = match rng.gen_range(0..8) {
            0 => E::dir(name),
            1 => E::symlink(name, target),
            2 => E::hardlink(name, pick(rng, NAMES)),
            3 => E::fifo(name),
            4 => E::chardev(name, 1, 3),
            _ => E::file(name, &vec![b'x'; rng.gen_range(0..1200)]),
        };
        let e = if rng.gen_bool(0.1) {
            e.xattr("user.x", b"v")
        } else {
            e
        };
        entries.push(e.mode(rng.gen_range(0..0o10000)));
    }
    layer(&entries)
}

fn mutate(rng: &mut StdRng, mut data: Vec<u8>) -> Vec<u8> {
    match rng.gen_range(0..6) {
        0 => {}
        1 => {
            for _ in 0..rng.gen_range(1..8) {
                if !data.is_empty() {
                    let i = rng.gen_range(0..data.len());
                    data[i] = rng.gen();
                }
            }
        }
        2 => {
            let keep = rng.gen_range(0..=data.len());
            data.truncate(keep);
        }
        3 => data = gzip(&data),
        4 => data = common::zstd(&data),
        _ => {
            let len = rng.gen_range(0..2048);
            data = (0..len).map(|_| rng.gen()).collect();
        }
    }
    data
}

fn files_in(dir: &Path) -> Vec<Vec<u8>> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<_> = rd.flatten().map(|e| e.path()).collect();
    paths.sort();
    paths.iter().filter_map(|p| std::fs::read(p).ok()).collect()
}

#[test]
fn fuzz_target_over_seeds_corpus_and_generated_inputs() {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let seeds = files_in(&here.join("fuzz/seeds/apply"));
    let corpus = files_in(&here.join("fuzz/corpus/apply"));
    for input in seeds.iter().chain(corpus.iter()) {
        fuzz_apply(input);
    }
    let iters: usize = std::env::var("BERTH_FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let seed: u64 = std::env::var("BERTH_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x0062_6572_7468);
    let write_seeds = std::env::var_os("BERTH_FUZZ_WRITE_SEEDS");
    let mut rng = StdRng::seed_from_u64(seed);
    for i in 0..iters {
        let base = random_layer(&mut rng);
        if let Some(dir) = &write_seeds {
            std::fs::create_dir_all(dir).unwrap();
            std::fs::write(Path::new(dir).join(format!("gen-{i:03}.tar")), &base).unwrap();
        }
        let input = mutate(&mut rng, base);
        fuzz_apply(&input);
    }
    println!(
        "fuzz fallback: {} seeds, {} corpus inputs, {iters} generated (seed {seed})",
        seeds.len(),
        corpus.len()
    );
}
