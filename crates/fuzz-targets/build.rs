//! Gathers the source text of the crates whose error messages the targets
//! check, so that a message fragment found in the input can be told apart
//! from an echo: fixed message text is in the sources, an echo is not.

use std::path::{Path, PathBuf};

const CRATES: &[&str] = &[
    "format", "codecs", "keys", "db", "engine", "ops", "audit", "catalog", "kms",
];

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    for c in CRATES {
        let src = root.join(c).join("src");
        println!("cargo::rerun-if-changed={}", src.display());
        collect(&src, &mut files);
    }
    files.sort();
    let mut text = String::new();
    for f in &files {
        if let Ok(s) = std::fs::read_to_string(f) {
            text.push_str(&s);
            text.push('\n');
        }
    }
    // Messages hold string literals unescaped: `\"` in the source is `"`,
    // and a `\` at the end of a line drops the line break and indentation.
    let mut unescaped = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(i) = rest.find("\\\n") {
        unescaped.push_str(&rest[..i]);
        rest = rest[i + 2..].trim_start();
    }
    unescaped.push_str(rest);
    let unescaped = unescaped
        .replace("\\\"", "\"")
        .replace("\\n", "\n")
        .replace("\\\\", "\\");
    text.push_str(&unescaped);
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR")).join("sources.txt");
    std::fs::write(out, text).expect("write sources.txt");
}
