//! Replays the saved fuzzing inputs: every file of `fuzz/corpus/<target>/`
//! (the minimized corpus) and of `fuzz/regressions/<target>/` (inputs that
//! once crashed a target) through the target's function. Part of
//! `cargo test --workspace`: no nightly, no libFuzzer needed.
//!
//! A target's corpus folder missing or empty fails the test, so that a
//! broken path can never make it pass without running anything.

use keyturn_fuzz_targets::TARGETS;
use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// The files of `dir`, sorted; `None` when it does not exist.
fn files(dir: &Path) -> Option<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).ok()?;
    let mut out: Vec<PathBuf> = entries
        .map(|e| e.expect("read_dir entry").path())
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    Some(out)
}

fn run(target: &str, f: fn(&[u8]), path: &Path) {
    let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let outcome = std::panic::catch_unwind(|| f(&data));
    if outcome.is_err() {
        panic!(
            "{target}: input {} fails (reproduce: cargo +nightly fuzz run {target} {})",
            path.display(),
            path.display()
        );
    }
}

#[test]
fn every_target_has_a_fuzz_binary_and_a_corpus() {
    let fuzz = fuzz_dir();
    for (name, _) in TARGETS {
        let bin = fuzz.join("fuzz_targets").join(format!("{name}.rs"));
        assert!(bin.is_file(), "no cargo-fuzz target {}", bin.display());
        let corpus = fuzz.join("corpus").join(name);
        let n = files(&corpus).map_or(0, |f| f.len());
        assert!(n > 0, "corpus {} is missing or empty", corpus.display());
    }
    // And no corpus without a target (a renamed target would leave its
    // corpus unreplayed).
    for dir in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(fuzz.join(dir)) else {
            continue;
        };
        for e in entries {
            let name = e.unwrap().file_name().into_string().unwrap();
            assert!(
                TARGETS.iter().any(|(t, _)| *t == name),
                "fuzz/{dir}/{name} belongs to no target"
            );
        }
    }
}

macro_rules! replay {
    ($($name:ident),+ $(,)?) => {$(
        #[test]
        fn $name() {
            let target = stringify!($name);
            let (_, f) = TARGETS
                .iter()
                .find(|(t, _)| *t == target)
                .expect("a target of that name");
            let fuzz = fuzz_dir();
            let corpus = fuzz.join("corpus").join(target);
            let inputs = files(&corpus)
                .unwrap_or_else(|| panic!("corpus {} is missing", corpus.display()));
            assert!(!inputs.is_empty(), "corpus {} is empty", corpus.display());
            let regressions = files(&fuzz.join("regressions").join(target)).unwrap_or_default();
            for p in inputs.iter().chain(&regressions) {
                run(target, *f, p);
            }
            eprintln!(
                "{target}: {} corpus inputs, {} regressions",
                inputs.len(),
                regressions.len()
            );
        }
    )+};
}

replay!(
    v1_text,
    v1_binary,
    codec_aws_kms,
    codec_cloak,
    codec_fernet,
    codec_json_envelope,
    codec_laravel,
    codec_lockbox,
    codec_node,
    codec_rails,
    codec_sodium,
    codec_vault,
    codec_version_byte,
    codec_envelope,
    codec_detect,
    codec_parse_key,
    key_spec,
    key_source,
    config,
    multi_cells,
);

#[test]
fn every_target_is_replayed() {
    // The list above names every target: a new one must be added there.
    let listed = [
        "v1_text",
        "v1_binary",
        "codec_aws_kms",
        "codec_cloak",
        "codec_fernet",
        "codec_json_envelope",
        "codec_laravel",
        "codec_lockbox",
        "codec_node",
        "codec_rails",
        "codec_sodium",
        "codec_vault",
        "codec_version_byte",
        "codec_envelope",
        "codec_detect",
        "codec_parse_key",
        "key_spec",
        "key_source",
        "config",
        "multi_cells",
    ];
    let mut targets: Vec<&str> = TARGETS.iter().map(|(t, _)| *t).collect();
    let mut listed = listed.to_vec();
    targets.sort_unstable();
    listed.sort_unstable();
    assert_eq!(targets, listed);
}
