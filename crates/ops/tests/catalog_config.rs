//! The optional `[catalog]` section of the config.

use keyturn_ops::Config;

const BASE: &str = r#"
[database]
url = "sqlite://x.db"

[[target]]
table = "t"
primary_key = "id"
columns = [{ name = "c" }]
"#;

#[test]
fn catalog_section_is_optional_with_defaults() {
    assert!(Config::parse(BASE).unwrap().catalog.is_none());
    let cfg = Config::parse(&format!(
        "{BASE}\n[catalog]\nkek = \"local\"\nmaster_key = \"file:/run/mk\"\n"
    ))
    .unwrap();
    let c = cfg.catalog.unwrap();
    assert_eq!(c.name, "default");
    assert_eq!(c.safety_period_hours, 24);
    assert_eq!(c.retention_days, 30);
    let cfg = Config::parse(&format!(
        "{BASE}\n[catalog]\nname = \"prod\"\nkek = \"vault-transit\"\naddress = \"http://127.0.0.1:8200\"\nkey = \"keyturn\"\ntoken = \"env:BAO_TOKEN\"\nsafety_period_hours = 1\nretention_days = 2\n"
    ))
    .unwrap();
    assert_eq!(cfg.catalog.unwrap().kek.kind(), "vault-transit");
}

#[test]
fn catalog_section_errors_name_the_section() {
    for (bad, why) in [
        ("kek = \"gcp\"", "catalog"),
        ("kek = \"aws-kms\"", "key_id"),
        (
            "kek = \"local\"\nmaster_key = \"bWFzdGVy\"",
            "env:NAME, file:PATH",
        ),
        ("kek = \"local\"\nbogus = 1", "bogus"),
    ] {
        let e = Config::parse(&format!("{BASE}\n[catalog]\n{bad}\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains(why), "{bad}: {e}");
        assert!(!e.contains("bWFzdGVy"), "{e}");
    }
}
