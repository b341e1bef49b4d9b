//! `keyturn demo`: the whole job on a SQLite file, start to finish.

use crate::app::{conclude, default_actor, execute};
use crate::cli::DemoArgs;
use crate::exit::Exit;
use crate::output;
use anyhow::{Context, Result};
use keyturn_engine::{Operation, RunOptions, RunSummary};
use keyturn_format::{Algorithm, KeyId, KeySpec};
use keyturn_ops::{Config, RunAudit, Selection, Session};
use std::io::Write;
use std::path::Path;

const FIRST: [&str; 12] = [
    "Amelia", "Oliver", "Isla", "George", "Ava", "Noah", "Mia", "Arthur", "Freya", "Leo", "Lily",
    "Oscar",
];
const LAST: [&str; 10] = [
    "Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Evans", "Thomas", "Roberts", "Khan",
];

/// Deterministic fake patient `i`: name, phone (every 50th NULL), NINO.
fn patient(i: u64) -> (String, Option<String>, String) {
    let h = i.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17);
    let name = format!(
        "{} {}",
        FIRST[(h % 12) as usize],
        LAST[((h >> 8) % 10) as usize]
    );
    let phone = (!i.is_multiple_of(50)).then(|| format!("+44 7700 {:06}", h % 1_000_000));
    let letters = b"ABCEGHJKLMNPRSTWXYZ";
    let l1 = letters[((h >> 20) % letters.len() as u64) as usize] as char;
    let l2 = letters[((h >> 28) % letters.len() as u64) as usize] as char;
    let suffix = (b'A' + ((h >> 36) % 4) as u8) as char;
    let nino = format!("{l1}{l2}{:06}{suffix}", (h >> 40) % 1_000_000);
    (name, phone, nino)
}

fn write_private(path: &Path, text: &str) -> Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// The demo's config. Its paths are relative: keyturn resolves them against
/// the config file's folder, so the config works from any directory.
fn config_text(primary: &str) -> String {
    format!(
        r#"# Written by `keyturn demo`. A config for your own database looks the same:
# point database.url at it and list your tables and encrypted columns.
[database]
# Relative paths (here and in file: key sources) are read from this file's folder.
url = "sqlite://{DB_FILE}"

[keys]
# Where key specs come from: env:NAME, file:PATH or stdin. Never the keys themselves.
sources = ["file:{KEYS_FILE}"]
primary = "{primary}"

[rotation]
batch_size = 5000

[[target]]
table = "patients"
primary_key = "id"
columns = [
  {{ name = "phone", encoding = "text", context = true }},
  {{ name = "nino", encoding = "binary", context = true }},
]
"#
    )
}

const DB_FILE: &str = "demo.db";
const KEYS_FILE: &str = "keys";
const CONFIG_FILE: &str = "keyturn.toml";

/// Refuses to run over an earlier demo's files unless `force`: the demo
/// never overwrites a config or a key file by surprise.
fn check_fresh(dir: &Path, force: bool) -> Result<()> {
    if force {
        return Ok(());
    }
    if let Some(f) = [CONFIG_FILE, KEYS_FILE, DB_FILE]
        .iter()
        .map(|f| dir.join(f))
        .find(|p| p.exists())
    {
        anyhow::bail!(
            "{} already exists and the demo never overwrites files: pass --force to start the demo in {} afresh (its database, config and key file are replaced), or --dir DIR for another folder",
            f.display(),
            dir.display()
        );
    }
    Ok(())
}

pub async fn run(args: &DemoArgs, json: bool) -> Result<Exit> {
    let dir = &args.dir;
    check_fresh(dir, args.force)?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for f in [DB_FILE, "demo.db-wal", "demo.db-shm"] {
        match std::fs::remove_file(dir.join(f)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("removing {}", dir.join(f).display()));
            }
            _ => {}
        }
    }
    let say = |s: &str| {
        if !json {
            outln!("{s}");
        }
    };
    let n = args.rows;
    say(&format!(
        "1. Creating {} with {n} sample patients (name, phone, national insurance number) in plaintext",
        dir.join(DB_FILE).display()
    ));
    let url = format!("sqlite://{}", dir.join(DB_FILE).display());
    let db = keyturn_ops::session::connect_creating(&url).await?;
    db.execute_script(
        "CREATE TABLE patients (id INTEGER PRIMARY KEY, name TEXT NOT NULL, phone TEXT, nino BLOB)",
    )
    .await?;
    let mut i = 1;
    while i <= n {
        let end = (i + 2000).min(n + 1);
        let values: Vec<String> = (i..end)
            .map(|k| {
                let (name, phone, nino) = patient(k);
                let phone = phone
                    .map(|p| format!("'{p}'"))
                    .unwrap_or_else(|| "NULL".into());
                format!("({k}, '{name}', {phone}, CAST('{nino}' AS BLOB))")
            })
            .collect();
        db.execute_script(&format!(
            "INSERT INTO patients (id, name, phone, nino) VALUES {}",
            values.join(",")
        ))
        .await?;
        i = end;
    }
    db.close().await;

    let k1 = KeySpec::generate(KeyId::new("k1")?, Algorithm::Aes256Gcm)?;
    let keys_path = dir.join(KEYS_FILE);
    let config_path = dir.join(CONFIG_FILE);
    write_private(
        &keys_path,
        &format!(
            "# demo keys: in production keep keys in a secret manager\n{}\n",
            &*k1.to_spec_string()
        ),
    )?;
    std::fs::write(&config_path, config_text("k1"))
        .with_context(|| format!("writing {}", config_path.display()))?;
    say(&format!(
        "2. Generated key k1 into {} and wrote {}; encrypting the plaintext columns under k1 (`keyturn encrypt`)",
        keys_path.display(),
        config_path.display()
    ));
    // Run summaries: printed as they come, or gathered into one JSON document.
    let mut runs: Vec<RunSummary> = Vec::new();
    let opts = |dry| RunOptions {
        batch_size: 5000,
        // SQLite's default (engine config `workers_for`): one writer.
        workers: 1,
        max_rows_per_sec: None,
        dry_run: dry,
        actor: default_actor(),
        skip_unknown_keys: false,
    };
    let all = Selection::default();
    let audit = RunAudit::default();
    let code = run_step(
        &config_path,
        &all,
        Operation::Encrypt,
        opts(false),
        json,
        &audit,
        &mut runs,
    )
    .await?;
    if code != Exit::Ok {
        return Ok(code);
    }

    let k2 = KeySpec::generate(KeyId::new("k2")?, Algorithm::Aes256Gcm)?;
    write_private(
        &keys_path,
        &format!(
            "# demo keys: in production keep keys in a secret manager\n{}\n{}\n",
            &*k1.to_spec_string(),
            &*k2.to_spec_string()
        ),
    )?;
    std::fs::write(&config_path, config_text("k2"))?;
    say(
        "\n3. Time to rotate: generated k2, added it to the key file and made it the current key (k1 stays, decrypt-only). Where we stand (`keyturn status`):\n",
    );
    let session = Session::open(Config::load(&config_path)?, &all, 4).await?;
    let before = keyturn_ops::verify::status(&session, false).await;
    session.close().await;
    let before = before?.report;
    if !json {
        output::print_status(&before, &[], false)?;
    }
    say(
        "\n4. Rotating every value from k1 to k2 (`keyturn rotate`): keyset batches, parallel crypto, one compare-and-swap UPDATE per batch, checkpoints",
    );
    let code = run_step(
        &config_path,
        &all,
        Operation::Rotate,
        opts(false),
        json,
        &audit,
        &mut runs,
    )
    .await?;
    if code != Exit::Ok {
        return Ok(code);
    }
    say(
        "\n5. Proving it (`keyturn verify --deep`: every value decrypts under k2, with its row's context):",
    );
    let session = Session::open(Config::load(&config_path)?, &all, 4).await?;
    let checked = async {
        let v = keyturn_ops::verify::verify(
            &session,
            &default_actor(),
            true,
            true,
            &keyturn_engine::NoProgress,
        )
        .await?;
        if let Some(e) = v.record_error {
            return Err(e);
        }
        let after = keyturn_ops::verify::status(&session, false).await?;
        Ok((v.report, after.report))
    }
    .await;
    session.close().await;
    let (report, after) = checked?;
    if json {
        output::print_json(&serde_json::json!({
            "runs": runs,
            "status_before_rotation": before,
            "status_after": after,
            "verify": report,
        }))?;
    } else {
        output::print_verify(&report, false)?;
        let cfg = config_path.display();
        let n = crate::table::group(n);
        outln!(
            r#"
What just happened: {n} rows were encrypted under k1, then re-encrypted under k2
while the table stayed readable (k1 and k2 both decrypt during the window).
Every value is bound to its table, column and row (context = true), so a
ciphertext copied to another row fails to decrypt.

Look around:
  keyturn --config {cfg} status
  keyturn --config {cfg} verify --deep
  keyturn --config {cfg} audit list          (every run above is in the audit trail)
  keyturn --config {cfg} report --html report.html
  sqlite3 {db} "SELECT id, phone FROM patients LIMIT 3"

On your own database:
  1. keyturn keys generate --id k2 >> /run/secrets/keyturn.keys   (or your secret manager)
  2. write keyturn.toml like {cfg}: database.url, key sources, primary = "k2",
     and a [[target]] per table with its encrypted columns
  3. keyturn status && keyturn rotate --dry-run && keyturn rotate && keyturn verify --deep"#,
            db = dir.join(DB_FILE).display()
        );
    }
    Ok(if report.ok {
        Exit::Ok
    } else {
        Exit::VerifyFailed
    })
}

/// One audited run of the demo: its summary printed at once, or kept for
/// the demo's one JSON document.
async fn run_step(
    config_path: &Path,
    all: &Selection,
    op: Operation,
    opts: RunOptions,
    json: bool,
    audit: &RunAudit,
    runs: &mut Vec<RunSummary>,
) -> Result<Exit> {
    let mut session = Session::open(Config::load(config_path)?, all, 4).await?;
    let report = execute(&mut session, op, opts, json, audit, None).await;
    session.close().await;
    let report = report?;
    let summary = report.summary.clone();
    let code = conclude(report, json, !json)?;
    runs.push(summary);
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_to_overwrite_without_force() {
        let tmp = tempfile::tempdir().unwrap();
        check_fresh(tmp.path(), false).unwrap();
        std::fs::write(tmp.path().join(KEYS_FILE), "x").unwrap();
        let e = check_fresh(tmp.path(), false).unwrap_err().to_string();
        assert!(
            e.contains("keys already exists") && e.contains("--force"),
            "{e}"
        );
        check_fresh(tmp.path(), true).unwrap();
    }

    /// The written config parses, its relative paths resolved against its
    /// folder.
    #[test]
    fn config_paths_are_relative_to_the_config() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(CONFIG_FILE);
        std::fs::write(&path, config_text("k1")).unwrap();
        let cfg = Config::load(&path).unwrap();
        assert_eq!(
            cfg.database.url,
            format!("sqlite://{}", tmp.path().join(DB_FILE).display())
        );
        assert_eq!(
            cfg.keys.sources,
            vec![format!("file:{}", tmp.path().join(KEYS_FILE).display())]
        );
    }

    #[test]
    fn fake_patients_are_deterministic_and_plausible() {
        assert_eq!(patient(7), patient(7));
        let (_, phone, nino) = patient(3);
        assert!(phone.unwrap().starts_with("+44 7700 "));
        assert_eq!(nino.len(), 9);
        assert!(patient(50).1.is_none());
    }
}
