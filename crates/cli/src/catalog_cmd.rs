//! `keyturn keys add|list|promote|retire|destroy|restore|compromised|self-test`
//! and `keyturn kek rotate`: the key catalog (docs/CATALOG.md).

use crate::app::Session;
use crate::cli::{Cli, KekRotateArgs, KeysCommand, TargetArgs};
use crate::exit::Exit;
use crate::output;
use anyhow::{Context, Result};
use keyturn_catalog::{
    Catalog, CatalogConfig, CatalogEntry, CatalogError, InstanceStatus, KekConfig, Outcome,
};
use keyturn_db::{ConnectOptions, Database};
use keyturn_engine::EngineError;
use keyturn_format::{KeyId, Keyring, SecretKey};
use keyturn_kms::DekCache;
use keyturn_ops::Config;
use keyturn_ops::config_path;
use std::sync::Arc;

fn catalog_config(cfg: &Config) -> Result<CatalogConfig> {
    cfg.catalog.clone().ok_or_else(|| {
        EngineError::Config(
            "no [catalog] section in the config: the key catalog commands need one (docs/CATALOG.md)".into(),
        )
        .into()
    })
}

async fn open(cli: &Cli) -> Result<(Config, CatalogConfig, Arc<dyn Database>, Catalog)> {
    let cfg = Config::load(&config_path(cli.config.as_deref()))?;
    let cc = catalog_config(&cfg)?;
    let db = keyturn_db::connect(
        &cfg.database.url,
        &ConnectOptions {
            max_connections: 2,
            create_if_missing: false,
        },
    )
    .await?;
    let cat = Catalog::open(db.clone(), &cc.name, cc.policy()).await?;
    Ok((cfg, cc, db, cat))
}

/// The `[keys]` keyring from the catalog, for `status`, `rotate`, `verify`.
pub async fn load_ring(cfg: &Config, db: &Arc<dyn Database>) -> Result<Option<Arc<Keyring>>> {
    let Some(cc) = &cfg.catalog else {
        return Ok(None);
    };
    let kek = cc.kek.provider().await?;
    let cat = Catalog::open(db.clone(), &cc.name, cc.policy()).await?;
    let ring = cat
        .load_keyring(&DekCache::new(kek), cfg.keys.allow_retired)
        .await
        .with_context(|| format!("loading the keyring from key catalog {:?}", cc.name))?;
    Ok(Some(Arc::new(ring)))
}

pub async fn run_keys(cli: &Cli, cmd: &KeysCommand) -> Result<Exit> {
    if let KeysCommand::Retire { id, force } = cmd {
        return retire(cli, id, *force).await;
    }
    let (_cfg, cc, db, cat) = open(cli).await?;
    let result = match cmd {
        KeysCommand::List => {
            let list = cat.list().await;
            db.close().await;
            print_list(&list?, cli.json)?;
            return Ok(Exit::Ok);
        }
        KeysCommand::SelfTest => {
            let kek = cc.kek.provider().await?;
            let st = cat.self_test(&DekCache::new(kek)).await;
            db.close().await;
            if cli.json {
                output::print_json(&st)?;
            } else if st.ok {
                outln!(
                    "ok: primary {:?} encrypts and decrypts; {} keys loaded",
                    st.primary,
                    st.keys_loaded
                );
            } else {
                for p in &st.problems {
                    errln!("self-test failed: {p}");
                }
            }
            return Ok(if st.ok { Exit::Ok } else { Exit::Error });
        }
        KeysCommand::Add { id, alg, import } => {
            add(&cat, &cc, id.as_deref(), alg, import.as_deref()).await
        }
        KeysCommand::Instances { prune } => {
            let pruned = if *prune {
                cat.prune_instances().await
            } else {
                Ok(Vec::new())
            };
            let list = match pruned {
                Ok(p) => cat.instances().await.map(|l| (l, p)),
                Err(e) => Err(e),
            };
            db.close().await;
            let (list, pruned) = list?;
            print_instances(&list, &pruned, cc.instance_ttl_seconds, cli.json)?;
            return Ok(Exit::Ok);
        }
        KeysCommand::Promote { id, force } => cat.promote_with(id, *force).await.map(|o| vec![o]),
        KeysCommand::Destroy { id, force } => cat.destroy(id, *force).await.map(|o| vec![o]),
        KeysCommand::Restore { id, force } => cat.restore(id, *force).await.map(|o| vec![o]),
        KeysCommand::Compromised { id } => cat.mark_compromised(id).await.map(|o| vec![o]),
        KeysCommand::Generate { .. } | KeysCommand::Retire { .. } => {
            unreachable!("handled elsewhere")
        }
    };
    let force = matches!(
        cmd,
        KeysCommand::Destroy { force: true, .. }
            | KeysCommand::Restore { force: true, .. }
            | KeysCommand::Promote { force: true, .. }
    );
    let audited = match &result {
        Ok(outcomes) => audit_outcomes(cli, db.as_ref(), outcomes, force).await,
        Err(_) => Ok(()),
    };
    db.close().await;
    print_outcomes(&result?, cli.json)?;
    audited?;
    Ok(Exit::Ok)
}

/// `rotate --to NEW`: the staged rotation in one command. Each step is the
/// same as its own command (and audited as such); a failing step stops the
/// sequence with the catalog in a consistent state (rolling back is
/// `keys promote <old>`).
pub async fn rotate_to(
    cli: &Cli,
    args: &crate::cli::RunArgs,
    actor: String,
    new: &str,
) -> Result<Exit> {
    use keyturn_catalog::LifecycleState;
    if args.dry_run {
        return Err(EngineError::Usage(
            "--to changes the key catalog; preview with `keyturn rotate --dry-run` (without --to) after `keys add`".into(),
        )
        .into());
    }
    let say = |m: &str| {
        if !cli.json {
            errln!("{m}");
        }
    };
    let (_cfg, cc, db, cat) = open(cli).await?;
    // Every step that succeeded is audited, even when a later one fails.
    let mut outcomes = Vec::new();
    let steps = async {
        let entries = cat.list().await?;
        let old = entries
            .iter()
            .find(|e| e.state == LifecycleState::Primary)
            .map(|e| e.id.clone());
        if !entries.iter().any(|e| e.id == new) {
            outcomes.extend(add(&cat, &cc, Some(new), "aes256gcm", None).await?);
        }
        if old.as_deref() != Some(new) {
            outcomes.push(cat.promote(new).await?);
        }
        Ok::<_, CatalogError>(old)
    }
    .await;
    let audited = audit_outcomes(cli, db.as_ref(), &outcomes, false).await;
    db.close().await;
    let old = match steps {
        Ok(old) => old,
        Err(e) => {
            if matches!(
                &e,
                CatalogError::Refused(keyturn_catalog::Refusal::InstancesMissingKey { .. })
            ) {
                say(&format!(
                    "key {new:?} is in the catalog (pending) but not promoted: run `keyturn rotate --to {new}` again once the application instances named below have refreshed their keyring"
                ));
            }
            audited?;
            return Err(e.into());
        }
    };
    audited?;
    for o in &outcomes {
        for w in &o.warnings {
            say(&format!("warning: {w}"));
        }
        say(&format!("{}: key {}", o.action, o.key_id));
    }
    // Re-encrypt under NEW (an ordinary, audited rotate).
    let mut plain = args.clone();
    plain.to = None;
    let exit = crate::app::run_op(cli, &plain, keyturn_engine::Operation::Rotate, actor).await?;
    if exit != Exit::Ok {
        say(
            "rotate did not finish cleanly: the old key stays decrypt-only; fix the reported rows and run `keyturn rotate` again",
        );
        return Ok(exit);
    }
    let Some(old) = old.filter(|o| o != new) else {
        return Ok(Exit::Ok);
    };
    // Retire the old primary if it may already be retired; the refusal
    // (rows remain, safety period) says when instead.
    match retire(cli, &old, false).await {
        Ok(e) => Ok(e),
        Err(e) => match e.downcast_ref::<CatalogError>().map(CatalogError::kind) {
            Some("safety_period" | "rows_remain") => {
                say(&format!("{e:#}"));
                say(&format!(
                    "the old key {old:?} stays decrypt-only; retire it later with `keyturn keys retire {old}`"
                ));
                Ok(Exit::Ok)
            }
            _ => Err(e),
        },
    }
}

/// Appends one audit event per lifecycle change (and an `override` event
/// when a safety check was forced), after the catalog committed it.
async fn audit_outcomes(
    cli: &Cli,
    db: &dyn Database,
    outcomes: &[Outcome],
    forced: bool,
) -> Result<()> {
    use keyturn_audit::{AuditAction, NewEvent, Outcome as Audited};
    let actor = cli.actor.clone().unwrap_or_else(crate::app::default_actor);
    for o in outcomes {
        let action = match o.action.as_str() {
            "add" => AuditAction::KeyAdd,
            "promote" => AuditAction::KeyPromote,
            "retire" => AuditAction::KeyRetire,
            "destroy" => AuditAction::KeyDestroy,
            "compromised" => AuditAction::KeyCompromised,
            other => AuditAction::Other(format!("key.{other}")),
        };
        let changed: Vec<String> = o
            .changed
            .iter()
            .map(|e| format!("{} -> {}", e.id, e.state))
            .collect();
        let ev = NewEvent::new(action, &actor, Audited::Ok)
            .keys(std::iter::once(o.key_id.clone()))
            .detail("changed", changed)
            .detail("forced", forced)
            .detail("warnings", o.warnings.clone());
        keyturn_audit::append(db, &ev)
            .await
            .context("recording the key change in the audit trail")?;
        if forced {
            let ev = NewEvent::new(AuditAction::Override, &actor, Audited::Ok)
                .keys(std::iter::once(o.key_id.clone()))
                .reason(Some(&format!(
                    "--force on {} of key {}",
                    o.action, o.key_id
                )))
                .detail("warnings", o.warnings.clone());
            keyturn_audit::append(db, &ev)
                .await
                .context("recording the override in the audit trail")?;
        }
    }
    Ok(())
}

async fn add(
    cat: &Catalog,
    cc: &CatalogConfig,
    id: Option<&str>,
    alg: &str,
    import: Option<&str>,
) -> Result<Vec<Outcome>, CatalogError> {
    let kek = cc.kek.provider().await?;
    let mut keys: Vec<(KeyId, SecretKey)> = Vec::new();
    match import {
        Some(src) => {
            let source = keyturn_keys::KeySource::parse(src)
                .map_err(|e| CatalogError::Config(e.to_string()))?;
            let specs = keyturn_keys::load_source(&source)
                .map_err(|e| CatalogError::Config(e.to_string()))?;
            for s in specs {
                if id.is_none_or(|i| i == s.id.as_str()) {
                    keys.push((s.id, s.key));
                }
            }
            if keys.is_empty() {
                return Err(CatalogError::Config(format!(
                    "no key {:?} in {source}",
                    id.unwrap_or_default()
                )));
            }
        }
        None => {
            let alg = keyturn_catalog::parse_algorithm(alg)?;
            let id = match id {
                Some(i) => KeyId::new(i).map_err(|e| CatalogError::Config(format!("--id: {e}")))?,
                None => {
                    let today = time::OffsetDateTime::now_utc().date();
                    KeyId::new(&format!(
                        "k{:04}{:02}{:02}",
                        today.year(),
                        u8::from(today.month()),
                        today.day()
                    ))
                    .map_err(|e| CatalogError::Config(e.to_string()))?
                }
            };
            let key = SecretKey::generate(alg).map_err(|e| CatalogError::Invalid(e.to_string()))?;
            keys.push((id, key));
        }
    }
    let mut out = Vec::new();
    for (id, key) in &keys {
        out.push(cat.add(kek.as_ref(), id, key).await?);
    }
    Ok(out)
}

/// `retire`: counts the rows under the key in every configured column that
/// uses the `[keys]` keyring (as `status` does), then asks the catalog.
async fn retire(cli: &Cli, id: &str, force: bool) -> Result<Exit> {
    let cfg = Config::load(&config_path(cli.config.as_deref()))?;
    catalog_config(&cfg)?;
    let session = Session::from_config(cfg, &TargetArgs::default(), 2).await?;
    let cc = catalog_config(&session.cfg)?;
    let report = keyturn_engine::status::status(
        session.db.as_ref(),
        &session.plan,
        &keyturn_engine::StatusOptions::default(),
    )
    .await;
    let report = match report {
        Ok(r) => r,
        Err(e) => {
            session.db.close().await;
            return Err(e.into());
        }
    };
    let mut rows = Vec::new();
    for (col, plan) in report.columns.iter().zip(&session.plan.columns) {
        // Columns with their own [keyrings.NAME] hold other key ids.
        let uses_catalog = session
            .cfg
            .targets
            .iter()
            .find(|t| t.table == plan.col.table)
            .and_then(|t| t.columns.iter().find(|c| c.name == plan.col.column))
            .is_some_and(|c| c.keyring.is_none());
        if !uses_catalog {
            continue;
        }
        let n = col
            .by_key
            .iter()
            .filter(|k| k.key_id == id)
            .map(|k| k.rows)
            .sum::<u64>();
        rows.push((format!("{}.{}", col.table, col.column), n));
    }
    let cat = Catalog::open(session.db.clone(), &cc.name, cc.policy()).await?;
    let result = cat.retire(id, &rows, force).await;
    let audited = match &result {
        Ok(o) => audit_outcomes(cli, session.db.as_ref(), std::slice::from_ref(o), force).await,
        Err(_) => Ok(()),
    };
    session.db.close().await;
    print_outcomes(&[result?], cli.json)?;
    audited?;
    Ok(Exit::Ok)
}

pub async fn kek_rotate(cli: &Cli, args: &KekRotateArgs) -> Result<Exit> {
    let (_cfg, cc, db, cat) = open(cli).await?;
    let new_cfg = kek_config_of(args)?;
    let result = async {
        let old = cc.kek.provider().await?;
        let new = new_cfg.provider().await?;
        cat.rotate_kek_with(old.as_ref(), new.as_ref(), args.new_version)
            .await
    }
    .await;
    let audited = match &result {
        Ok(r) => {
            use keyturn_audit::{AuditAction, NewEvent, Outcome as Audited};
            let actor = cli.actor.clone().unwrap_or_else(crate::app::default_actor);
            let mut ev = NewEvent::new(AuditAction::KekRotate, &actor, Audited::Ok)
                .keys(r.entries.iter().map(|e| e.id.clone()))
                .detail("to", format!("{:?}", args.to))
                .detail("rewrapped", r.entries.len() as u64)
                .detail("in_kms", r.in_kms as u64)
                .detail("unwrap_wrap", r.unwrap_wrap as u64)
                .detail("warnings", r.warnings.clone());
            if let Some(v) = &r.new_version {
                ev = ev.detail("new_version", v.clone());
            }
            keyturn_audit::append(db.as_ref(), &ev)
                .await
                .context("recording the KEK rotation in the audit trail")
                .map(|_| ())
        }
        Err(_) => Ok(()),
    };
    db.close().await;
    let r = result?;
    audited?;
    for w in &r.warnings {
        errln!("warning: {w}");
    }
    if cli.json {
        output::print_json(&serde_json::json!({
            "action": "kek-rotate",
            "rewrapped": r.entries.len(),
            "in_kms": r.in_kms,
            "unwrap_wrap": r.unwrap_wrap,
            "new_version": r.new_version,
            "warnings": r.warnings,
            "keys": r.entries,
        }))?;
    } else {
        outln!(
            "rewrapped {} DEKs in one transaction ({} inside the KMS, {} unwrapped and wrapped by keyturn); no data row was touched",
            r.entries.len(),
            r.in_kms,
            r.unwrap_wrap
        );
        for e in &r.entries {
            outln!("  {:<16} {}", e.id, e.kek);
        }
    }
    // The same KEK (a new transit version, say) needs no config change.
    let same_kek = new_cfg.same_key(&cc.kek);
    if same_kek {
        errln!(
            "the KEK is the one configured in [catalog]: no config change needed{}",
            if r.new_version.is_some() {
                "; raise the transit key's min_decryption_version to retire the older versions"
            } else {
                ""
            }
        );
    } else {
        errln!(
            "now update [catalog] in the config to the new KEK (kek = {:?}): the old one no longer unwraps these DEKs",
            args.to
        );
    }
    Ok(Exit::Ok)
}

/// The new KEK's settings from `kek rotate`'s flags: the fields of one
/// kind only.
fn kek_config_of(args: &KekRotateArgs) -> Result<KekConfig> {
    let usage = |m: String| anyhow::Error::from(EngineError::Usage(m));
    let only = |kind: &str, given: &[(&str, bool)]| -> Result<()> {
        match given.iter().find(|(_, set)| *set) {
            Some((flag, _)) => Err(usage(format!("--{flag} does not apply to --to {kind}"))),
            None => Ok(()),
        }
    };
    let need = |v: &Option<String>, flag: &str| -> Result<String> {
        v.clone()
            .ok_or_else(|| usage(format!("--to {} needs --{flag}", args.to)))
    };
    let aws = [
        ("key-id", args.key_id.is_some()),
        ("region", args.region.is_some()),
        ("endpoint-url", args.endpoint_url.is_some()),
        ("profile", args.profile.is_some()),
    ];
    let transit = [
        ("address", args.address.is_some()),
        ("mount", args.mount.is_some()),
        ("key", args.key.is_some()),
        ("token", args.token.is_some()),
        ("namespace", args.namespace.is_some()),
        ("binding", args.binding.is_some()),
    ];
    let local = [("master-key", args.master_key.is_some())];
    let cfg = match args.to.as_str() {
        "local" => {
            only("local", &aws)?;
            only("local", &transit)?;
            KekConfig::Local {
                master_key: args.master_key.clone(),
            }
        }
        "aws-kms" => {
            only("aws-kms", &local)?;
            only("aws-kms", &transit)?;
            KekConfig::AwsKms {
                key_id: need(&args.key_id, "key-id")?,
                region: args.region.clone(),
                endpoint_url: args.endpoint_url.clone(),
                profile: args.profile.clone(),
            }
        }
        "vault-transit" | "transit" => {
            only("vault-transit", &local)?;
            only("vault-transit", &aws)?;
            KekConfig::VaultTransit {
                address: need(&args.address, "address")?,
                mount: args.mount.clone(),
                key: need(&args.key, "key")?,
                token: args.token.clone(),
                namespace: args.namespace.clone(),
                binding: args.binding.clone(),
            }
        }
        _ => {
            return Err(usage("--to: use local, aws-kms or vault-transit".into()));
        }
    };
    Ok(cfg)
}

fn print_outcomes(outcomes: &[Outcome], json: bool) -> Result<()> {
    for o in outcomes {
        for w in &o.warnings {
            errln!("warning: {w}");
        }
    }
    if json {
        if outcomes.len() == 1 {
            output::print_json(&outcomes[0])?;
        } else {
            output::print_json(&outcomes)?;
        }
        return Ok(());
    }
    for o in outcomes {
        for e in &o.changed {
            outln!(
                "{}: key {} is {}{}",
                o.action,
                e.id,
                e.state,
                if e.compromised { " (COMPROMISED)" } else { "" }
            );
        }
    }
    Ok(())
}

fn print_instances(
    list: &[InstanceStatus],
    pruned: &[InstanceStatus],
    ttl: u64,
    json: bool,
) -> Result<()> {
    if json {
        return output::print_json(&serde_json::json!({
            "instance_ttl_seconds": ttl,
            "instances": list,
            "pruned": pruned,
        }));
    }
    for p in pruned {
        errln!("pruned stale instance {}", p.describe());
    }
    if list.is_empty() {
        outln!(
            "no tracked application instances: applications opt in with AppKeyring::track_instance (docs/CATALOG.md)"
        );
        return Ok(());
    }
    outln!(
        "{:<16} {:<16} {:<20} {:>8} {:<6} {:<20} {:>8} {:<12} KEYS",
        "INSTANCE",
        "LABEL",
        "HOST",
        "PID",
        "STATUS",
        "LAST SEEN",
        "AGO (s)",
        "PRIMARY"
    );
    for i in list {
        outln!(
            "{:<16} {:<16} {:<20} {:>8} {:<6} {:<20} {:>8} {:<12} {}",
            i.instance_id,
            i.label,
            i.host,
            i.pid,
            if i.live { "live" } else { "stale" },
            i.last_seen,
            i.seconds_since_seen,
            i.primary,
            i.key_ids.join(",")
        );
    }
    let stale = list.iter().filter(|i| !i.live).count();
    if stale > 0 {
        outln!(
            "{stale} stale (no heartbeat for over {ttl} s): ignored by `keys promote`; `keyturn keys instances --prune` deletes them"
        );
    }
    Ok(())
}

fn print_list(list: &[CatalogEntry], json: bool) -> Result<()> {
    if json {
        return output::print_json(&list);
    }
    if list.is_empty() {
        outln!("the catalog is empty: `keyturn keys add` creates a key");
        return Ok(());
    }
    outln!(
        "{:<16} {:<13} {:<18} {:<16} {:<20} KEK",
        "ID",
        "STATE",
        "ALGORITHM",
        "FINGERPRINT",
        "CREATED"
    );
    for e in list {
        let state = if e.compromised {
            format!("{}!", e.state)
        } else {
            e.state.to_string()
        };
        outln!(
            "{:<16} {:<13} {:<18} {:<16} {:<20} {}",
            e.id,
            state,
            e.algorithm,
            e.fingerprint,
            e.created_at,
            e.kek
        );
    }
    if list.iter().any(|e| e.compromised) {
        outln!("! = compromised: rotate every row off it, then retire it");
    }
    Ok(())
}

/// Ids of the catalog keys flagged compromised (none without a catalog).
pub async fn compromised_ids(cfg: &Config, db: &Arc<dyn Database>) -> Result<Vec<String>> {
    let Some(cc) = &cfg.catalog else {
        return Ok(Vec::new());
    };
    let cat = Catalog::open(db.clone(), &cc.name, cc.policy()).await?;
    Ok(cat
        .list()
        .await?
        .into_iter()
        .filter(|e| e.compromised)
        .map(|e| e.id)
        .collect())
}

/// Rows under compromised keys per column (`table.column`, key id, rows).
fn compromised_rows(
    report: &keyturn_engine::StatusReport,
    compromised: &[String],
) -> Vec<(String, String, u64)> {
    let mut out = Vec::new();
    for c in &report.columns {
        for k in &c.by_key {
            if k.rows > 0 && compromised.contains(&k.key_id) {
                out.push((
                    format!("{}.{}", c.table, c.column),
                    k.key_id.clone(),
                    k.rows,
                ));
            }
        }
    }
    out
}

/// `status`: a warning per column that still has rows under a compromised key.
pub async fn flag_status(
    cfg: &Config,
    db: &Arc<dyn Database>,
    report: &mut keyturn_engine::StatusReport,
) -> Result<()> {
    let compromised = compromised_ids(cfg, db).await?;
    if compromised.is_empty() {
        return Ok(());
    }
    for (col, key, n) in compromised_rows(report, &compromised) {
        report.warnings.push(format!(
            "COMPROMISED key {key:?}: {n} rows of {col} are still under it; run `keyturn rotate` now"
        ));
    }
    for c in &compromised {
        if report.columns.iter().any(|col| &col.primary_key_id == c) {
            report.warnings.push(format!(
                "COMPROMISED key {c:?} is the primary: `keyturn keys add`, `keyturn keys promote` a new key, then rotate"
            ));
        }
    }
    Ok(())
}

/// Before `rotate` with compromised keys: refuses to rotate onto a
/// compromised primary, and moves the columns with rows under compromised
/// keys to the front (most such rows first). Returns the compromised ids.
pub async fn prioritize(session: &mut Session) -> Result<Vec<String>> {
    let compromised = compromised_ids(&session.cfg, &session.db).await?;
    if compromised.is_empty() {
        return Ok(compromised);
    }
    for c in &session.plan.columns {
        let primary = c.ring()?.primary_id().as_str();
        if compromised.iter().any(|k| k == primary) {
            return Err(EngineError::Config(format!(
                "the primary key {primary:?} is marked compromised: add and promote a new key before rotating"
            ))
            .into());
        }
    }
    let report = keyturn_engine::status::status(
        session.db.as_ref(),
        &session.plan,
        &keyturn_engine::StatusOptions::default(),
    )
    .await?;
    let mut weight: Vec<u64> = report
        .columns
        .iter()
        .map(|c| {
            c.by_key
                .iter()
                .filter(|k| compromised.contains(&k.key_id))
                .map(|k| k.rows)
                .sum()
        })
        .collect();
    let mut cols: Vec<_> = session
        .plan
        .columns
        .drain(..)
        .zip(weight.drain(..))
        .collect();
    cols.sort_by_key(|c| std::cmp::Reverse(c.1));
    for (col, w) in &cols {
        if *w > 0 {
            errln!(
                "compromised key: {} rows of {} are rotated first",
                w,
                col.label()
            );
        }
    }
    session.plan.columns = cols.into_iter().map(|(c, _)| c).collect();
    Ok(compromised)
}

/// After `rotate`: an error if any row is still under a compromised key.
pub async fn check_no_compromised_rows(
    cfg: &Config,
    plan: &keyturn_engine::Plan,
    compromised: &[String],
) -> Result<()> {
    let db = keyturn_db::connect(&cfg.database.url, &ConnectOptions::default()).await?;
    let report = keyturn_engine::status::status(db.as_ref(), plan, &Default::default()).await;
    db.close().await;
    let left = compromised_rows(&report?, compromised);
    if left.is_empty() {
        return Ok(());
    }
    Err(EngineError::Config(format!(
        "rows are still under compromised keys: {}; fix the rows reported above and run `keyturn rotate` again",
        left.iter()
            .map(|(c, k, n)| format!("{c}: {n} under {k:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    ))
    .into())
}
