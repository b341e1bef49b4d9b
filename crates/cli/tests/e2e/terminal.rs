//! Terminal conventions, on SQLite (they do not depend on the database):
//! `-q`, `-v` and `--color` on every subcommand; coloured `error:` and
//! `warning:` prefixes only when asked for; one style for keyturn's own
//! messages and the log; aligned tables with long names; "interrupted at"
//! after a Ctrl-C.
//!
//! Run: `cargo test -p keyturn --test e2e terminal::`.

use crate::common::*;
use std::collections::BTreeSet;
use std::time::Duration;

macro_rules! sqlite_only {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[test] fn $name() { crate::common::run(crate::common::Kind::Sqlite, stringify!($name), super::$name) } )*
        }
    };
}

sqlite_only!(
    every_subcommand_takes_quiet_verbose_and_color,
    quiet_keeps_results_and_errors,
    verbose_and_keyturn_log_use_one_style,
    color_only_when_asked_for,
    tables_stay_aligned_with_long_names,
    interrupted_run_says_interrupted,
);

/// A table `name` with an integer key and one text column `column`, `n`
/// rows encrypted under k1; the config has k1 and k2 with k2 current.
async fn encrypted(t: &TestDb, name: &str, column: &str, n: i64) -> (Table, Cfg) {
    let tb = t.plaintext_table(name, column, n).await;
    let (k1, k2) = (t.key("k1"), t.key("k2"));
    t.keyturn(&Cfg::new(&[&tb], &[&k1], "k1"), &["encrypt"])
        .await
        .expect(0);
    let cfg = Cfg::new(&[&tb], &[&k1, &k2], "k2");
    (tb, cfg)
}

/// The subcommand names a `--help` page lists under "Commands:".
fn commands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        // Wrapped descriptions go on under more indentation.
        .filter(|l| !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_owned)
        .collect()
}

/// `keyturn ARGS`, without `--config`.
fn bare(args: &[&str]) -> Out {
    let o = std::process::Command::new(binary())
        .args(args)
        .env_remove("KEYTURN_CONFIG")
        .output()
        .expect("running keyturn");
    Out {
        label: args.join(" "),
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

fn with_flag<'a>(flag: &[&'a str], args: &[&'a str], at_end: bool) -> Vec<&'a str> {
    if at_end {
        args.iter().chain(flag).copied().collect()
    } else {
        flag.iter().chain(args).copied().collect()
    }
}

/// Every subcommand (walked from `--help`, so a new one cannot be missed)
/// accepts `-q`, `-qq`, `-v`, `-vv`, `--color never` and `--color=always`,
/// before or after its name, and exits as it does without them.
async fn every_subcommand_takes_quiet_verbose_and_color(t: TestDb) {
    // This config has no key catalog: the catalog commands fail, the same
    // way with and without the flags.
    let (_tb, cfg) = encrypted(&t, &t.table_name("every"), "secret", 20).await;
    let demo = t.dir().join("demo");
    let demo = demo.display().to_string();
    let invocations: Vec<Vec<&str>> = vec![
        vec!["status"],
        vec!["rotate"],
        vec!["encrypt"],
        vec!["verify"],
        vec!["demo", "--dir", &demo, "--rows", "20", "--force"],
        vec!["keys", "generate", "--id", "k9"],
        vec!["keys", "add", "--id", "k9"],
        vec!["keys", "list"],
        vec!["keys", "promote", "k9"],
        vec!["keys", "instances"],
        vec!["keys", "retire", "k9"],
        vec!["keys", "destroy", "k9"],
        vec!["keys", "restore", "k9"],
        vec!["keys", "compromised", "k9"],
        vec!["keys", "self-test"],
        vec!["audit", "list"],
        vec!["audit", "export"],
        vec!["audit", "verify"],
        vec!["due"],
        vec!["report", "--html", "-"],
        vec![
            "kek",
            "rotate",
            "--to",
            "local",
            "--master-key",
            "env:KT_NO_SUCH",
        ],
        vec!["bad-rows", "list"],
        vec!["bad-rows", "ack", "--all", "--reason", "checked"],
        vec!["runs"],
        vec!["runs", "pause"],
        vec!["runs", "resume"],
        vec!["runs", "stop"],
        vec!["completions", "bash"],
        vec!["man"],
        vec!["kms", "retire-old-versions"],
    ];

    // The list covers every subcommand and every subcommand of a group.
    let help = t.keyturn(&cfg, &["--help"]).await.expect(0);
    let top = commands(&help.stdout);
    assert!(top.len() >= 15, "{help}");
    let mut wanted = BTreeSet::new();
    for c in &top {
        let sub = t.keyturn(&cfg, &[c.as_str(), "--help"]).await.expect(0);
        let subs = commands(&sub.stdout);
        if subs.is_empty() {
            wanted.insert(vec![c.clone()]);
        }
        for s in subs {
            wanted.insert(vec![c.clone(), s]);
        }
    }
    let covered: BTreeSet<Vec<String>> = invocations
        .iter()
        .flat_map(|i| {
            [
                vec![i[0].to_owned()],
                i.iter().take(2).map(|s| (*s).to_owned()).collect(),
            ]
        })
        .collect();
    let missing: Vec<_> = wanted.difference(&covered).collect();
    assert!(missing.is_empty(), "not exercised: {missing:?}");

    // The commands that refuse --config (it means nothing for them) run
    // without it.
    let run = async |args: &[&str]| {
        if args
            .iter()
            .any(|a| ["demo", "generate", "completions", "man"].contains(a))
        {
            bare(args)
        } else {
            t.keyturn(&cfg, args).await
        }
    };
    for args in &invocations {
        let base = run(args).await;
        for (flag, at_end) in [
            (&["-q"][..], false),
            (&["-qq"][..], true),
            (&["-v"][..], true),
            (&["-vv"][..], false),
            (&["--color", "never"][..], false),
            (&["--color=always"][..], true),
        ] {
            let o = run(&with_flag(flag, args, at_end)).await;
            assert_eq!(
                o.code, base.code,
                "{flag:?} changed the exit code of {args:?}\n{base}\n{o}"
            );
            assert!(
                !o.stderr.contains("unexpected argument") && !o.stderr.contains("Usage:"),
                "{o}"
            );
        }
    }
}

/// `-q`: no progress or notes, no warnings; the result on stdout and the
/// errors stay.
async fn quiet_keeps_results_and_errors(t: TestDb) {
    let (_tb, mut cfg) = encrypted(&t, &t.table_name("quiet"), "secret", 30).await;
    // A key file open to others: a warning (from the log) on every command.
    let keys = t.dir().join("keys");
    let specs: Vec<String> = cfg.keys.iter().map(|k| k.spec.clone()).collect();
    std::fs::write(&keys, specs.join("\n")).unwrap();
    set_mode(&keys, 0o644);
    cfg.sources = Some(vec![format!("file:{}", keys.display())]);

    let loud = t.keyturn(&cfg, &["rotate"]).await.expect(0);
    assert!(loud.stderr.contains("values to process"), "{loud}");
    assert!(loud.stderr.contains("warning: key file"), "{loud}");
    assert!(loud.stdout.contains("outcome: ok"), "{loud}");

    let quiet = t.keyturn(&cfg, &["-q", "rotate"]).await.expect(0);
    assert_eq!(quiet.stderr, "", "{quiet}");
    assert!(quiet.stdout.contains("outcome: ok"), "{quiet}");
    let quiet = t.keyturn(&cfg, &["status", "-q"]).await.expect(0);
    assert_eq!(quiet.stderr, "", "{quiet}");
    assert!(quiet.stdout.contains("COLUMN"), "{quiet}");

    // Errors are never quieted.
    let failed = t
        .keyturn(&cfg, &["-q", "status", "--table", "kt_no_such_table"])
        .await;
    assert_ne!(failed.code, 0, "{failed}");
    assert!(failed.stderr.starts_with("error: "), "{failed}");
    assert!(!failed.stderr.contains("warning:"), "{failed}");

    // -q and -v contradict each other: a usage error.
    let both = t.keyturn(&cfg, &["-q", "-v", "status"]).await.expect(2);
    assert!(both.stderr.contains("cannot be used with"), "{both}");
}

/// No raw tracing line: no timestamp, no `INFO`/`DEBUG` column, no ANSI.
fn assert_one_style(o: &Out) {
    for l in o.stderr.lines() {
        let first = l.split_whitespace().next().unwrap_or_default();
        assert!(
            !first.starts_with("20") && !first.contains('T'),
            "a timestamp: {l:?}\n{o}"
        );
        for raw in [" INFO ", " DEBUG ", " WARN ", " TRACE ", " ERROR "] {
            assert!(!l.contains(raw), "a raw tracing line: {l:?}\n{o}");
        }
        assert!(!l.contains('\x1b'), "{l:?}\n{o}");
    }
}

/// `-v` shows keyturn's info lines as `info: …`; `KEYTURN_LOG=debug`
/// shows debug lines as `debug: <origin>: …`; both like keyturn's own
/// `warning:` lines.
async fn verbose_and_keyturn_log_use_one_style(t: TestDb) {
    let (_tb, cfg) = encrypted(&t, &t.table_name("verbose"), "secret", 30).await;
    let quiet_default = t.keyturn(&cfg, &["status"]).await.expect(0);
    assert!(!quiet_default.stderr.contains("info:"), "{quiet_default}");

    let v = t.keyturn(&cfg, &["-v", "rotate"]).await.expect(0);
    assert!(
        v.stderr.lines().any(|l| l.starts_with("info: config ")),
        "{v}"
    );
    assert!(
        v.stderr
            .lines()
            .any(|l| l.starts_with("info: rotate: batches of ")),
        "{v}"
    );
    assert_one_style(&v);

    let mut debug = cfg.clone();
    debug.env.push(("KEYTURN_LOG".into(), "debug".into()));
    let d = t.keyturn(&debug, &["status"]).await.expect(0);
    let debug_lines: Vec<&str> = d
        .stderr
        .lines()
        .filter(|l| l.starts_with("debug: "))
        .collect();
    assert!(!debug_lines.is_empty(), "{d}");
    for l in &debug_lines {
        // `debug: target: message`: the origin, a module path, after the level.
        let origin = l["debug: ".len()..].split(": ").next().unwrap_or_default();
        assert!(
            !origin.is_empty() && !origin.contains(' '),
            "no origin in {l:?}\n{d}"
        );
    }
    assert!(d.stderr.contains("info: config "), "{d}");
    assert_one_style(&d);
    // KEYTURN_LOG overrides -q for the log.
    let d = t.keyturn(&debug, &["-q", "status"]).await.expect(0);
    assert!(d.stderr.contains("debug: "), "{d}");
    // A filter that does not parse: said once, the default levels apply.
    let mut bad = cfg.clone();
    bad.env.push(("KEYTURN_LOG".into(), "debug=x=y".into()));
    let b = t.keyturn(&bad, &["status"]).await.expect(0);
    let lines: Vec<&str> = b.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{b}");
    assert!(
        lines[0].starts_with("warning: KEYTURN_LOG=\"debug=x=y\" is not a log filter (")
            && lines[0].ends_with("); using the levels of -q/-v"),
        "{b}"
    );
}

/// `--color always` colours the `error:` / `warning:` prefixes even into a
/// pipe; `--color never` and NO_COLOR leave no escape code; without either,
/// CLICOLOR_FORCE colours (the auto choice reads the environment).
async fn color_only_when_asked_for(t: TestDb) {
    let (_tb, mut cfg) = encrypted(&t, &t.table_name("color"), "secret", 10).await;
    let keys = t.dir().join("keys");
    let specs: Vec<String> = cfg.keys.iter().map(|k| k.spec.clone()).collect();
    std::fs::write(&keys, specs.join("\n")).unwrap();
    set_mode(&keys, 0o644);
    cfg.sources = Some(vec![format!("file:{}", keys.display())]);
    let error_args = ["status", "--table", "kt_no_such_table"];

    // The harness sets NO_COLOR=1: --color always overrides it.
    let o = t
        .keyturn(&cfg, &["--color", "always", "status"])
        .await
        .expect(0);
    assert!(
        o.stderr.contains("\x1b[33mwarning:\x1b[0m") || o.stderr.contains("warning:\x1b[0m"),
        "{o:?}"
    );
    assert!(o.stderr.starts_with('\x1b'), "{o:?}");
    let o = t
        .keyturn(&cfg, &with_flag(&["--color", "always"], &error_args, true))
        .await;
    assert_ne!(o.code, 0, "{o}");
    let error_line = o
        .stderr
        .lines()
        .find(|l| l.contains("error:"))
        .unwrap_or_else(|| panic!("{o:?}"));
    assert!(
        error_line.starts_with('\x1b') && error_line.contains("error:\x1b[0m "),
        "{error_line:?}"
    );

    // Never, whatever the environment says.
    let mut forced = cfg.clone();
    forced.env.push(("CLICOLOR_FORCE".into(), "1".into()));
    forced.env.push(("NO_COLOR".into(), String::new()));
    for args in [&["status"][..], &error_args] {
        let o = t
            .keyturn(&forced, &with_flag(&["--color", "never"], args, false))
            .await;
        // The status reads the key file (a warning); the other one fails
        // before it (an error).
        let prefix = if args.len() == 1 {
            "warning:"
        } else {
            "error:"
        };
        assert!(o.stderr.contains(prefix), "{o}");
        assert!(
            !o.stderr.contains('\x1b') && !o.stdout.contains('\x1b'),
            "{o:?}"
        );
        // Auto: CLICOLOR_FORCE colours a pipe...
        let o = t.keyturn(&forced, args).await;
        assert!(o.stderr.contains(&format!("{prefix}\x1b[0m")), "{o:?}");
    }
    // ...unless NO_COLOR is set (the harness's NO_COLOR=1).
    let mut no_color = cfg.clone();
    no_color.env.push(("CLICOLOR_FORCE".into(), "1".into()));
    let o = t.keyturn(&no_color, &error_args).await;
    assert!(o.stderr.contains("error:"), "{o}");
    assert!(!o.stderr.contains('\x1b'), "{o:?}");
    // clap's own usage errors follow --color too.
    let o = t
        .keyturn(&cfg, &["--color", "never", "status", "--bogus"])
        .await;
    assert_eq!(o.code, 2, "{o}");
    assert!(!o.stderr.contains('\x1b'), "{o:?}");
    let o = t
        .keyturn(&cfg, &["--color", "always", "status", "--bogus"])
        .await;
    assert_eq!(o.code, 2, "{o}");
    assert!(o.stderr.contains('\x1b'), "{o:?}");
}

/// Checks the table whose header line names the columns `left` (aligned
/// left, the first one first) and `right` (aligned right), with `n` rows:
/// every left-aligned column's cells start where its header starts, after
/// two spaces; every right-aligned one ends where its header ends, before
/// two spaces or the end of the line.
fn assert_aligned(text: &str, n: usize, left: &[&str], right: &[&str]) {
    let lines: Vec<&str> = text.lines().collect();
    let at = lines
        .iter()
        .position(|l| {
            l.trim_start().starts_with(left[0]) && left.iter().chain(right).all(|h| l.contains(h))
        })
        .unwrap_or_else(|| panic!("no table {left:?} {right:?} in\n{text}"));
    let head = lines[at];
    let rows: Vec<&str> = lines[at + 1..].iter().take(n).copied().collect();
    assert_eq!(rows.len(), n, "{text}");
    assert!(rows.iter().all(|r| !r.trim().is_empty()), "{text}");
    let find = |name: &str| {
        head.find(&format!("  {name}"))
            .map(|i| i + 2)
            .or_else(|| {
                head.trim_start()
                    .starts_with(name)
                    .then(|| head.find(name).unwrap_or(0))
            })
            .unwrap_or_else(|| panic!("no {name} in {head:?}"))
    };
    for name in left {
        let start = find(name);
        for r in &rows {
            let cell = r.get(start..).unwrap_or_default();
            if cell.is_empty() || cell.starts_with(' ') {
                // An empty cell (a second key of one column): spaces only
                // up to the next column.
                continue;
            }
            if start > 0 {
                assert_eq!(&r[start - 2..start], "  ", "{name}: {r:?}\n{text}");
            }
        }
        assert!(
            rows.iter()
                .any(|r| r.get(start..).is_some_and(|c| !c.starts_with(' '))),
            "{name} has no cell where its header starts\n{text}"
        );
    }
    for name in right {
        let end = find(name) + name.len();
        for r in &rows {
            assert!(
                r.as_bytes().get(end - 1).is_some_and(|b| *b != b' '),
                "{name} not right-aligned: {r:?}\n{text}"
            );
            let after = r.get(end..end + 2).unwrap_or_default();
            assert!(after.is_empty() || after == "  ", "{name}: {r:?}\n{text}");
        }
    }
}

/// `status` and the run summary with a 60-character table name and a
/// 60-character column name next to short ones: the columns of every row
/// line up with the header.
async fn tables_stay_aligned_with_long_names(t: TestDb) {
    let mut long = format!("{}_", t.table_name("wide"));
    while long.len() < 60 {
        long.push('w');
    }
    long.truncate(60);
    let column = "c".repeat(60);
    // Two tables in one config: the long names, and short ones.
    let tb1 = t.plaintext_table(&long, &column, 1500).await;
    let tb2 = t.plaintext_table(&t.table_name("n"), "x", 4).await;
    let (k1, k2) = (t.key("k1"), t.key("k2"));
    let enc = t
        .keyturn(&Cfg::new(&[&tb1, &tb2], &[&k1], "k1"), &["encrypt"])
        .await
        .expect(0);
    assert_aligned(
        &enc.stdout,
        2,
        &["COLUMN"],
        &["ENCRYPTED", "SKIPPED", "RETRIED", "FAILED"],
    );
    assert!(enc.stdout.contains("1,500"), "digits grouped: {enc}");
    let cfg = Cfg::new(&[&tb1, &tb2], &[&k1, &k2], "k2");
    let st = t.keyturn(&cfg, &["status"]).await.expect(0);
    assert!(st.stdout.contains(&format!("{long}.{column}")), "{st}");
    assert_aligned(
        &st.stdout,
        2,
        &["COLUMN", "CODEC"],
        &["ROWS", "NULL", "UNDER CURRENT KEY", "TO ROTATE"],
    );
    assert_aligned(&st.stdout, 2, &["COLUMN", "KEY"], &["VALUES", "SHARE"]);
    let rot = t.keyturn(&cfg, &["rotate"]).await.expect(0);
    assert_aligned(
        &rot.stdout,
        2,
        &["COLUMN"],
        &["ROTATED", "SKIPPED", "RETRIED", "FAILED"],
    );
    // Into a pipe nothing wraps: one line per row, whatever its length.
    assert!(
        rot.stdout
            .lines()
            .any(|l| l.contains(&format!("{long}.{column}")) && l.contains("1,500")),
        "{rot}"
    );
}

/// Ctrl-C during a rotation: the progress line says "interrupted at N
/// rows", not "done"; exit 130.
async fn interrupted_run_says_interrupted(t: TestDb) {
    let (_tb, cfg) = encrypted(&t, &t.table_name("sigint"), "secret", 3000).await;
    let mut p = t.spawn(&cfg, &["rotate", "--max-rows-per-sec", "1000"]);
    p.wait_stderr("values to process", Duration::from_secs(60))
        .await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    p.sigint();
    let out = p.wait(Duration::from_secs(60)).await.expect(130);
    let line = out
        .stderr
        .lines()
        .find(|l| l.contains("interrupted at "))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(line.contains(" of 3,000 rows"), "{line:?}\n{out}");
    assert!(!out.stderr.contains(": done,"), "{out}");
    assert!(out.stdout.contains("interrupted"), "{out}");
}

fn set_mode(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}
