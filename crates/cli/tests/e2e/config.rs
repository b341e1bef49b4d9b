//! Config, flags and logins behave as a user expects (issue #13, section 9):
//! every scenario runs against SQLite, PostgreSQL and MariaDB through the
//! real `keyturn` binary, as in `engine.rs`.
//!
//! Run one backend: `cargo test -p keyturn --test e2e config::postgres::`.

use crate::common::*;
use sqlx::Connection as _;

scenarios!(
    flags_are_range_checked,
    relative_paths_and_key_file_permissions,
    catalog_master_key_file,
    password_variable_in_the_url,
    least_privilege_login,
);

// ---------------------------------------------------------------------------
// Shared set-up
// ---------------------------------------------------------------------------

/// A table with a text column bound to its row, `n` rows encrypted under
/// k1 by a privileged `keyturn encrypt` (which creates keyturn's tables).
/// Returns the table, the plaintexts and keys k1, k2.
async fn encrypted(t: &TestDb, what: &str, n: i64) -> (Table, Data, Key, Key) {
    let tb = Table::new(
        &t.table_name(what),
        &[("id", PkKind::Int)],
        &[("phone", ColKind::Text, true)],
    );
    t.create_table(&tb, &[]).await;
    let plain: Data = (1..=n)
        .map(|i| {
            let v = (i % 7 != 0).then(|| format!("+44 7700 {i:06}").into_bytes());
            (int_pk(i), vec![v])
        })
        .collect();
    t.insert(&tb, &plain).await;
    let (k1, k2) = (t.key("k1"), t.key("k2"));
    let out = t
        .keyturn(&Cfg::new(&[&tb], &[&k1], "k1"), &["--json", "encrypt"])
        .await
        .expect(0);
    assert_eq!(out.json()["outcome"], "ok", "{out}");
    (tb, plain, k1, k2)
}

/// `url` with its userinfo replaced by `userinfo`.
fn with_login(url: &str, userinfo: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a server URL");
    let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    format!("{scheme}://{userinfo}@{host}")
}

/// The test database's name on the server.
async fn database_name(t: &TestDb) -> String {
    let sql = match t.kind {
        Kind::Postgres => "SELECT current_database()::text",
        _ => "SELECT DATABASE()",
    };
    t.strings(sql).await[0][0].clone()
}

/// keyturn's tables in the test database.
async fn keyturn_table_names(t: &TestDb) -> Vec<String> {
    let sql = match t.kind {
        Kind::Postgres => {
            "SELECT tablename::text FROM pg_tables WHERE schemaname = current_schema() AND tablename LIKE 'keyturn%' ORDER BY 1"
        }
        Kind::MariaDb => {
            "SELECT CAST(TABLE_NAME AS CHAR) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME LIKE 'keyturn%' ORDER BY 1"
        }
        Kind::Sqlite => {
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'keyturn%' ORDER BY 1"
        }
    };
    t.strings(sql)
        .await
        .into_iter()
        .map(|r| r[0].clone())
        .collect()
}

/// Server logins made by a scenario, dropped at its end even when it fails.
struct Logins {
    names: Vec<String>,
}

impl Logins {
    /// Creates each `(name, password)` login with no privileges (PostgreSQL:
    /// and no CREATE on the public schema; MariaDB: from 127.0.0.1 and
    /// localhost).
    async fn create(t: &TestDb, logins: &[(&str, &str)]) -> Logins {
        for (name, pw) in logins {
            match t.kind {
                Kind::Postgres => {
                    t.exec(&format!("CREATE ROLE {name} LOGIN PASSWORD '{pw}'"))
                        .await;
                    t.exec(&format!("REVOKE CREATE ON SCHEMA public FROM {name}"))
                        .await;
                }
                _ => {
                    for host in ["127.0.0.1", "localhost"] {
                        t.exec(&format!(
                            "CREATE USER '{name}'@'{host}' IDENTIFIED BY '{pw}'"
                        ))
                        .await;
                    }
                }
            }
        }
        Logins {
            names: logins.iter().map(|(n, _)| (*n).to_owned()).collect(),
        }
    }

    /// Grants `privileges` on `table` to `name`.
    async fn grant(t: &TestDb, name: &str, privileges: &str, table: &str) {
        match t.kind {
            Kind::Postgres => {
                t.exec(&format!("GRANT {privileges} ON {table} TO {name}"))
                    .await
            }
            _ => {
                let db = database_name(t).await;
                for host in ["127.0.0.1", "localhost"] {
                    t.exec(&format!(
                        "GRANT {privileges} ON `{db}`.`{table}` TO '{name}'@'{host}'"
                    ))
                    .await;
                }
            }
        }
    }

    async fn drop_all(&self, t: &TestDb) {
        for name in &self.names {
            match t.kind {
                Kind::Postgres => {
                    // Privileges in this database first, or DROP ROLE refuses.
                    t.exec(&format!("DROP OWNED BY {name}")).await;
                    t.exec(&format!("DROP ROLE {name}")).await;
                }
                _ => {
                    t.exec(&format!(
                        "DROP USER IF EXISTS '{name}'@'127.0.0.1', '{name}'@'localhost'"
                    ))
                    .await
                }
            }
        }
    }
}

/// Runs `checks`, then drops the logins whatever happened, then fails if
/// the checks failed.
async fn with_logins<F>(t: &TestDb, logins: Logins, checks: F)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let result = tokio::spawn(checks).await;
    logins.drop_all(t).await;
    if let Err(e) = result {
        if e.is_panic() {
            std::panic::resume_unwind(e.into_panic());
        }
        panic!("checks did not finish: {e}");
    }
}

/// Whether `url`'s login may create a table (it must not, for the
/// least-privilege checks to mean anything).
async fn can_create_tables(kind: Kind, url: &str, probe: &str) -> bool {
    let sql = format!("CREATE TABLE {probe} (a INT)");
    let r = match kind {
        Kind::Postgres => {
            let mut c = sqlx::PgConnection::connect(url).await.expect("login");
            let r = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut c)
                .await;
            let _ = c.close().await;
            r.map(|_| ())
        }
        _ => {
            let mut c = sqlx::MySqlConnection::connect(url).await.expect("login");
            let r = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut c)
                .await;
            let _ = c.close().await;
            r.map(|_| ())
        }
    };
    r.is_ok()
}

// ---------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------

/// `--batch-size`, `--workers` and `--max-rows-per-sec` get the config's
/// ranges: out of range is a usage error (exit 2) naming the flag and the
/// range, nothing is written; the bounds themselves work.
async fn flags_are_range_checked(t: TestDb) {
    let (tb, plain, k1, k2) = encrypted(&t, "flags", 30).await;
    let before = t.read(&tb).await;
    let cfg = Cfg::new(&[&tb], &[&k1, &k2], "k2");
    for (flag, value, says) in [
        ("--batch-size", "0", "0 is not in 1..=100000"),
        ("--batch-size", "100001", "100001 is not in 1..=100000"),
        ("--workers", "0", "0 is not in 1..=64"),
        ("--workers", "65", "65 is not in 1..=64"),
        ("--max-rows-per-sec", "0", "0 would let no row through"),
        ("--batch-size", "many", "invalid digit"),
    ] {
        for op in ["rotate", "encrypt"] {
            let out = t.keyturn(&cfg, &[op, flag, value]).await.expect(2);
            assert!(
                out.stderr.contains(flag) && out.stderr.contains(says),
                "{out}"
            );
        }
    }
    assert_eq!(t.read(&tb).await, before, "a refused flag wrote something");
    let out = t
        .keyturn(
            &cfg,
            &[
                "--json",
                "rotate",
                "--batch-size",
                "1",
                "--workers",
                "64",
                "--max-rows-per-sec",
                "100000",
            ],
        )
        .await
        .expect(0);
    assert_eq!(out.json()["outcome"], "ok", "{out}");
    assert_decrypts(
        &tb,
        &t.read(&tb).await,
        &plain,
        &ring(&[&k1, &k2], "k2"),
        "k2",
    );
}

/// A relative `file:` key source (and on SQLite a relative database path)
/// is read from the config file's folder, whatever the working directory;
/// a key file readable by others is named in a warning, once.
async fn relative_paths_and_key_file_permissions(t: TestDb) {
    use std::os::unix::fs::PermissionsExt;
    let (tb, _plain, k1, k2) = encrypted(&t, "relpath", 20).await;
    let keys = t.dir().join("relative.keys");
    std::fs::write(&keys, format!("# both keys\n{}\n{}\n", k1.spec, k2.spec)).unwrap();
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut cfg = Cfg::new(&[&tb], &[], "k2");
    cfg.sources = Some(vec!["file:relative.keys".into()]);
    if t.kind == Kind::Sqlite {
        // The test's database is test.db in the config's folder.
        cfg.url = Some("sqlite://test.db".into());
    }
    let warning = format!(
        "warning: key file {} is readable by others (mode 0644); chmod 600 it\n",
        keys.display()
    );
    // The binary runs in the crate's folder, not the config's.
    let out = t.keyturn(&cfg, &["status"]).await.expect(0);
    assert_eq!(out.stderr.matches(&warning).count(), 1, "{out}");
    let out = t.keyturn(&cfg, &["--json", "rotate"]).await.expect(0);
    assert_eq!(out.json()["outcome"], "ok", "{out}");
    assert_eq!(out.stderr.matches(&warning).count(), 1, "{out}");
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = t.keyturn(&cfg, &["verify"]).await.expect(0);
    assert!(!out.stderr.contains("chmod"), "{out}");
    // A missing relative file is named with the path it was looked for at.
    cfg.sources = Some(vec!["file:no-such.keys".into()]);
    let out = t.keyturn(&cfg, &["status"]).await.expect(1);
    assert!(
        out.stderr
            .contains(&t.dir().join("no-such.keys").display().to_string()),
        "{out}"
    );
}

/// The key catalog's master key in a file: a relative `file:` path is read
/// from the config's folder, and a file open to others is warned about.
async fn catalog_master_key_file(t: TestDb) {
    use std::os::unix::fs::PermissionsExt;
    let tb = Table::new(
        &t.table_name("catmk"),
        &[("id", PkKind::Int)],
        &[("phone", ColKind::Text, true)],
    );
    t.create_table(&tb, &[]).await;
    let mk = t.dir().join("master.key");
    std::fs::write(&mk, format!("{}\n", t.key("mk1").spec)).unwrap();
    std::fs::set_permissions(&mk, std::fs::Permissions::from_mode(0o640)).unwrap();
    let mut cfg = Cfg::new(&[&tb], &[], "k1");
    cfg.primary = None;
    cfg.extra_toml = "[catalog]\nkek = \"local\"\nmaster_key = \"file:master.key\"\n".into();
    let warning = format!(
        "warning: master key file {} is readable by others (mode 0640); chmod 600 it\n",
        mk.display()
    );
    let out = t
        .keyturn(&cfg, &["--json", "keys", "add", "--id", "k1"])
        .await
        .expect(0);
    assert_eq!(out.json()["changed"][0]["state"], "pending", "{out}");
    assert_eq!(out.stderr.matches(&warning).count(), 1, "{out}");
    std::fs::set_permissions(&mk, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = t.keyturn(&cfg, &["keys", "self-test"]).await;
    assert!(!out.stderr.contains("chmod"), "{out}");
    let out = t.keyturn(&cfg, &["keys", "list"]).await.expect(0);
    assert!(out.stdout.contains("k1"), "{out}");
}

/// `${VAR}` in the URL's userinfo is percent-encoded: a password with `@`,
/// `/`, `#`, `?`, `%` and `:` works as it is. PostgreSQL here trusts local
/// logins, so there the check is that keyturn connects as that login (it
/// is refused the table until granted it); MariaDB checks the password.
/// On SQLite the variable lands in the path, inserted as it is.
async fn password_variable_in_the_url(t: TestDb) {
    let (tb, _plain, k1, _k2) = encrypted(&t, "pwvar", 10).await;
    let mut cfg = Cfg::new(&[&tb], &[&k1], "k1");
    if t.kind == Kind::Sqlite {
        cfg.url = Some("sqlite://${KT_TEST_DB_DIR}/test.db".into());
        cfg.env = vec![("KT_TEST_DB_DIR".into(), t.dir().display().to_string())];
        t.keyturn(&cfg, &["status"]).await.expect(0);
        return;
    }
    let login = format!("kt_pw_{}", t.tag);
    let pw = format!("p@ss/w#rd?%:{}", t.tag);
    t.add_secret(&pw);
    t.add_secret(&pw.replace('@', "%40").replace('/', "%2F"));
    let logins = Logins::create(&t, &[(&login, &pw)]).await;
    let t2 = t.clone();
    with_logins(&t, logins, async move {
        let t = t2;
        cfg.url = Some(with_login(
            &t.url,
            &format!("{login}:${{KT_TEST_DB_PASSWORD}}"),
        ));
        cfg.env = vec![("KT_TEST_DB_PASSWORD".into(), pw.clone())];
        // Connected as the login: refused the table it has no grant on.
        let out = t.keyturn(&cfg, &["status"]).await.expect(1);
        assert!(out.stderr.contains("denied"), "{out}");
        if t.kind == Kind::MariaDb {
            assert!(out.stderr.contains(&login), "{out}");
        }
        Logins::grant(&t, &login, "SELECT", &tb.name).await;
        let out = t.keyturn(&cfg, &["--json", "status"]).await.expect(0);
        assert!(out.json()["columns"].is_array(), "{out}");
        if t.kind == Kind::MariaDb {
            // The server checks the password: a wrong one is refused.
            cfg.env = vec![("KT_TEST_DB_PASSWORD".into(), format!("{pw}x"))];
            let out = t.keyturn(&cfg, &["status"]).await.expect(1);
            assert!(out.stderr.contains("Access denied"), "{out}");
        }
    })
    .await;
}

/// A login that may read and update the target table and read and write
/// keyturn's existing tables, without CREATE, rotates; a read-only login
/// verifies with the right exit code and a warning that the result could
/// not be recorded; `--no-record` skips recording. On SQLite, a read-only
/// connection (`?mode=ro`) stands in for the read-only login.
async fn least_privilege_login(t: TestDb) {
    let (tb, plain, k1, k2) = encrypted(&t, "leastpriv", 40).await;
    let under_k1 = t.read(&tb).await;
    let tables = keyturn_table_names(&t).await;
    for needed in ["keyturn_audit", "keyturn_checkpoints", "keyturn_runs"] {
        assert!(tables.iter().any(|n| n == needed), "{needed} in {tables:?}");
    }
    let verifies = "SELECT COUNT(*) FROM keyturn_audit WHERE action = 'verify'";
    let not_recorded = "could not be recorded in the audit trail";
    if t.kind == Kind::Sqlite {
        let mut cfg = Cfg::new(&[&tb], &[&k1, &k2], "k2");
        t.keyturn(&cfg, &["rotate"]).await.expect(0);
        cfg.url = Some(format!("{}?mode=ro", t.url));
        let recorded = t.count(verifies).await;
        let out = t.keyturn(&cfg, &["verify"]).await.expect(0);
        assert!(out.stderr.contains(not_recorded), "{out}");
        let out = t.keyturn(&cfg, &["verify", "--no-record"]).await.expect(0);
        assert!(!out.stderr.contains("warning"), "{out}");
        t.set(&tb, &int_pk(1), 0, under_k1[&int_pk(1)][0].as_deref())
            .await;
        let out = t.keyturn(&cfg, &["--json", "verify"]).await.expect(4);
        assert_eq!(out.json()["ok"], false, "{out}");
        assert!(out.stderr.contains(not_recorded), "{out}");
        assert_eq!(t.count(verifies).await, recorded);
        return;
    }
    let rotator = format!("kt_rot_{}", t.tag);
    let reader = format!("kt_ro_{}", t.tag);
    let logins = Logins::create(&t, &[(&rotator, "rot-pw"), (&reader, "ro-pw")]).await;
    let t2 = t.clone();
    with_logins(&t, logins, async move {
        let t = t2;
        Logins::grant(&t, &rotator, "SELECT, UPDATE", &tb.name).await;
        Logins::grant(&t, &reader, "SELECT", &tb.name).await;
        // docs/OPERATIONS.md's grants: the audit trail is append-only.
        for k in &tables {
            let rw = if k == "keyturn_audit" {
                "SELECT, INSERT"
            } else {
                "SELECT, INSERT, UPDATE, DELETE"
            };
            Logins::grant(&t, &rotator, rw, k).await;
            Logins::grant(&t, &reader, "SELECT", k).await;
        }
        let rot_url = with_login(&t.url, &format!("{rotator}:rot-pw"));
        let ro_url = with_login(&t.url, &format!("{reader}:ro-pw"));
        let probe = format!("kt_probe_{}", t.tag);
        assert!(
            !can_create_tables(t.kind, &rot_url, &probe).await,
            "the rotating login may create tables: the check would prove nothing"
        );

        let mut cfg = Cfg::new(&[&tb], &[&k1, &k2], "k2");
        cfg.url = Some(rot_url);
        let out = t.keyturn(&cfg, &["--json", "rotate"]).await.expect(0);
        assert_eq!(out.json()["outcome"], "ok", "{out}");
        assert!(!out.stderr.contains("error"), "{out}");
        assert_decrypts(
            &tb,
            &t.read(&tb).await,
            &plain,
            &ring(&[&k1, &k2], "k2"),
            "k2",
        );

        cfg.url = Some(ro_url);
        let recorded = t.count(verifies).await;
        let out = t.keyturn(&cfg, &["verify"]).await.expect(0);
        assert!(out.stdout.contains("OK"), "{out}");
        assert!(
            out.stderr.contains("warning") && out.stderr.contains(not_recorded),
            "{out}"
        );
        let out = t
            .keyturn(&cfg, &["--json", "verify", "--deep"])
            .await
            .expect(0);
        assert_eq!(out.json()["ok"], true, "{out}");
        assert!(out.stderr.contains(not_recorded), "{out}");
        let out = t.keyturn(&cfg, &["verify", "--no-record"]).await.expect(0);
        assert!(!out.stderr.contains("warning"), "{out}");
        // One value back under k1: exit 4, recorded or not.
        t.set(&tb, &int_pk(1), 0, under_k1[&int_pk(1)][0].as_deref())
            .await;
        let out = t.keyturn(&cfg, &["verify"]).await.expect(4);
        assert!(out.stderr.contains(not_recorded), "{out}");
        let out = t
            .keyturn(&cfg, &["--json", "verify", "--no-record"])
            .await
            .expect(4);
        assert_eq!(out.json()["ok"], false, "{out}");
        assert!(!out.stderr.contains("warning"), "{out}");
        assert_eq!(
            t.count(verifies).await,
            recorded,
            "the read-only login recorded"
        );
        // status needs no more than the read-only login has.
        t.keyturn(&cfg, &["--json", "status"]).await.expect(0);
        // docs/OPERATIONS.md's verify login may append: recorded, no warning.
        Logins::grant(&t, &reader, "INSERT", "keyturn_audit").await;
        let out = t.keyturn(&cfg, &["verify"]).await.expect(4);
        assert!(!out.stderr.contains("warning"), "{out}");
        assert_eq!(t.count(verifies).await, recorded + 1);
    })
    .await;
}
