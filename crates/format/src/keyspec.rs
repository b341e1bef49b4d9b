//! Key specs: the text form of one data key, `<id>:<alg>:<base64 key>`.
//!
//! Example: `k1:aes256gcm:q0cX...=` (standard base64 with padding of the 32
//! key bytes). A source (env var, file, stdin) may hold several specs,
//! separated by newlines, spaces or commas; lines starting with `#` are
//! comments. Error messages name the spec by position and id, never by
//! content, so a typo in a key never ends up in a log.

use crate::algorithm::Algorithm;
use crate::error::FormatError;
use crate::key_id::KeyId;
use crate::secret::SecretKey;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

/// One parsed key spec.
#[derive(Debug)]
pub struct KeySpec {
    /// The key's id, as written before the `:` of the spec.
    pub id: KeyId,
    /// The key material (never printed).
    pub key: SecretKey,
}

impl KeySpec {
    /// Parses one spec. `position` is used in errors (1-based).
    pub fn parse(spec: &str) -> Result<KeySpec, FormatError> {
        Self::parse_at(spec, "key spec #1")
    }

    /// `at` names the spec in errors (its position, never its text).
    fn parse_at(spec: &str, at: &str) -> Result<KeySpec, FormatError> {
        let bad = |why: String| FormatError::InvalidKeySpec(format!("{at}: {why}"));
        let mut parts = spec.splitn(3, ':');
        let (Some(id), Some(alg), Some(b64)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad("expected <id>:<alg>:<base64 key>".into()));
        };
        let id = KeyId::new(id).map_err(|e| bad(e.to_string()))?;
        let alg = Algorithm::from_name(alg).map_err(|_| {
            bad(format!(
                "key {:?}: unknown algorithm (use aes256gcm or xchacha20poly1305)",
                id.as_str()
            ))
        })?;
        let bytes = Zeroizing::new(STANDARD.decode(b64.trim()).map_err(|_| {
            bad(format!(
                "key {:?}: key material is not valid standard base64",
                id.as_str()
            ))
        })?);
        let key = SecretKey::from_bytes(alg, &bytes).map_err(|_| {
            bad(format!(
                "key {:?}: {} keys are 32 bytes, got {}",
                id.as_str(),
                alg.name(),
                bytes.len()
            ))
        })?;
        Ok(KeySpec { id, key })
    }

    /// Parses every spec in a source. Errors name the spec by line and
    /// position (`line 3, key spec #2`).
    pub fn parse_many(text: &str) -> Result<Vec<KeySpec>, FormatError> {
        let mut out = Vec::new();
        for (line, l) in text.lines().enumerate() {
            if l.trim_start().starts_with('#') {
                continue;
            }
            for spec in l
                .split(|c: char| c.is_whitespace() || c == ',')
                .filter(|s| !s.is_empty())
            {
                let at = format!("line {}, key spec #{}", line + 1, out.len() + 1);
                out.push(Self::parse_at(spec, &at)?);
            }
        }
        Ok(out)
    }

    /// A new random key.
    pub fn generate(id: KeyId, alg: Algorithm) -> Result<KeySpec, FormatError> {
        Ok(KeySpec {
            id,
            key: SecretKey::generate(alg)?,
        })
    }

    /// The spec string. Holds key material: zeroized on drop, never log it.
    pub fn to_spec_string(&self) -> Zeroizing<String> {
        let mut s = Zeroizing::new(String::with_capacity(96));
        s.push_str(self.id.as_str());
        s.push(':');
        // Codec keys (not format v1) write their kind, which `parse` rejects
        // rather than misreading: their text forms belong to keyturn-codecs.
        s.push_str(self.key.kind().name());
        s.push(':');
        STANDARD.encode_string(self.key.expose_bytes(), &mut s);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_many() {
        let a = KeySpec::generate(KeyId::new("k1").unwrap(), Algorithm::Aes256Gcm).unwrap();
        let b = KeySpec::generate(KeyId::new("k2").unwrap(), Algorithm::XChaCha20Poly1305).unwrap();
        let text = format!(
            "# keys\n{}\n  {} ,\n",
            &*a.to_spec_string(),
            &*b.to_spec_string()
        );
        let many = KeySpec::parse_many(&text).unwrap();
        assert_eq!(many.len(), 2);
        assert_eq!(many[0].key.expose_bytes(), a.key.expose_bytes());
        assert_eq!(many[1].key.algorithm(), Algorithm::XChaCha20Poly1305);
    }

    #[test]
    fn errors_name_line_and_position() {
        let good = KeySpec::generate(KeyId::new("k1").unwrap(), Algorithm::Aes256Gcm).unwrap();
        let text = format!("# keys\n{}\n\nk2:aes256gcm:AAAA\n", &*good.to_spec_string());
        let e = KeySpec::parse_many(&text).unwrap_err().to_string();
        assert!(e.contains("line 4, key spec #2"), "{e}");
        assert!(!e.contains("AAAA"), "{e}");
    }

    #[test]
    fn errors_never_echo_material() {
        let material = STANDARD.encode([0x5au8; 31]);
        let material = material.as_str();
        for spec in [
            format!("k1:aes256gcm:{material}"),
            format!("k1:rot13:{material}"),
            format!("k1:aes256gcm:{material}!"),
            format!("k 1:aes256gcm:{material}"),
        ] {
            let e = KeySpec::parse(&spec).unwrap_err().to_string();
            assert!(!e.contains(material) && !e.contains(&material[..16]), "{e}");
        }
    }
}
