//! `keyturn keys add|list|promote|retire|destroy|restore|compromised|self-test`
//! and `keyturn kek rotate`: the key catalog (docs/CATALOG.md). The
//! operations, audited, are `keyturn_ops::keys`; this file parses, prints
//! and maps exit codes.

use crate::cli::{Cli, KekRotateArgs, KeysCommand};
use crate::exit::Exit;
use crate::output;
use anyhow::Result;
use keyturn_catalog::{CatalogEntry, CatalogError, InstanceStatus, KekConfig, Outcome, Refusal};
use keyturn_engine::EngineError;
use keyturn_ops::keys::{CatalogSession, Change, Retired};
use keyturn_ops::{Config, config_path};

fn load_config(cli: &Cli) -> Result<Config> {
    Ok(Config::load(&config_path(cli.config.as_deref()))?)
}

fn actor_of(cli: &Cli) -> String {
    cli.actor.clone().unwrap_or_else(crate::app::default_actor)
}

pub async fn run_keys(cli: &Cli, cmd: &KeysCommand) -> Result<Exit> {
    let actor = actor_of(cli);
    if let KeysCommand::Retire { id, force } = cmd {
        return match keyturn_ops::keys::retire(load_config(cli)?, id, *force, &actor, false).await?
        {
            Retired::Done(o) => {
                print_outcomes(&[o], cli.json)?;
                Ok(Exit::Ok)
            }
            Retired::NotYet(e) => Err(e.into()),
            _ => Err(EngineError::Internal(
                "retire ended in an outcome this keyturn does not know".into(),
            )
            .into()),
        };
    }
    let cs = CatalogSession::open(load_config(cli)?).await?;
    let result = keys_command(&cs, cmd, &actor, cli.json).await;
    cs.close().await;
    result
}

async fn keys_command(
    cs: &CatalogSession,
    cmd: &KeysCommand,
    actor: &str,
    json: bool,
) -> Result<Exit> {
    let outcomes = match cmd {
        KeysCommand::List => {
            print_list(&cs.list().await?, json)?;
            return Ok(Exit::Ok);
        }
        KeysCommand::SelfTest => {
            let st = cs.self_test().await?;
            if json {
                output::print_json(&st)?;
            } else if st.ok {
                outln!(
                    "ok: current key {:?} encrypts and decrypts; {} keys loaded",
                    st.primary,
                    st.keys_loaded
                );
            } else {
                for p in &st.problems {
                    errln!("error: self-test failed: {p}");
                }
            }
            return Ok(if st.ok { Exit::Ok } else { Exit::Error });
        }
        KeysCommand::Instances { prune } => {
            let (list, pruned) = cs.instances(*prune).await?;
            print_instances(&list, &pruned, cs.cc.instance_ttl_seconds, json)?;
            return Ok(Exit::Ok);
        }
        KeysCommand::Add { id, alg, import } => {
            cs.add(id.as_deref(), alg, import.as_deref(), actor).await?
        }
        KeysCommand::Promote { id, force } => vec![
            cs.change(Change::Promote { id, force: *force }, actor)
                .await?,
        ],
        KeysCommand::Destroy { id, force } => vec![
            cs.change(Change::Destroy { id, force: *force }, actor)
                .await?,
        ],
        KeysCommand::Restore { id, force } => vec![
            cs.change(Change::Restore { id, force: *force }, actor)
                .await?,
        ],
        KeysCommand::Compromised { id } => {
            vec![cs.change(Change::Compromised { id }, actor).await?]
        }
        KeysCommand::Generate { .. } | KeysCommand::Retire { .. } => {
            return Err(EngineError::Internal("keys command dispatched twice".into()).into());
        }
    };
    print_outcomes(&outcomes, json)?;
    Ok(Exit::Ok)
}

/// One step of `rotate --to`: `add`, `promote`, `rotate`, `check` or
/// `retire`, with its outcome (docs/JSON.md).
#[derive(serde::Serialize)]
struct Step {
    step: &'static str,
    /// `done`, `skipped`, `passed`, `incomplete`, `refused` or `failed`.
    outcome: &'static str,
    /// One line for people.
    message: String,
    #[serde(flatten)]
    detail: serde_json::Map<String, serde_json::Value>,
}

impl Step {
    fn new(step: &'static str, outcome: &'static str, message: impl Into<String>) -> Step {
        Step {
            step,
            outcome,
            message: message.into(),
            detail: serde_json::Map::new(),
        }
    }

    fn with(mut self, key: &str, value: impl serde::Serialize) -> Step {
        self.detail.insert(
            key.into(),
            serde_json::to_value(value).unwrap_or(serde_json::Value::Null),
        );
        self
    }

    /// A step that failed with `e`: its text, kind and exit code.
    fn failed(step: &'static str, e: &anyhow::Error) -> Step {
        Step::new(step, "failed", output::error_text(e))
            .with("kind", crate::exit::kind_for(e))
            .with("exit_code", crate::exit::code_for(e) as u8)
    }

    fn from_outcome(step: &'static str, o: &Outcome) -> Step {
        Step::new(step, "done", format!("{}: key {}", o.action, o.key_id))
            .with("changed", &o.changed)
            .with("warnings", &o.warnings)
    }
}

/// The document of `rotate --to` (and the fields of its error document).
struct Staging<'a> {
    new: &'a str,
    previous: Option<String>,
    steps: Vec<Step>,
}

impl Staging<'_> {
    fn fields(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut m = serde_json::Map::new();
        m.insert("action".into(), "rotate-to".into());
        m.insert("key_id".into(), self.new.into());
        m.insert(
            "previous_key_id".into(),
            self.previous
                .clone()
                .map_or(serde_json::Value::Null, Into::into),
        );
        m.insert(
            "steps".into(),
            serde_json::to_value(&self.steps).unwrap_or(serde_json::Value::Null),
        );
        m
    }

    /// The steps not reached, skipped for `why`.
    fn skip_rest(&mut self, why: &str) {
        for step in ["add", "promote", "rotate", "check", "retire"] {
            if !self.steps.iter().any(|s| s.step == step) {
                self.steps.push(Step::new(step, "skipped", why));
            }
        }
    }

    /// `e` as the command's error, its document holding the steps.
    fn fail(mut self, e: anyhow::Error, why: &str) -> anyhow::Error {
        self.skip_rest(why);
        anyhow::Error::new(crate::exit::ErrorWith {
            error: e,
            fields: self.fields(),
        })
    }
}

/// `rotate --to NEW`: the staged rotation in one command. Each step is the
/// same as its own command (and audited as such); a failing step stops the
/// sequence with the catalog in a consistent state (rolling back is
/// `keys promote <old>`). With `--json`, one document lists every step
/// and its outcome; without, each step is said as it ends.
pub async fn rotate_to(
    cli: &Cli,
    args: &crate::cli::RunArgs,
    actor: String,
    new: &str,
) -> Result<Exit> {
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
    let mut doc = Staging {
        new,
        previous: None,
        steps: Vec::new(),
    };
    let cs = CatalogSession::open(load_config(cli)?).await?;
    let before = match cs.list().await {
        Ok(l) => l,
        Err(e) => {
            cs.close().await;
            return Err(e.into());
        }
    };
    doc.previous = before
        .iter()
        .find(|e| e.state == keyturn_catalog::LifecycleState::Primary && e.id != new)
        .map(|e| e.id.clone());
    let staged = cs.stage_primary(new, &actor).await;
    // Which steps were done, from the catalog itself when staging failed.
    let after = match &staged {
        Ok(_) => None,
        Err(_) => cs.list().await.ok(),
    };
    cs.close().await;
    let staged = match staged {
        Ok(s) => s,
        Err(e) => {
            if matches!(
                e.catalog(),
                Some(CatalogError::Refused(Refusal::InstancesMissingKey { .. }))
            ) {
                say(&format!(
                    "key {new:?} is in the catalog (pending) but not promoted: run `keyturn rotate --to {new}` again once the application instances named below have refreshed their keyring"
                ));
            }
            let existed = before.iter().any(|k| k.id == new);
            let added = |after: Option<&[CatalogEntry]>, new: &str, e: &keyturn_ops::OpsError| {
                match after {
                    Some(list) => list.iter().any(|k| k.id == new),
                    // The catalog could not be read back: a refusal of
                    // the promotion means the key was added before it.
                    None => matches!(
                        e.catalog(),
                        Some(CatalogError::Refused(
                            Refusal::InstancesMissingKey { .. }
                                | Refusal::Compromised { .. }
                                | Refusal::NotPromotable { .. }
                                | Refusal::AlreadyPrimary { .. }
                        ))
                    ),
                }
            };
            let was_added = added(after.as_deref(), new, &e);
            let e = anyhow::Error::from(e);
            if existed {
                doc.steps.push(Step::new(
                    "add",
                    "skipped",
                    format!("key {new:?} is already in the catalog"),
                ));
                doc.steps.push(Step::failed("promote", &e));
            } else if was_added {
                doc.steps
                    .push(Step::new("add", "done", format!("add: key {new}")));
                doc.steps.push(Step::failed("promote", &e));
            } else {
                doc.steps.push(Step::failed("add", &e));
            }
            return Err(doc.fail(e, "an earlier step failed: nothing was rotated"));
        }
    };
    doc.previous = staged.previous.clone();
    for o in &staged.outcomes {
        for w in &o.warnings {
            say(&format!("warning: {w}"));
        }
        say(&format!("{}: key {}", o.action, o.key_id));
    }
    for step in ["add", "promote"] {
        doc.steps
            .push(match staged.outcomes.iter().find(|o| o.action == step) {
                Some(o) => Step::from_outcome(step, o),
                None if step == "add" => Step::new(
                    step,
                    "skipped",
                    format!("key {new:?} is already in the catalog"),
                ),
                None => Step::new(
                    step,
                    "skipped",
                    format!("key {new:?} is already the current key"),
                ),
            });
    }
    // Re-encrypt under NEW (an ordinary, audited rotate).
    let mut plain = args.clone();
    plain.to = None;
    let why = "the rotation failed: the old key stays decrypt-only; fix what is reported and run `keyturn rotate` again";
    let report = match crate::app::run_report(
        cli,
        &plain,
        keyturn_engine::Operation::Rotate,
        actor.clone(),
    )
    .await
    {
        Ok(r) => r,
        Err(e) => {
            doc.steps.push(Step::failed("rotate", &e));
            return Err(doc.fail(e, why));
        }
    };
    let summary = report.summary.clone();
    let exit = match crate::app::conclude(report, cli.json, !cli.json) {
        Ok(exit) => exit,
        Err(e) => {
            doc.steps
                .push(Step::failed("rotate", &e).with("summary", &summary));
            return Err(doc.fail(e, why));
        }
    };
    let outcome = if exit == Exit::Ok {
        "done"
    } else {
        "incomplete"
    };
    doc.steps.push(
        Step::new(
            "rotate",
            outcome,
            format!("rotate: run {}, {}", summary.run_id, summary.outcome),
        )
        .with("exit_code", exit as u8)
        .with("summary", &summary),
    );
    if exit != Exit::Ok {
        let why = "rotate did not finish cleanly: the old key stays decrypt-only; fix the reported rows and run `keyturn rotate` again";
        say(why);
        doc.skip_rest(why);
        return finish(cli, &doc, exit);
    }
    let Some(old) = staged.previous else {
        doc.skip_rest("there was no other current key before: nothing to retire");
        return finish(cli, &doc, Exit::Ok);
    };
    // Retire the old current key if it may already be retired; the refusal
    // (rows remain, safety period) says when instead.
    let retired =
        match keyturn_ops::keys::retire(load_config(cli)?, &old, false, &actor, true).await {
            Ok(r) => r,
            Err(e) => {
                let e = anyhow::Error::from(e);
                doc.steps.push(Step::failed("check", &e));
                return Err(doc.fail(e, "the check failed: the old key stays decrypt-only"));
            }
        };
    let later = format!(
        "the old key {old:?} stays decrypt-only; retire it later with `keyturn keys retire {old}`"
    );
    let passed = Step::new(
        "check",
        "passed",
        format!("no row is under the old key {old:?}"),
    );
    match retired {
        Retired::Done(o) => {
            if !cli.json {
                print_outcomes(std::slice::from_ref(&o), false)?;
            }
            doc.steps.push(passed);
            doc.steps.push(Step::from_outcome("retire", &o));
        }
        Retired::NotYet(e) => {
            say(&e.to_string());
            say(&later);
            match &e {
                CatalogError::Refused(Refusal::RowsRemain { total, rows, .. }) => {
                    doc.steps.push(
                        Step::new(
                            "check",
                            "failed",
                            format!("{total} rows are still under the old key {old:?}"),
                        )
                        .with("rows", total)
                        .with(
                            "columns",
                            rows.iter()
                                .map(|(c, n)| (c.clone(), *n))
                                .collect::<std::collections::BTreeMap<_, _>>(),
                        ),
                    );
                    doc.steps
                        .push(Step::new("retire", "skipped", later).with("kind", e.kind()));
                }
                CatalogError::Refused(Refusal::SafetyPeriod { until, .. }) => {
                    doc.steps.push(passed);
                    doc.steps.push(
                        Step::new(
                            "retire",
                            "refused",
                            format!("retire refused: safety period until {until}; {later}"),
                        )
                        .with("kind", e.kind())
                        .with("until", until),
                    );
                }
                other => {
                    doc.steps.push(
                        Step::new("retire", "refused", format!("{other}; {later}"))
                            .with("kind", other.kind()),
                    );
                }
            }
        }
        _ => {
            let e = anyhow::Error::from(EngineError::Internal(
                "retire ended in an outcome this keyturn does not know".into(),
            ));
            doc.steps.push(Step::failed("retire", &e));
            return Err(doc.fail(e, "not reached"));
        }
    }
    finish(cli, &doc, Exit::Ok)
}

/// `rotate --to`'s document with `--json` (the human output was said as
/// it happened), and its exit code.
fn finish(cli: &Cli, doc: &Staging<'_>, exit: Exit) -> Result<Exit> {
    if cli.json {
        let mut m = doc.fields();
        m.insert("exit_code".into(), (exit as u8).into());
        output::print_json(&m)?;
    }
    Ok(exit)
}

pub async fn kek_rotate(cli: &Cli, args: &KekRotateArgs) -> Result<Exit> {
    let new_cfg = kek_config_of(args)?;
    let cs = CatalogSession::open(load_config(cli)?).await?;
    let r = cs
        .rotate_kek(&new_cfg, args.new_version, &actor_of(cli))
        .await;
    let same_kek = new_cfg.same_key(&cs.cc.kek);
    cs.close().await;
    let r = r?;
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
        let mut t = crate::table::Table::new(["KEY", "KEK"]).indent(2);
        for e in &r.entries {
            t.row([e.id.to_string(), e.kek.to_string()]);
        }
        t.print();
    }
    // The same KEK (a new transit version, say) needs no config change.
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

/// One document for the outcomes of one command, whatever their number
/// (`keys add --import` may add several keys): `action`, `key_id` (the key,
/// or null when there are several), `key_ids`, `changed` and `warnings`
/// over all of them.
fn outcomes_document(outcomes: &[Outcome]) -> serde_json::Value {
    let ids: Vec<&str> = outcomes.iter().map(|o| o.key_id.as_str()).collect();
    serde_json::json!({
        "action": outcomes.first().map_or("add", |o| o.action.as_str()),
        "key_id": match ids.as_slice() {
            [one] => serde_json::Value::from(*one),
            _ => serde_json::Value::Null,
        },
        "key_ids": ids,
        "changed": outcomes.iter().flat_map(|o| o.changed.iter()).collect::<Vec<_>>(),
        "warnings": outcomes.iter().flat_map(|o| o.warnings.iter()).collect::<Vec<_>>(),
    })
}

fn print_outcomes(outcomes: &[Outcome], json: bool) -> Result<()> {
    for o in outcomes {
        for w in &o.warnings {
            errln!("warning: {w}");
        }
    }
    if json {
        return output::print_json(&outcomes_document(outcomes));
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
    let mut t = crate::table::Table::new([
        "INSTANCE",
        "LABEL",
        "HOST",
        "PID",
        "STATUS",
        "LAST SEEN",
        "AGO (s)",
        "CURRENT",
        "KEYS",
    ])
    .right(&[3, 6]);
    for i in list {
        t.row([
            i.instance_id.clone(),
            i.label.clone(),
            i.host.clone(),
            i.pid.to_string(),
            (if i.live { "live" } else { "stale" }).to_owned(),
            i.last_seen.clone(),
            i.seconds_since_seen.to_string(),
            i.primary.clone(),
            i.key_ids.join(","),
        ]);
    }
    t.print();
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
    let mut t =
        crate::table::Table::new(["ID", "STATE", "ALGORITHM", "FINGERPRINT", "CREATED", "KEK"]);
    for e in list {
        let state = if e.compromised {
            format!("{}!", e.state)
        } else {
            e.state.to_string()
        };
        t.row([
            e.id.clone(),
            state,
            e.algorithm.clone(),
            e.fingerprint.clone(),
            e.created_at.clone(),
            e.kek.clone(),
        ]);
    }
    t.print();
    if list.iter().any(|e| e.compromised) {
        outln!("! = compromised: rotate every row off it, then retire it");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(id: &str) -> Outcome {
        Outcome {
            action: "add".into(),
            key_id: id.into(),
            changed: Vec::new(),
            warnings: vec![format!("{id} is pending")],
        }
    }

    #[test]
    fn one_document_for_any_number_of_outcomes() {
        let one = outcomes_document(&[outcome("k1")]);
        assert_eq!(one["key_id"], "k1");
        assert_eq!(one["key_ids"], serde_json::json!(["k1"]));
        let two = outcomes_document(&[outcome("a"), outcome("b")]);
        assert_eq!(two["action"], "add");
        assert!(two["key_id"].is_null());
        assert_eq!(two["key_ids"], serde_json::json!(["a", "b"]));
        assert_eq!(
            two["warnings"],
            serde_json::json!(["a is pending", "b is pending"])
        );
    }
}
