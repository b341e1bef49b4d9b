//! Checks shared by the targets.

use memchr::memmem;

/// The source text of the crates whose messages are checked (gathered by
/// build.rs): every fixed fragment of their error messages is in it.
static SOURCES: &str = include_str!(concat!(env!("OUT_DIR"), "/sources.txt"));

/// Windows of the message looked up in the input: 16 bytes every 8 bytes,
/// so any echo of 24 bytes or more is caught.
const WINDOW: usize = 16;
const STRIDE: usize = 8;

/// Panics if `msg` holds 24 or more consecutive bytes of `input`, unless
/// they are fixed message text (in the crates' sources) or inside one of
/// `allowed` (key ids the value names, which messages may show), as they
/// are or quoted (`{:?}`).
pub(crate) fn assert_no_echo(what: &str, msg: &str, input: &[u8], allowed: &[&str]) {
    let m = msg.as_bytes();
    if m.len() < WINDOW || input.len() < WINDOW {
        return;
    }
    let mut i = 0;
    while i + WINDOW <= m.len() {
        let w = &m[i..i + WINDOW];
        if memmem::find(input, w).is_some() {
            // Allowed strings as they are and as messages quote them, then
            // (slower) the sources.
            let fixed = allowed.iter().any(|a| {
                memmem::find(a.as_bytes(), w).is_some()
                    || memmem::find(format!("{a:?}").as_bytes(), w).is_some()
            }) || memmem::find(SOURCES.as_bytes(), w).is_some();
            assert!(
                fixed,
                "{what}: the error message echoes input bytes {:?}: {msg}",
                String::from_utf8_lossy(w)
            );
        }
        i += STRIDE;
    }
}

/// The key material of [`crate::CANARY_SPEC`].
fn canary_material() -> &'static str {
    crate::CANARY_SPEC.rsplit(':').next().unwrap_or_default()
}

/// The input as text with every `@@` replaced by [`crate::CANARY_SPEC`];
/// `None` when it is not UTF-8.
pub(crate) fn with_canary(data: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(data).ok()?;
    Some(s.replace("@@", crate::CANARY_SPEC))
}

/// Panics if `msg` shows 12 or more consecutive characters of the canary's
/// key material.
pub(crate) fn assert_no_canary(what: &str, msg: &str) {
    let m = canary_material();
    for w in m.as_bytes().windows(12) {
        assert!(
            memmem::find(msg.as_bytes(), w).is_none(),
            "{what}: the error message shows key material: {msg}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_echo_is_caught_and_fixed_text_is_not() {
        let input = b"zzQ1H/4jVXk4GMI84kvgEq0cXZq+Wv7pj8sLXS9N4Dhf";
        let echo = std::panic::catch_unwind(|| {
            assert_no_echo(
                "t",
                "bad value Q1H/4jVXk4GMI84kvgEq0cXZq+Wv7p here",
                input,
                &[],
            );
        });
        assert!(echo.is_err(), "a 30-byte echo passes");
        // Shorter than 24 bytes: not checked.
        assert_no_echo("t", "bad value Q1H/4jVXk4GMI8 here", input, &[]);
        // Allowed (a key id the value names).
        assert_no_echo(
            "t",
            "bad value Q1H/4jVXk4GMI84kvgEq0cXZq+Wv7p here",
            input,
            &["Q1H/4jVXk4GMI84kvgEq0cXZq+Wv7p"],
        );
        // Fixed message text found in the input is no echo.
        let msg = "empty value: no ciphertext to decode";
        assert_no_echo("t", msg, msg.as_bytes(), &[]);
    }

    #[test]
    fn the_canary_is_caught() {
        let shown = std::panic::catch_unwind(|| {
            assert_no_canary("t", &format!("primary = {}", crate::CANARY_SPEC));
        });
        assert!(shown.is_err());
        assert_no_canary("t", "primary: (value not shown)");
        assert_eq!(
            with_canary(b"primary = \"@@\"").unwrap(),
            format!("primary = \"{}\"", crate::CANARY_SPEC)
        );
    }
}
