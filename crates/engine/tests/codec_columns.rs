//! Columns in other frameworks' formats, rotated in place by the engine: the
//! values stay in the framework's format, under the new key.

use base64::Engine as _;
use keyturn_db::{ConnectOptions, Database, PkValue};
use keyturn_engine::{NoProgress, Operation, RunOptions, VerifyOptions};
use keyturn_ops::Config;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

fn fernet_key(b: u8) -> String {
    base64::engine::general_purpose::URL_SAFE.encode([b; 32])
}

#[tokio::test(flavor = "multi_thread")]
async fn fernet_column_rotates_in_place_and_keeps_its_format() {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("app.db");
    let keys = dir.path().join("fernet.keys");
    std::fs::write(
        &keys,
        format!(
            "# django FERNET_KEYS\nold={}\nnew={}\n",
            fernet_key(1),
            fernet_key(2)
        ),
    )
    .unwrap();
    let cfg_text = |primary: &str| {
        format!(
            r#"
[database]
url = "sqlite://{db}"
[keyrings.django]
sources = ["file:{keys}"]
primary = "{primary}"
[[target]]
table = "users"
primary_key = "id"
columns = [{{ name = "otp_secret", codec = "fernet", keyring = "django" }}]
"#,
            db = db_path.display(),
            keys = keys.display()
        )
    };
    let db: Arc<dyn Database> = keyturn_db::connect(
        &format!("sqlite://{}", db_path.display()),
        &ConnectOptions {
            max_connections: 4,
            create_if_missing: true,
            lock_timeout: None,
        },
    )
    .await
    .unwrap();
    db.execute_script("CREATE TABLE users (id INTEGER PRIMARY KEY, otp_secret TEXT)")
        .await
        .unwrap();

    // The application wrote Fernet tokens under "old".
    let cfg = Config::parse(&cfg_text("old")).unwrap();
    let rings = keyturn_ops::load_rings(&cfg, None, None, None).unwrap();
    let plan = keyturn_engine::plan::resolve(db.as_ref(), &cfg.targets, Some(&rings), None, None)
        .await
        .unwrap();
    let col = &plan.columns[0];
    for id in 1..=300 {
        let token = col
            .codec
            .encrypt(col.ring().unwrap(), format!("secret {id}").as_bytes(), &[])
            .unwrap();
        assert!(token.starts_with(b"gAAAAA"));
        let sql = format!(
            "INSERT INTO users VALUES ({id}, '{}')",
            String::from_utf8(token).unwrap()
        );
        db.execute_script(&sql).await.unwrap();
    }
    db.execute_script("INSERT INTO users VALUES (301, NULL)")
        .await
        .unwrap();

    // Rotate to "new".
    let cfg = Config::parse(&cfg_text("new")).unwrap();
    let rings = keyturn_ops::load_rings(&cfg, None, None, None).unwrap();
    let plan = keyturn_engine::plan::resolve(db.as_ref(), &cfg.targets, Some(&rings), None, None)
        .await
        .unwrap();
    let status = keyturn_engine::status::status(db.as_ref(), &plan, &Default::default())
        .await
        .unwrap();
    // Fernet names no key: the census counts the tokens as Fernet values
    // whose key is decided by decryption, never as plaintext.
    let c = &status.columns[0];
    assert_eq!(
        (c.keyless, c.unrecognized, c.nulls),
        (300, 0, 1),
        "{status:?}"
    );
    assert!(
        c.note
            .as_deref()
            .unwrap_or_default()
            .contains("decided by decryption"),
        "{status:?}"
    );
    // --deep decrypts them: all under "old", none under the primary yet.
    let deep = keyturn_engine::status::status(
        db.as_ref(),
        &plan,
        &keyturn_engine::StatusOptions {
            deep: true,
            batch_size: 50,
        },
    )
    .await
    .unwrap();
    let c = &deep.columns[0];
    assert_eq!(
        (c.keyless, c.needs_rotation, c.under_current),
        (0, 300, 0),
        "{deep:?}"
    );
    assert_eq!(c.by_key[0].key_id, "old");
    let opts = RunOptions {
        batch_size: 64,
        workers: 2,
        max_rows_per_sec: None,
        dry_run: false,
        actor: "t".into(),
        skip_unknown_keys: false,
    };
    let s = keyturn_engine::run::run(
        db.clone(),
        &plan,
        Operation::Rotate,
        opts.clone(),
        Arc::new(NoProgress),
        Arc::new(AtomicBool::new(false)),
    )
    .await
    .unwrap();
    assert_eq!(
        (s.columns[0].written, s.columns[0].failed),
        (300, 0),
        "{s:?}"
    );
    // A second run finds every value already under "new" (by trial decryption).
    let s = keyturn_engine::run::run(
        db.clone(),
        &plan,
        Operation::Rotate,
        opts,
        Arc::new(NoProgress),
        Arc::new(AtomicBool::new(false)),
    )
    .await
    .unwrap();
    assert_eq!(
        (s.columns[0].written, s.columns[0].skipped),
        (0, 300),
        "{s:?}"
    );
    let v = keyturn_engine::verify::verify(
        db.as_ref(),
        &plan,
        &VerifyOptions {
            deep: true,
            batch_size: 100,
            ..Default::default()
        },
        &NoProgress,
    )
    .await
    .unwrap();
    assert!(v.ok, "{v:?}");
    // Plain verify cannot read Fernet's key in SQL: it decides by
    // decrypting, and says so; it never fails a correct rotation.
    let v = keyturn_engine::verify::verify(
        db.as_ref(),
        &plan,
        &VerifyOptions {
            deep: false,
            batch_size: 100,
            ..Default::default()
        },
        &NoProgress,
    )
    .await
    .unwrap();
    assert!(v.ok, "{v:?}");
    assert_eq!(
        v.columns[0].counted_by,
        keyturn_engine::CountedBy::Decryption
    );
    assert_eq!(v.columns[0].under_current, 300);

    // The values are Fernet tokens the app can read with only the new key.
    let only_new = keyturn_codecs::load_ring(
        &keyturn_codecs::CodecConfig::Fernet {},
        &[("new", &fernet_key(2))],
        Some("new"),
        &[],
    )
    .unwrap();
    let col = &plan.columns[0];
    let rows = db
        .fetch_rows(&col.col, &[vec![PkValue::Int(7)]])
        .await
        .unwrap();
    let token = rows[0].value.clone();
    assert!(token.starts_with(b"gAAAAA"));
    let opened = col.codec.decrypt(&only_new, &token, &[]).unwrap();
    assert_eq!(&opened.plaintext[..], b"secret 7");
}

#[test]
fn foreign_key_errors_do_not_echo_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("bad.keys");
    let material = "bm90LWEtcmVhbC1mZXJuZXQta2V5LWF0LWFsbA";
    std::fs::write(&keys, format!("old={material}\n")).unwrap();
    let cfg = Config::parse(&format!(
        r#"
[database]
url = "sqlite://x.db"
[keyrings.django]
sources = ["file:{}"]
primary = "old"
[[target]]
table = "users"
primary_key = "id"
columns = [{{ name = "otp_secret", codec = "fernet", keyring = "django" }}]
"#,
        keys.display()
    ))
    .unwrap();
    let e = keyturn_ops::load_rings(&cfg, None, None, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("old") && !e.contains(&material[..12]), "{e}");
}
