//! Loading of the JSON vector files under testdata/codecs.
#![allow(dead_code)]

use keyturn_codecs::{CodecConfig, load_ring};
use keyturn_format::Keyring;
use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Deserialize)]
pub struct VectorFile {
    pub codec: CodecConfig,
    pub source: String,
    pub keys: Vec<Key>,
    pub primary: String,
    pub cases: Vec<Case>,
}

#[derive(Deserialize)]
pub struct Key {
    pub id: String,
    pub text: String,
}

#[derive(Deserialize)]
pub struct Case {
    pub name: String,
    #[serde(default)]
    pub stored: Option<String>,
    #[serde(default)]
    pub stored_hex: Option<String>,
    #[serde(default)]
    pub plaintext: Option<String>,
    #[serde(default)]
    pub key_id: Option<String>,
    #[serde(default)]
    pub inspect: Option<String>,
    #[serde(default)]
    pub timestamp: Option<u64>,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub decrypt_error: Option<String>,
}

impl Case {
    pub fn stored_bytes(&self) -> Vec<u8> {
        match (&self.stored, &self.stored_hex) {
            (Some(s), None) => s.as_bytes().to_vec(),
            (None, Some(h)) => hex::decode(h).expect("stored_hex is hex"),
            _ => panic!("case {:?}: exactly one of stored, stored_hex", self.name),
        }
    }
}

impl VectorFile {
    pub fn ring(&self) -> Keyring {
        let keys: Vec<(&str, &str)> = self
            .keys
            .iter()
            .map(|k| (k.id.as_str(), k.text.as_str()))
            .collect();
        load_ring(&self.codec, &keys, Some(&self.primary), &[]).expect("vector keys load")
    }
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every vector file under `dir`, sorted.
pub fn vector_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "json") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

pub fn load(path: &Path) -> VectorFile {
    let text = std::fs::read_to_string(path).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
