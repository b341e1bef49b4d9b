//! The key lifecycle in the key catalog (`[catalog]`), each change audited:
//! add, promote, retire, destroy, restore, mark compromised, the KEK
//! rotation, and `rotate --to`'s staging steps.

use crate::{Config, OpsError, ReadSession, Selection, Session};
use keyturn_audit::{AuditAction, NewEvent, Outcome as Audited};
use keyturn_catalog::{
    Catalog, CatalogConfig, CatalogEntry, CatalogError, InstanceStatus, KekConfig, KekRotation,
    LifecycleState, Outcome, Refusal, SelfTest,
};
use keyturn_db::Database;
use keyturn_engine::EngineError;
use keyturn_format::{KeyId, SecretKey};
use keyturn_kms::DekCache;

/// A session on the key catalog: the config, the database and the catalog,
/// without data keys.
#[derive(Debug)]
pub struct CatalogSession {
    /// Config and database.
    pub read: ReadSession,
    /// The `[catalog]` section.
    pub cc: CatalogConfig,
    /// The catalog.
    pub cat: Catalog,
}

/// The `[catalog]` section, or the error that says the command needs one.
pub fn catalog_config(cfg: &Config) -> Result<CatalogConfig, OpsError> {
    cfg.catalog.clone().ok_or_else(|| {
        EngineError::Config(
            "no [catalog] section in the config: the key catalog commands need one (docs/CATALOG.md)".into(),
        )
        .into()
    })
}

impl CatalogSession {
    /// Connects and opens the catalog the config names.
    pub async fn open(cfg: Config) -> Result<CatalogSession, OpsError> {
        let cc = catalog_config(&cfg)?;
        let read = ReadSession::open(cfg).await?;
        match Catalog::open(read.db.clone(), &cc.name, cc.policy()).await {
            Ok(cat) => Ok(CatalogSession { read, cc, cat }),
            Err(e) => {
                read.close().await;
                Err(e.into())
            }
        }
    }

    /// Closes the database connections.
    pub async fn close(self) {
        self.read.close().await;
    }

    /// Every key in the catalog.
    pub async fn list(&self) -> Result<Vec<CatalogEntry>, OpsError> {
        Ok(self.cat.list().await?)
    }

    /// Loads every key through the KEK and checks the primary encrypts and
    /// decrypts.
    pub async fn self_test(&self) -> Result<SelfTest, OpsError> {
        let kek = self.cc.kek.provider().await?;
        Ok(self.cat.self_test(&DekCache::new(kek)).await)
    }

    /// The application instances that reported their keyring, after
    /// removing the expired ones when `prune` (returned second).
    pub async fn instances(
        &self,
        prune: bool,
    ) -> Result<(Vec<InstanceStatus>, Vec<InstanceStatus>), OpsError> {
        let pruned = if prune {
            self.cat.prune_instances().await?
        } else {
            Vec::new()
        };
        Ok((self.cat.instances().await?, pruned))
    }

    /// Adds keys: a new one of `alg` (id: `id`, else `kYYYYMMDD`), or the
    /// ones a key source holds (`import`, only `id` when given).
    pub async fn add(
        &self,
        id: Option<&str>,
        alg: &str,
        import: Option<&str>,
        actor: &str,
    ) -> Result<Vec<Outcome>, OpsError> {
        let outcomes = add(&self.cat, &self.cc, id, alg, import).await?;
        audit_outcomes(self.read.db.as_ref(), actor, &outcomes, false).await?;
        Ok(outcomes)
    }

    /// Applies one lifecycle change and records it (with an `override`
    /// event when `force` skipped a safety check).
    pub async fn change(&self, change: Change<'_>, actor: &str) -> Result<Outcome, OpsError> {
        let (o, force) = match change {
            Change::Promote { id, force } => (self.cat.promote_with(id, force).await?, force),
            Change::Destroy { id, force } => (self.cat.destroy(id, force).await?, force),
            Change::Restore { id, force } => (self.cat.restore(id, force).await?, force),
            Change::Compromised { id } => (self.cat.mark_compromised(id).await?, false),
        };
        audit_outcomes(
            self.read.db.as_ref(),
            actor,
            std::slice::from_ref(&o),
            force,
        )
        .await?;
        Ok(o)
    }

    /// Rewraps every DEK under the KEK `to` (or a new version of the same
    /// transit key, `new_version`), in one transaction; audited.
    pub async fn rotate_kek(
        &self,
        to: &KekConfig,
        new_version: bool,
        actor: &str,
    ) -> Result<KekRotation, OpsError> {
        let old = self.cc.kek.provider().await?;
        let new = to.provider().await?;
        let r = self
            .cat
            .rotate_kek_with(old.as_ref(), new.as_ref(), new_version)
            .await?;
        let mut ev = NewEvent::new(AuditAction::KekRotate, actor, Audited::Ok)
            .keys(r.entries.iter().map(|e| e.id.clone()))
            .detail("to", to.kind())
            .detail("rewrapped", r.entries.len() as u64)
            .detail("in_kms", r.in_kms as u64)
            .detail("unwrap_wrap", r.unwrap_wrap as u64)
            .detail("warnings", r.warnings.clone());
        if let Some(v) = &r.new_version {
            ev = ev.detail("new_version", v.clone());
        }
        keyturn_audit::append(self.read.db.as_ref(), &ev)
            .await
            .map_err(|e| OpsError::step("recording the KEK rotation in the audit trail", e))?;
        Ok(r)
    }

    /// `rotate --to NEW`, before the rotation: adds NEW (AES-256-GCM) if
    /// the catalog lacks it and promotes it. Every step that succeeded is
    /// audited, even when a later one fails. Returns the previous primary.
    pub async fn stage_primary(&self, new: &str, actor: &str) -> Result<Staged, OpsError> {
        let mut outcomes = Vec::new();
        let steps = async {
            let entries = self.cat.list().await?;
            let old = entries
                .iter()
                .find(|e| e.state == LifecycleState::Primary)
                .map(|e| e.id.clone());
            if !entries.iter().any(|e| e.id == new) {
                outcomes.extend(add(&self.cat, &self.cc, Some(new), "aes256gcm", None).await?);
            }
            if old.as_deref() != Some(new) {
                outcomes.push(self.cat.promote(new).await?);
            }
            Ok::<_, CatalogError>(old)
        }
        .await;
        let audited = audit_outcomes(self.read.db.as_ref(), actor, &outcomes, false).await;
        match steps {
            Ok(old) => {
                audited?;
                Ok(Staged {
                    previous: old.filter(|o| o != new),
                    outcomes,
                })
            }
            Err(e) => {
                if let Err(a) = audited {
                    return Err(OpsError::step(
                        format!("this failed, and so did recording it ({a})"),
                        e,
                    ));
                }
                Err(e.into())
            }
        }
    }
}

/// A lifecycle change of one key.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub enum Change<'a> {
    /// The key becomes primary; the current primary decrypt-only.
    Promote {
        /// The key.
        id: &'a str,
        /// Skip the check that every application instance holds the key.
        force: bool,
    },
    /// A retired key's material is destroyed.
    Destroy {
        /// The key.
        id: &'a str,
        /// Before its retention period ended.
        force: bool,
    },
    /// A retired key becomes decrypt-only again.
    Restore {
        /// The key.
        id: &'a str,
        /// A compromised key too.
        force: bool,
    },
    /// The key is marked compromised: `rotate` moves its rows first.
    Compromised {
        /// The key.
        id: &'a str,
    },
}

/// What `rotate --to` staged before its rotation.
#[derive(Debug)]
pub struct Staged {
    /// The primary before, if another key.
    pub previous: Option<String>,
    /// The changes made (add, promote).
    pub outcomes: Vec<Outcome>,
}

/// How a retirement ended.
#[derive(Debug)]
#[non_exhaustive]
pub enum Retired {
    /// Retired.
    Done(Outcome),
    /// Not yet: rows remain under the key, or its safety period runs (the
    /// refusal says until when).
    NotYet(CatalogError),
}

/// Retires a key: counts its rows in every configured column that uses the
/// `[keys]` keyring (the census `status` takes), then asks the catalog.
/// With `later_is_fine`, a refusal because rows remain or the safety
/// period runs is [`Retired::NotYet`] rather than an error.
pub async fn retire(
    cfg: Config,
    id: &str,
    force: bool,
    actor: &str,
    later_is_fine: bool,
) -> Result<Retired, OpsError> {
    let cc = catalog_config(&cfg)?;
    let session = Session::open(cfg, &Selection::default(), 2).await?;
    let result = retire_in(&session, &cc, id, force, actor).await;
    session.close().await;
    match result {
        Ok(o) => Ok(Retired::Done(o)),
        Err(OpsError::Catalog(
            e @ CatalogError::Refused(Refusal::RowsRemain { .. } | Refusal::SafetyPeriod { .. }),
        )) if later_is_fine => Ok(Retired::NotYet(e)),
        Err(e) => Err(e),
    }
}

async fn retire_in(
    session: &Session,
    cc: &CatalogConfig,
    id: &str,
    force: bool,
    actor: &str,
) -> Result<Outcome, OpsError> {
    let census = keyturn_engine::run::census(session.db.as_ref(), &session.plan).await?;
    let mut rows = Vec::new();
    for (counts, plan) in census.iter().zip(&session.plan.columns) {
        // Columns with their own [keyrings.NAME] hold other key ids.
        let uses_catalog = session
            .cfg
            .targets
            .iter()
            .filter(|t| t.table == plan.col.table)
            .flat_map(|t| t.columns.iter())
            .find(|c| c.name == plan.col.column)
            .is_some_and(|c| c.keyring.is_none());
        if !uses_catalog {
            continue;
        }
        rows.push((plan.label(), counts.rows_under(id)));
    }
    let cat = Catalog::open(session.db.clone(), &cc.name, cc.policy()).await?;
    let o = cat.retire(id, &rows, force).await?;
    audit_outcomes(session.db.as_ref(), actor, std::slice::from_ref(&o), force).await?;
    Ok(o)
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
                    KeyId::new(&dated_key_id()).map_err(|e| CatalogError::Config(e.to_string()))?
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

/// `kYYYYMMDD` (today, UTC): the default id of a new key.
pub fn dated_key_id() -> String {
    let today = keyturn_db::ts::now().date();
    format!(
        "k{:04}{:02}{:02}",
        today.year(),
        u8::from(today.month()),
        today.day()
    )
}

/// Appends one audit event per lifecycle change (and an `override` event
/// when a safety check was forced), after the catalog committed it.
async fn audit_outcomes(
    db: &dyn Database,
    actor: &str,
    outcomes: &[Outcome],
    forced: bool,
) -> Result<(), OpsError> {
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
        let ev = NewEvent::new(action, actor, Audited::Ok)
            .keys(std::iter::once(o.key_id.clone()))
            .detail("changed", changed)
            .detail("forced", forced)
            .detail("warnings", o.warnings.clone());
        keyturn_audit::append(db, &ev)
            .await
            .map_err(|e| OpsError::step("recording the key change in the audit trail", e))?;
        if forced {
            let ev = NewEvent::new(AuditAction::Override, actor, Audited::Ok)
                .keys(std::iter::once(o.key_id.clone()))
                .reason(Some(&format!(
                    "--force on {} of key {}",
                    o.action, o.key_id
                )))
                .detail("warnings", o.warnings.clone());
            keyturn_audit::append(db, &ev)
                .await
                .map_err(|e| OpsError::step("recording the override in the audit trail", e))?;
        }
    }
    Ok(())
}
