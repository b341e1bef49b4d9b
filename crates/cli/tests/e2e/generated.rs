//! `keyturn completions SHELL` and `keyturn man`: generated from the
//! parser's own definition, so they name every command and flag.

use std::process::Command;

fn keyturn(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_keyturn"))
        .args(args)
        .env_remove("KEYTURN_CONFIG")
        .output()
        .expect("running keyturn")
}

#[test]
fn completions_for_every_shell() {
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef keyturn"),
        ("fish", "complete -c keyturn"),
        ("powershell", "Register-ArgumentCompleter"),
        ("elvish", "edit:completion:arg-completer"),
    ] {
        let o = keyturn(&["completions", shell]);
        assert!(
            o.status.success(),
            "{shell}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let text = String::from_utf8(o.stdout).expect("UTF-8");
        assert!(text.contains(marker), "{shell}: no {marker:?}");
        // Subcommands and flags are in it.
        for word in ["rotate", "verify", "runs", "dry-run"] {
            assert!(text.contains(word), "{shell}: {word} missing");
        }
    }
    let o = keyturn(&["completions", "tcsh"]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "an unknown shell is a usage error"
    );
    let o = keyturn(&["--json", "completions", "bash"]);
    assert_eq!(o.status.code(), Some(2), "--json means nothing here");
}

#[test]
fn man_page() {
    let o = keyturn(&["man"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let roff = String::from_utf8(o.stdout).expect("UTF-8");
    assert!(
        roff.starts_with(".ie") || roff.starts_with(".TH"),
        "{}",
        &roff[..80.min(roff.len())]
    );
    assert!(roff.contains(".TH keyturn"), "no title");
    for word in ["rotate", "verify", "status", "\\-\\-config"] {
        assert!(roff.contains(word), "{word} missing from the man page");
    }
}

#[test]
fn man_pages_for_every_subcommand() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("man1");
    let o = keyturn(&["man", "--dir", out.to_str().expect("UTF-8 path")]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let listed = String::from_utf8(o.stdout).expect("UTF-8");
    // The top page names the subcommands' pages in SEE ALSO; each exists.
    let top = std::fs::read_to_string(out.join("keyturn.1")).expect("keyturn.1");
    for page in [
        "keyturn-status.1",
        "keyturn-rotate.1",
        "keyturn-keys.1",
        "keyturn-keys-add.1",
        "keyturn-audit-export.1",
        "keyturn-bad-rows-list.1",
        "keyturn-kms-retire-old-versions.1",
    ] {
        let text =
            std::fs::read_to_string(out.join(page)).unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(text.contains(".TH keyturn"), "{page}: no title");
        assert!(listed.contains(page), "{page} not listed on stdout");
    }
    let name = |p: &str| p.trim_end_matches(".1").to_owned();
    assert!(
        top.contains(&name("keyturn-status.1").replace('-', "\\-")),
        "SEE ALSO"
    );
    // No page for clap's own `help` subcommand.
    assert!(!out.join("keyturn-help.1").exists());
    let rotate = std::fs::read_to_string(out.join("keyturn-rotate.1")).expect("rotate page");
    assert!(
        rotate.contains("dry\\-run"),
        "rotate's flags are on its page"
    );
}
