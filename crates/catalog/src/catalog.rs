//! The catalog in the target database: entries, the lifecycle commands
//! applied as transactions, keyrings built from wrapped DEKs, KEK rotation.

use crate::CatalogError;
use crate::lifecycle::{self, Decision, KeyFacts, LifecycleState, Policy};
use keyturn_db::{CatalogRow, CatalogWrite, Database, now_rfc3339};
use keyturn_format::{Algorithm, Encoding, KeyId, KeyState, Keyring, SecretKey};
use keyturn_kms::{DekCache, KekProvider, RewrapPath, WrapContext, WrappedDek};
use serde::Serialize;
use std::sync::Arc;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// One key of the catalog. Holds no key material: the DEK is wrapped.
#[derive(Clone, Debug, Serialize)]
pub struct CatalogEntry {
    /// The key id.
    pub id: String,
    /// The DEK's algorithm name (e.g. `aes256gcm`).
    pub algorithm: String,
    /// Where the key is in its lifecycle.
    pub state: LifecycleState,
    /// Marked compromised: it is never promoted again, and rotation moves its rows first.
    pub compromised: bool,
    /// Reveals nothing about the key (a truncated, domain-separated SHA-256).
    pub fingerprint: String,
    /// Where the material lives: the KEK wrapping it, or `destroyed`.
    pub kek: String,
    /// When the key was added (RFC 3339 UTC).
    pub created_at: String,
    /// When it last became primary; `None` if it never was.
    pub promoted_at: Option<String>,
    /// When it last stopped being primary; `None` if it never did.
    pub demoted_at: Option<String>,
    /// When it was retired; `None` unless retired (or destroyed after).
    pub retired_at: Option<String>,
    /// When its material was erased; `None` unless destroyed.
    pub destroyed_at: Option<String>,
    /// When it was marked compromised; `None` if it is not.
    pub compromised_at: Option<String>,
    #[serde(skip)]
    row: CatalogRow,
}

impl CatalogEntry {
    fn from_row(row: CatalogRow) -> Result<CatalogEntry, CatalogError> {
        let state = LifecycleState::from_name(&row.state).ok_or_else(|| {
            CatalogError::Invalid(format!(
                "catalog row {:?} has an unknown state {:?}",
                row.key_id, row.state
            ))
        })?;
        Ok(CatalogEntry {
            id: row.key_id.clone(),
            algorithm: row.algorithm.clone(),
            state,
            compromised: row.compromised,
            fingerprint: row.fingerprint.clone(),
            kek: row.kek.clone(),
            created_at: row.created_at.clone(),
            promoted_at: row.promoted_at.clone(),
            demoted_at: row.demoted_at.clone(),
            retired_at: row.retired_at.clone(),
            destroyed_at: row.destroyed_at.clone(),
            compromised_at: row.compromised_at.clone(),
            row,
        })
    }

    fn facts(&self) -> KeyFacts {
        KeyFacts {
            id: self.id.clone(),
            state: self.state,
            compromised: self.compromised,
            demoted_at: parse_time(self.demoted_at.as_deref()),
            retired_at: parse_time(self.retired_at.as_deref()),
        }
    }

    /// The wrapped DEK, `None` once destroyed.
    pub fn wrapped(&self) -> Result<Option<WrappedDek>, CatalogError> {
        match &self.row.wrapped_dek {
            None => Ok(None),
            Some(j) => Ok(Some(WrappedDek::from_json(j)?)),
        }
    }
}

fn parse_time(s: Option<&str>) -> Option<OffsetDateTime> {
    s.and_then(|s| OffsetDateTime::parse(s, &Rfc3339).ok())
}

/// The result of a lifecycle command.
#[derive(Clone, Debug, Serialize)]
pub struct Outcome {
    /// The command: `add`, `promote`, `retire`, `destroy`, `restore` or `compromised`.
    pub action: String,
    /// The key the command was about.
    pub key_id: String,
    /// The entries as written.
    pub changed: Vec<CatalogEntry>,
    /// What the operator must know (printed on stderr, in `--json` output).
    pub warnings: Vec<String>,
}

/// Result of [`Catalog::self_test`].
#[derive(Clone, Debug, Serialize)]
pub struct SelfTest {
    /// True when the keyring loaded, the probe round-tripped under the primary key and that key is
    /// not compromised.
    pub ok: bool,
    /// The current key id; empty if the keyring could not be loaded.
    #[serde(rename = "current_key_id")]
    pub primary: String,
    /// Keys in the loaded keyring (0 if it could not be loaded).
    pub keys_loaded: usize,
    /// What failed, one line each; empty when `ok`.
    pub problems: Vec<String>,
}

/// A key catalog in one database.
#[derive(Debug, Clone)]
pub struct Catalog {
    db: Arc<dyn Database>,
    name: String,
    policy: Policy,
}

impl Catalog {
    /// Opens catalog `name` (creating the table if missing).
    pub async fn open(
        db: Arc<dyn Database>,
        name: &str,
        policy: Policy,
    ) -> Result<Catalog, CatalogError> {
        // Validates the name as a wrap context.
        WrapContext::new(name, KeyId::new("probe").expect("valid id"))?;
        db.ensure_catalog().await?;
        Ok(Catalog {
            db,
            name: name.to_owned(),
            policy,
        })
    }

    /// The catalog's name, bound into every wrapped DEK.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The lifecycle timing rules applied to commands.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The database that holds the catalog.
    pub fn db(&self) -> &Arc<dyn Database> {
        &self.db
    }

    fn context(&self, id: &str) -> Result<WrapContext, CatalogError> {
        let kid = KeyId::new(id).map_err(|e| CatalogError::Invalid(e.to_string()))?;
        Ok(WrapContext::new(&self.name, kid)?)
    }

    /// Every key, oldest first.
    pub async fn list(&self) -> Result<Vec<CatalogEntry>, CatalogError> {
        self.db
            .load_catalog(&self.name)
            .await?
            .into_iter()
            .map(CatalogEntry::from_row)
            .collect()
    }

    /// Adds `key` as a pending key, wrapped under `kek`. The KEK is called
    /// before anything is written: if it fails, the catalog is unchanged.
    pub async fn add(
        &self,
        kek: &dyn KekProvider,
        id: &KeyId,
        key: &SecretKey,
    ) -> Result<Outcome, CatalogError> {
        let alg = key.native_algorithm().ok_or_else(|| {
            CatalogError::Invalid(format!(
                "key {:?} is not a keyturn data key (aes256gcm or xchacha20poly1305)",
                id.as_str()
            ))
        })?;
        let entries = self.list().await?;
        if entries.iter().any(|e| e.id == id.as_str()) {
            return Err(lifecycle::Refusal::AlreadyExists {
                id: id.as_str().to_owned(),
            }
            .into());
        }
        let ctx = self.context(id.as_str())?;
        let wrapped = kek.wrap(key, &ctx).await?;
        // Proves the blob unwraps before it is stored.
        let back = kek.unwrap(&wrapped, &ctx).await?;
        if back.fingerprint() != key.fingerprint() {
            return Err(CatalogError::Invalid(
                "the KEK returned a different key on unwrap; nothing was written".into(),
            ));
        }
        let row = CatalogRow {
            catalog: self.name.clone(),
            key_id: id.as_str().to_owned(),
            algorithm: alg.name().to_owned(),
            state: LifecycleState::Pending.name().to_owned(),
            compromised: false,
            fingerprint: key.fingerprint(),
            kek: wrapped.kek().to_string(),
            wrapped_dek: Some(wrapped.to_json()),
            created_at: now_rfc3339(),
            promoted_at: None,
            demoted_at: None,
            retired_at: None,
            destroyed_at: None,
            compromised_at: None,
            revision: 1,
        };
        self.db
            .write_catalog(&[CatalogWrite {
                row: row.clone(),
                expected_revision: None,
            }])
            .await?;
        let mut warnings = vec![format!(
            "key {:?} is pending: it decrypts once readers refresh their keyring; `keyturn keys promote {}` makes it encrypt",
            id.as_str(),
            id.as_str()
        )];
        if !entries.iter().any(|e| e.state == LifecycleState::Primary) {
            warnings.push(
                "the catalog has no current key yet (no key in state primary): promote one".into(),
            );
        }
        Ok(Outcome {
            action: "add".into(),
            key_id: id.as_str().to_owned(),
            changed: vec![CatalogEntry::from_row(row)?],
            warnings,
        })
    }

    /// Applies a decision of the state machine in one transaction.
    async fn apply(
        &self,
        action: &str,
        id: &str,
        entries: &[CatalogEntry],
        decision: Decision,
        compromise: bool,
    ) -> Result<Outcome, CatalogError> {
        let now = now_rfc3339();
        let mut writes = Vec::new();
        for (kid, state) in &decision.changes {
            let e = entries
                .iter()
                .find(|e| &e.id == kid)
                .expect("decisions name existing keys");
            let mut row = e.row.clone();
            match state {
                LifecycleState::Primary if e.state != LifecycleState::Primary => {
                    row.promoted_at = Some(now.clone())
                }
                LifecycleState::DecryptOnly if e.state == LifecycleState::Primary => {
                    row.demoted_at = Some(now.clone())
                }
                LifecycleState::Retired => row.retired_at = Some(now.clone()),
                LifecycleState::Destroyed => {
                    row.destroyed_at = Some(now.clone());
                    row.wrapped_dek = None;
                    row.kek = "destroyed".into();
                }
                _ => {}
            }
            if compromise && kid == id && !row.compromised {
                row.compromised = true;
                row.compromised_at = Some(now.clone());
            }
            row.state = state.name().to_owned();
            row.revision = e.row.revision + 1;
            writes.push(CatalogWrite {
                expected_revision: Some(e.row.revision),
                row,
            });
        }
        self.db.write_catalog(&writes).await?;
        let changed = writes
            .into_iter()
            .map(|w| CatalogEntry::from_row(w.row))
            .collect::<Result<_, _>>()?;
        Ok(Outcome {
            action: action.into(),
            key_id: id.to_owned(),
            changed,
            warnings: decision.warnings,
        })
    }

    fn facts(entries: &[CatalogEntry]) -> Vec<KeyFacts> {
        entries.iter().map(CatalogEntry::facts).collect()
    }

    /// `promote ID`: ID becomes primary, the old primary decrypt-only, in one
    /// transaction. Refused while a live tracked application instance does
    /// not hold ID ([`promote_with`](Self::promote_with) can force it).
    pub async fn promote(&self, id: &str) -> Result<Outcome, CatalogError> {
        self.promote_with(id, false).await
    }

    /// `promote ID [--force]`: as [`promote`](Self::promote); with `force`,
    /// live instances that do not hold ID are named in a warning instead of
    /// refusing.
    pub async fn promote_with(&self, id: &str, force: bool) -> Result<Outcome, CatalogError> {
        let entries = self.list().await?;
        let instances: Vec<_> = self
            .instances()
            .await?
            .iter()
            .map(crate::InstanceStatus::facts)
            .collect();
        let d = lifecycle::promote_checked(&Self::facts(&entries), id, &instances, force)?;
        self.apply("promote", id, &entries, d, false).await
    }

    /// `retire ID`: `rows` are the rows still under ID per configured column.
    pub async fn retire(
        &self,
        id: &str,
        rows: &[(String, u64)],
        force: bool,
    ) -> Result<Outcome, CatalogError> {
        let entries = self.list().await?;
        let d = lifecycle::retire(
            &Self::facts(&entries),
            id,
            rows,
            OffsetDateTime::now_utc(),
            &self.policy,
            force,
        )?;
        self.apply("retire", id, &entries, d, false).await
    }

    /// `destroy ID`: erases the wrapped DEK.
    pub async fn destroy(&self, id: &str, force: bool) -> Result<Outcome, CatalogError> {
        let entries = self.list().await?;
        let d = lifecycle::destroy(
            &Self::facts(&entries),
            id,
            OffsetDateTime::now_utc(),
            &self.policy,
            force,
        )?;
        self.apply("destroy", id, &entries, d, false).await
    }

    /// `restore ID`: retired → decrypt-only.
    pub async fn restore(&self, id: &str, force: bool) -> Result<Outcome, CatalogError> {
        let entries = self.list().await?;
        let d = lifecycle::restore(&Self::facts(&entries), id, force)?;
        self.apply("restore", id, &entries, d, false).await
    }

    /// `compromised ID`: flags the key.
    pub async fn mark_compromised(&self, id: &str) -> Result<Outcome, CatalogError> {
        let entries = self.list().await?;
        let d = lifecycle::mark_compromised(&Self::facts(&entries), id)?;
        self.apply("compromised", id, &entries, d, true).await
    }

    /// Builds the keyring: every key with material, one KMS call per DEK
    /// (through `cache`). Pending and decrypt-only keys decrypt, retired keys
    /// refuse (unless `allow_retired`), destroyed keys are absent.
    pub async fn load_keyring(
        &self,
        cache: &DekCache,
        allow_retired: bool,
    ) -> Result<Keyring, CatalogError> {
        let entries = self.list().await?;
        if !entries.iter().any(|e| e.state == LifecycleState::Primary) {
            return Err(CatalogError::Invalid(format!(
                "catalog {:?} has no current key (no key in state primary; {} keys): add one with `keyturn keys add` and promote it",
                self.name,
                entries.len()
            )));
        }
        let mut b = Keyring::builder().allow_retired(allow_retired);
        for e in &entries {
            let state = match e.state {
                LifecycleState::Primary => KeyState::Primary,
                LifecycleState::Pending | LifecycleState::DecryptOnly => KeyState::DecryptOnly,
                LifecycleState::Retired => KeyState::Retired,
                LifecycleState::Destroyed => continue,
            };
            let Some(wrapped) = e.wrapped()? else {
                continue;
            };
            let ctx = self.context(&e.id)?;
            let dek = cache.get(&wrapped, &ctx).await?;
            let key = SecretKey::from_bytes(dek.algorithm(), dek.expose_bytes())
                .map_err(|e| CatalogError::Invalid(e.to_string()))?;
            if key.fingerprint() != e.fingerprint {
                return Err(CatalogError::Invalid(format!(
                    "key {:?}: the unwrapped DEK's fingerprint does not match the catalog's",
                    e.id
                )));
            }
            let kid = KeyId::new(&e.id).map_err(|x| CatalogError::Invalid(x.to_string()))?;
            b = b.add(kid, key, state);
        }
        b.build().map_err(|e| CatalogError::Invalid(e.to_string()))
    }

    /// A health check for applications: loads the keyring and encrypts and
    /// decrypts a probe with the primary. Never returns key material.
    pub async fn self_test(&self, cache: &DekCache) -> SelfTest {
        let mut problems = Vec::new();
        let ring = match self.load_keyring(cache, false).await {
            Ok(r) => r,
            Err(e) => {
                return SelfTest {
                    ok: false,
                    primary: String::new(),
                    keys_loaded: 0,
                    problems: vec![e.to_string()],
                };
            }
        };
        let primary = ring.primary_id().as_str().to_owned();
        let probe = b"keyturn self-test probe";
        let ctx: [&[u8]; 1] = [b"keyturn-self-test"];
        match ring.encrypt(probe, &ctx, Encoding::Text) {
            Ok(ct) => match ring.decrypt(&ct, &ctx) {
                Ok(pt) if pt.as_slice() == probe => {}
                Ok(_) => problems.push("probe decrypted to different bytes".into()),
                Err(e) => problems.push(format!("probe does not decrypt: {e}")),
            },
            Err(e) => problems.push(format!("probe does not encrypt: {e}")),
        }
        if let Ok(entries) = self.list().await
            && entries.iter().any(|e| e.id == primary && e.compromised)
        {
            problems.push(format!(
                "current key {primary:?} is marked compromised: promote a new key and rotate"
            ));
        }
        SelfTest {
            ok: problems.is_empty(),
            primary,
            keys_loaded: ring.keys().count(),
            problems,
        }
    }

    /// KEK rotation: rewraps every DEK from `old` to `new` and writes all of
    /// them in one transaction. No data row is touched. If any unwrap or wrap
    /// fails, nothing is written. Returns the entries as written.
    pub async fn rotate_kek(
        &self,
        old: &dyn KekProvider,
        new: &dyn KekProvider,
    ) -> Result<Vec<CatalogEntry>, CatalogError> {
        Ok(self.rotate_kek_with(old, new, false).await?.entries)
    }

    /// KEK rotation, with the KMS doing the work where it can: when `old`
    /// and `new` are the same KMS ([`keyturn_kms::same_kms`]), each DEK is
    /// re-encrypted inside it (AWS `ReEncrypt`, transit `rewrap` to the
    /// latest key version) and never leaves it; otherwise (another provider,
    /// another region or transit key, a local KEK, a transit blob bound as
    /// associated data) it is unwrapped under `old` and wrapped under `new`
    /// here, and the new blob is unwrapped once more to check it. With
    /// `new_version`, the KMS first creates a new version of `new`'s key
    /// (transit only). All rows are written in one transaction; any KMS or
    /// database failure writes nothing.
    pub async fn rotate_kek_with(
        &self,
        old: &dyn KekProvider,
        new: &dyn KekProvider,
        new_version: bool,
    ) -> Result<KekRotation, CatalogError> {
        let entries = self.list().await?;
        let mut items = Vec::new();
        let mut rows = Vec::new();
        for e in &entries {
            if let Some(w) = e.wrapped()? {
                old.check_owner(&w)?;
                items.push((w, self.context(&e.id)?));
                rows.push(e);
            }
        }
        let mut warnings = Vec::new();
        let version = if new_version {
            let v = new.new_key_version().await?;
            warnings.push(format!(
                "created a new version of the KEK: {v}; older versions still decrypt until you raise min_decryption_version"
            ));
            v.version
        } else {
            None
        };
        // The new version exists in the KMS from here on, whatever happens
        // next: a failure must say so (the catalog is unchanged, and a rerun
        // without --new-version moves the DEKs to it).
        self.rewrap_and_write(old, new, &rows, &items, version.clone(), warnings)
            .await
            .map_err(|e| match version {
                Some(version) => CatalogError::AfterNewKekVersion {
                    version,
                    failure: Box::new(e),
                },
                None => e,
            })
    }

    /// The part of [`Catalog::rotate_kek_with`] after the optional new key
    /// version: rewrap every DEK, check each, write them in one transaction.
    async fn rewrap_and_write(
        &self,
        old: &dyn KekProvider,
        new: &dyn KekProvider,
        rows: &[&CatalogEntry],
        items: &[(WrappedDek, WrapContext)],
        version: Option<String>,
        mut warnings: Vec<String>,
    ) -> Result<KekRotation, CatalogError> {
        let same = keyturn_kms::same_kms(old, new);
        let rewrapped = keyturn_kms::rotate_blobs(old, new, items).await?;
        let mut writes = Vec::with_capacity(rows.len());
        let (mut in_kms, mut unwrap_wrap) = (0, 0);
        for (e, (w, path)) in rows.iter().zip(rewrapped) {
            match path {
                RewrapPath::InKms => {
                    // Not unwrapped here (that would bring the DEK out of
                    // the KMS), but the KMS's answer must at least name the
                    // new KEK before it replaces the old blob.
                    new.check_owner(&w)?;
                    in_kms += 1;
                }
                _ => {
                    unwrap_wrap += 1;
                    // The DEK is unchanged; check it still unwraps under the
                    // new KEK to the same fingerprint before anything is
                    // written. (Blobs rewrapped inside the KMS are not
                    // unwrapped here: that would bring the DEK out of it.)
                    let ctx = self.context(&e.id)?;
                    let back = new.unwrap(&w, &ctx).await?;
                    if back.fingerprint() != e.fingerprint {
                        return Err(CatalogError::Invalid(format!(
                            "key {:?}: the rewrapped DEK does not match its fingerprint; nothing was written",
                            e.id
                        )));
                    }
                }
            }
            let mut row = e.row.clone();
            row.kek = w.kek().to_string();
            row.wrapped_dek = Some(w.to_json());
            row.revision += 1;
            writes.push(CatalogWrite {
                expected_revision: Some(e.row.revision),
                row,
            });
        }
        if same && unwrap_wrap > 0 {
            warnings.push(format!(
                "{unwrap_wrap} DEK(s) were bound as transit associated data, which transit's rewrap cannot carry: keyturn unwrapped and wrapped them again (now with the context embedded, so the next rotation stays inside transit)"
            ));
        } else if !same
            && unwrap_wrap > 0
            && old.rewrap_domain().is_some()
            && new.rewrap_domain().is_some()
        {
            warnings.push(format!(
                "the old and new KEK are not in the same KMS or transit key ({} -> {}): the DEKs were unwrapped and wrapped again by keyturn",
                old.describe(),
                new.describe()
            ));
        }
        if !writes.is_empty() {
            self.db.write_catalog(&writes).await?;
        }
        let entries = writes
            .into_iter()
            .map(|w| CatalogEntry::from_row(w.row))
            .collect::<Result<_, _>>()?;
        Ok(KekRotation {
            entries,
            in_kms,
            unwrap_wrap,
            new_version: version,
            warnings,
        })
    }
}

/// The result of [`Catalog::rotate_kek_with`].
#[derive(Clone, Debug, Serialize)]
pub struct KekRotation {
    /// The entries as written.
    pub entries: Vec<CatalogEntry>,
    /// DEKs re-encrypted inside the KMS (they never left it).
    pub in_kms: usize,
    /// DEKs unwrapped and wrapped again in this process.
    pub unwrap_wrap: usize,
    /// The KEK's new version, when one was created.
    pub new_version: Option<String>,
    /// What the operator must know about the rotation.
    pub warnings: Vec<String>,
}

/// The algorithms `keys add` accepts.
pub fn parse_algorithm(s: &str) -> Result<Algorithm, CatalogError> {
    Algorithm::from_name(s).map_err(|_| {
        CatalogError::Config(format!(
            "algorithm {s:?}: use aes256gcm or xchacha20poly1305"
        ))
    })
}
