//! The lifecycle of a catalog key as a pure state machine: no I/O, the
//! current time and the facts (rows still under a key) are passed in, and
//! every refusal is a typed [`Refusal`] that says why and what to do.
//!
//! ```text
//!   add ──> pending ──promote──> primary ──(newer key promoted)──> decrypt-only
//!              │                    ^                                  │  │
//!              │                    └──────────promote (rollback)──────┘  │
//!              └────────retire────────> retired <───────retire────────────┘
//!                                        │   │
//!                              restore <─┘   └─destroy (after retention)─> destroyed
//! ```
//!
//! `compromised` is a flag on top of the state: a compromised key is never
//! promoted or restored again (restore needs `--force`), `rotate` moves every
//! row off it first, and `status` flags it.

use serde::Serialize;
use std::fmt;
use time::OffsetDateTime;

/// Where a key is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LifecycleState {
    /// Added and being rolled out to every reader: decrypts, never encrypts.
    Pending,
    /// Encrypts new values (exactly one per catalog once promoted).
    Primary,
    /// Superseded by a newer primary: decrypts only, while rows move off it.
    DecryptOnly,
    /// Refuses to decrypt; its material is kept for a retention period.
    Retired,
    /// Material erased; the row stays as a record.
    Destroyed,
}

impl LifecycleState {
    /// The state's name as stored and shown (`pending`, `primary`, `decrypt-only`, `retired`,
    /// `destroyed`).
    pub fn name(self) -> &'static str {
        match self {
            LifecycleState::Pending => "pending",
            LifecycleState::Primary => "primary",
            LifecycleState::DecryptOnly => "decrypt-only",
            LifecycleState::Retired => "retired",
            LifecycleState::Destroyed => "destroyed",
        }
    }

    /// Parses a state's name; `None` for anything else.
    pub fn from_name(s: &str) -> Option<LifecycleState> {
        Some(match s {
            "pending" => LifecycleState::Pending,
            "primary" => LifecycleState::Primary,
            "decrypt-only" => LifecycleState::DecryptOnly,
            "retired" => LifecycleState::Retired,
            "destroyed" => LifecycleState::Destroyed,
            _ => return None,
        })
    }
}

impl fmt::Display for LifecycleState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The timing rules of the lifecycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// After a key stops being primary, `retire` waits this long (readers
    /// with a cached keyring may still encrypt under it).
    pub safety_period: time::Duration,
    /// After `retire`, `destroy` waits this long (so `restore` stays possible).
    pub retention: time::Duration,
    /// A tracked application instance whose last heartbeat is older than
    /// this is stale: `promote` ignores it (it crashed, or was stopped
    /// without `untrack`).
    pub instance_ttl: time::Duration,
}

/// Default of [`Policy::instance_ttl`]: five minutes, five refreshes at the
/// suggested one-minute interval.
pub const DEFAULT_INSTANCE_TTL_SECONDS: u64 = 300;

impl Default for Policy {
    fn default() -> Self {
        Policy {
            safety_period: time::Duration::hours(24),
            retention: time::Duration::days(30),
            instance_ttl: time::Duration::seconds(DEFAULT_INSTANCE_TTL_SECONDS as i64),
        }
    }
}

/// What `promote` needs to know about one tracked application instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceFacts {
    /// For messages: label, host, pid, last heartbeat.
    pub description: String,
    /// Heartbeat within the TTL.
    pub live: bool,
    /// The key ids its keyring decrypts with.
    pub holds: Vec<String>,
}

/// What the state machine needs to know about one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyFacts {
    /// The key id.
    pub id: String,
    /// Its lifecycle state.
    pub state: LifecycleState,
    /// Whether it is marked compromised.
    pub compromised: bool,
    /// When it stopped being primary.
    pub demoted_at: Option<OffsetDateTime>,
    /// When it was retired; `None` unless retired.
    pub retired_at: Option<OffsetDateTime>,
}

/// Why a lifecycle command was refused. Nothing was written.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// No key of the catalog has this id.
    #[error("key {} is not in the catalog", keyturn_format::shown(.id))]
    UnknownKey {
        /// The id as given (a command-line argument), shown only if it looks
        /// like a key id: a key spec pasted there is never echoed.
        id: String,
    },
    /// `keys add` was given an id that the catalog already has.
    #[error("key {id:?} is already in the catalog")]
    AlreadyExists {
        /// The id already in use.
        id: String,
    },
    /// `promote` was asked for the key that is already primary.
    #[error("key {id:?} is already the current key (state primary)")]
    AlreadyPrimary {
        /// The primary key's id.
        id: String,
    },
    /// `promote` was asked for a key that is neither pending nor decrypt-only.
    #[error(
        "key {id:?} is {state}: only a pending or decrypt-only key can be promoted{hint}",
        hint = if *.state == LifecycleState::Retired { " (run `keyturn keys restore` first)" } else { "" }
    )]
    NotPromotable {
        /// The key's id.
        id: String,
        /// Its current state.
        state: LifecycleState,
    },
    /// The command would promote or restore a key marked compromised.
    #[error(
        "key {id:?} is marked compromised: it is never {action} again; add and promote a new key"
    )]
    Compromised {
        /// The compromised key's id.
        id: String,
        /// What was refused, as a past participle (`promoted`, `restored without --force`).
        action: &'static str,
    },
    /// `retire` was asked for the primary key.
    #[error(
        "key {id:?} is the current key: promote another key first, rotate, then retire this one"
    )]
    IsPrimary {
        /// The primary key's id.
        id: String,
    },
    /// `retire` without `--force` while the key still encrypts rows.
    #[error(
        "key {id:?} still encrypts {total} rows ({}): run `keyturn rotate` first; --force retires it anyway and those rows become unreadable",
        .rows.iter().map(|(c, n)| format!("{c}: {n}")).collect::<Vec<_>>().join(", ")
    )]
    RowsRemain {
        /// The key's id.
        id: String,
        /// Rows under it, over all columns.
        total: u64,
        /// Rows under it per column, columns with none left out.
        rows: Vec<(String, u64)>,
    },
    /// `retire` without `--force` before the safety period after the key
    /// stopped being primary has passed.
    #[error(
        "key {id:?} stopped being the current key at {since}; the safety period runs until {until} (readers with an old keyring may still encrypt under it); --force retires it now"
    )]
    SafetyPeriod {
        /// The key's id.
        id: String,
        /// When it stopped being primary (RFC 3339 UTC).
        since: String,
        /// When the safety period ends (RFC 3339 UTC).
        until: String,
    },
    /// `destroy` was asked for a key that is not retired.
    #[error("key {id:?} is {state}: retire it first (only retired keys can be destroyed)")]
    NotRetired {
        /// The key's id.
        id: String,
        /// Its current state.
        state: LifecycleState,
    },
    /// `destroy` without `--force` before the retention period after
    /// `retire` has passed.
    #[error(
        "key {id:?} was retired at {retired_at}; the retention period runs until {until}; --force destroys it now, and it can never be restored"
    )]
    RetentionPeriod {
        /// The key's id.
        id: String,
        /// When it was retired (RFC 3339 UTC).
        retired_at: String,
        /// When the retention period ends (RFC 3339 UTC).
        until: String,
    },
    /// `restore` was asked for a key that is not retired.
    #[error("key {id:?} is {state}: only a retired key can be restored")]
    NotRestorable {
        /// The key's id.
        id: String,
        /// Its current state.
        state: LifecycleState,
    },
    /// `restore` was asked for a destroyed key, whose material is gone.
    #[error("key {id:?} was destroyed: its material is erased and cannot be restored")]
    Destroyed {
        /// The destroyed key's id.
        id: String,
    },
    /// The key is already in the state the command would move it to.
    #[error("key {id:?} is already {state}")]
    AlreadyInState {
        /// The key's id.
        id: String,
        /// The state it is already in.
        state: LifecycleState,
    },
    /// `promote` without `--force` while live tracked application instances do not hold the key
    /// yet.
    #[error(
        "key {id:?} is not loaded by {} live application instance(s): {}; they could not decrypt values encrypted under it. Wait for them to refresh their keyring (AppKeyring::refresh, spawn_refresh, or a restart) and promote again (`keyturn keys instances` shows what each holds); --force promotes anyway",
        .instances.len(),
        .instances.join("; ")
    )]
    InstancesMissingKey {
        /// The key to be promoted.
        id: String,
        /// The live instances missing it, one description each (label, host, pid, last heartbeat).
        instances: Vec<String>,
    },
}

impl Refusal {
    /// A stable, machine-readable name.
    pub fn kind(&self) -> &'static str {
        match self {
            Refusal::UnknownKey { .. } => "unknown_key",
            Refusal::AlreadyExists { .. } => "already_exists",
            Refusal::AlreadyPrimary { .. } => "already_primary",
            Refusal::NotPromotable { .. } => "not_promotable",
            Refusal::Compromised { .. } => "compromised",
            Refusal::IsPrimary { .. } => "is_primary",
            Refusal::RowsRemain { .. } => "rows_remain",
            Refusal::SafetyPeriod { .. } => "safety_period",
            Refusal::NotRetired { .. } => "not_retired",
            Refusal::RetentionPeriod { .. } => "retention_period",
            Refusal::NotRestorable { .. } => "not_restorable",
            Refusal::Destroyed { .. } => "destroyed",
            Refusal::AlreadyInState { .. } => "already_in_state",
            Refusal::InstancesMissingKey { .. } => "instances_missing_key",
        }
    }
}

/// A state change decided by the state machine, with the warnings the
/// operator must see.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// (key id, new state), in the order to apply.
    pub changes: Vec<(String, LifecycleState)>,
    /// What the operator must know about the change (e.g. what `--force`
    /// overrode).
    pub warnings: Vec<String>,
}

fn find<'a>(keys: &'a [KeyFacts], id: &str) -> Result<&'a KeyFacts, Refusal> {
    keys.iter()
        .find(|k| k.id == id)
        .ok_or_else(|| Refusal::UnknownKey { id: id.to_owned() })
}

fn rfc3339(t: OffsetDateTime) -> String {
    keyturn_db::ts::format(t)
}

/// `promote ID`: the key becomes primary and the current primary becomes
/// decrypt-only, together. Promoting the previous primary back is the
/// rollback: values already rotated stay readable, since the demoted key
/// still decrypts. Without instance facts: [`promote_checked`] with none.
pub fn promote(keys: &[KeyFacts], id: &str) -> Result<Decision, Refusal> {
    promote_checked(keys, id, &[], false)
}

/// `promote ID [--force]` with the tracked application instances: refused
/// while a live instance does not hold the key (`--force` overrides and
/// says who cannot decrypt). Stale instances are ignored and mentioned.
/// With no live instance, the warning says that nothing was checked.
pub fn promote_checked(
    keys: &[KeyFacts],
    id: &str,
    instances: &[InstanceFacts],
    force: bool,
) -> Result<Decision, Refusal> {
    let k = find(keys, id)?;
    if k.compromised {
        return Err(Refusal::Compromised {
            id: id.to_owned(),
            action: "promoted",
        });
    }
    match k.state {
        LifecycleState::Primary => return Err(Refusal::AlreadyPrimary { id: id.to_owned() }),
        LifecycleState::Pending | LifecycleState::DecryptOnly => {}
        state => {
            return Err(Refusal::NotPromotable {
                id: id.to_owned(),
                state,
            });
        }
    }
    let live: Vec<&InstanceFacts> = instances.iter().filter(|i| i.live).collect();
    let missing: Vec<String> = live
        .iter()
        .filter(|i| !i.holds.iter().any(|h| h == id))
        .map(|i| i.description.clone())
        .collect();
    let mut warnings = Vec::new();
    if !missing.is_empty() {
        if !force {
            return Err(Refusal::InstancesMissingKey {
                id: id.to_owned(),
                instances: missing,
            });
        }
        warnings.push(format!(
            "--force: {} live application instance(s) do not hold key {id:?} and cannot decrypt values encrypted under it until they refresh: {}",
            missing.len(),
            missing.join("; ")
        ));
    }
    if live.is_empty() {
        warnings.push(format!(
            "no live application instance of this catalog is tracked (AppKeyring::track_instance), so nothing was checked: every reader must have loaded it (refreshed its keyring) before anything is encrypted with key {id:?}, or they fail to decrypt new values"
        ));
    } else if missing.is_empty() {
        warnings.push(format!(
            "all {} live tracked application instance(s) hold key {id:?}; readers that do not track themselves were not checked",
            live.len()
        ));
    }
    let stale: Vec<&str> = instances
        .iter()
        .filter(|i| !i.live)
        .map(|i| i.description.as_str())
        .collect();
    if !stale.is_empty() {
        warnings.push(format!(
            "ignored {} stale instance(s) (no heartbeat within the instance TTL): {}",
            stale.len(),
            stale.join("; ")
        ));
    }
    let mut changes = Vec::new();
    for old in keys.iter().filter(|o| o.state == LifecycleState::Primary) {
        changes.push((old.id.clone(), LifecycleState::DecryptOnly));
        warnings.push(format!(
            "key {:?} is now decrypt-only; run `keyturn rotate` to move its rows to {id:?}; `keyturn keys promote {}` rolls back",
            old.id, old.id
        ));
    }
    changes.push((id.to_owned(), LifecycleState::Primary));
    Ok(Decision { changes, warnings })
}

/// `retire ID [--force]`: the key stops decrypting. `rows` are the rows
/// still under the key, per configured column (`table.column`, count).
pub fn retire(
    keys: &[KeyFacts],
    id: &str,
    rows: &[(String, u64)],
    now: OffsetDateTime,
    policy: &Policy,
    force: bool,
) -> Result<Decision, Refusal> {
    let k = find(keys, id)?;
    match k.state {
        LifecycleState::Primary => return Err(Refusal::IsPrimary { id: id.to_owned() }),
        LifecycleState::Retired | LifecycleState::Destroyed => {
            return Err(Refusal::AlreadyInState {
                id: id.to_owned(),
                state: k.state,
            });
        }
        LifecycleState::Pending | LifecycleState::DecryptOnly => {}
    }
    let mut warnings = Vec::new();
    let remaining: Vec<(String, u64)> = rows.iter().filter(|(_, n)| *n > 0).cloned().collect();
    let total: u64 = remaining.iter().map(|(_, n)| n).sum();
    if total > 0 {
        if !force {
            return Err(Refusal::RowsRemain {
                id: id.to_owned(),
                total,
                rows: remaining,
            });
        }
        warnings.push(format!(
            "--force: {total} rows under key {id:?} become unreadable until it is restored ({})",
            remaining
                .iter()
                .map(|(c, n)| format!("{c}: {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if let Some(since) = k.demoted_at {
        let until = since + policy.safety_period;
        if now < until {
            if !force {
                return Err(Refusal::SafetyPeriod {
                    id: id.to_owned(),
                    since: rfc3339(since),
                    until: rfc3339(until),
                });
            }
            warnings.push(format!(
                "--force: within the safety period (until {}): values an application still encrypts under {id:?} become unreadable",
                rfc3339(until)
            ));
        }
    }
    Ok(Decision {
        changes: vec![(id.to_owned(), LifecycleState::Retired)],
        warnings,
    })
}

/// `destroy ID [--force]`: erases the key's material. Only a retired key,
/// and only after the retention period unless forced.
pub fn destroy(
    keys: &[KeyFacts],
    id: &str,
    now: OffsetDateTime,
    policy: &Policy,
    force: bool,
) -> Result<Decision, Refusal> {
    let k = find(keys, id)?;
    if k.state != LifecycleState::Retired {
        if k.state == LifecycleState::Destroyed {
            return Err(Refusal::AlreadyInState {
                id: id.to_owned(),
                state: k.state,
            });
        }
        return Err(Refusal::NotRetired {
            id: id.to_owned(),
            state: k.state,
        });
    }
    let mut warnings = vec![format!(
        "the material of key {id:?} is erased: values still under it can never be decrypted again"
    )];
    if let Some(at) = k.retired_at {
        let until = at + policy.retention;
        if now < until {
            if !force {
                return Err(Refusal::RetentionPeriod {
                    id: id.to_owned(),
                    retired_at: rfc3339(at),
                    until: rfc3339(until),
                });
            }
            warnings.push(format!(
                "--force: destroyed within the retention period (until {})",
                rfc3339(until)
            ));
        }
    }
    Ok(Decision {
        changes: vec![(id.to_owned(), LifecycleState::Destroyed)],
        warnings,
    })
}

/// `restore ID`: a retired key decrypts again (decrypt-only).
pub fn restore(keys: &[KeyFacts], id: &str, force: bool) -> Result<Decision, Refusal> {
    let k = find(keys, id)?;
    match k.state {
        LifecycleState::Retired => {}
        LifecycleState::Destroyed => return Err(Refusal::Destroyed { id: id.to_owned() }),
        state => {
            return Err(Refusal::NotRestorable {
                id: id.to_owned(),
                state,
            });
        }
    }
    let mut warnings = Vec::new();
    if k.compromised {
        if !force {
            return Err(Refusal::Compromised {
                id: id.to_owned(),
                action: "restored without --force",
            });
        }
        warnings.push(format!(
            "--force: compromised key {id:?} decrypts again; rotate its rows and retire it as soon as possible"
        ));
    }
    Ok(Decision {
        changes: vec![(id.to_owned(), LifecycleState::DecryptOnly)],
        warnings,
    })
}

/// `compromised ID`: flags the key. Its state does not change; the warnings
/// say what to do next.
pub fn mark_compromised(keys: &[KeyFacts], id: &str) -> Result<Decision, Refusal> {
    let k = find(keys, id)?;
    let mut warnings = Vec::new();
    match k.state {
        LifecycleState::Primary => warnings.push(format!(
            "key {id:?} is still the current key: add a new key, promote it, then `keyturn rotate` (rows under {id:?} are rotated first)"
        )),
        LifecycleState::Destroyed => {}
        _ => warnings.push(format!(
            "run `keyturn rotate` to move every row off {id:?}, then retire it"
        )),
    }
    Ok(Decision {
        changes: vec![(id.to_owned(), k.state)],
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use LifecycleState::*;
    use time::macros::datetime;

    fn k(id: &str, state: LifecycleState) -> KeyFacts {
        KeyFacts {
            id: id.into(),
            state,
            compromised: false,
            demoted_at: None,
            retired_at: None,
        }
    }

    const NOW: OffsetDateTime = datetime!(2026-01-10 12:00 UTC);

    #[test]
    fn an_unknown_id_is_shown_only_if_it_looks_like_one() {
        let keys = [k("k1", Primary)];
        let e = promote(&keys, "k9").unwrap_err().to_string();
        assert_eq!(e, "key \"k9\" is not in the catalog");
        let spec = "k1:aes256gcm:q0cXZq+Wv7pj8sLXS9N4DhfOQ1H/4jVXk4GMI84kvgE=";
        let e = promote(&keys, spec).unwrap_err().to_string();
        assert_eq!(e, "key (value not shown) is not in the catalog");
    }

    #[test]
    fn promote_demotes_the_old_primary_and_rollback_is_one_promote() {
        let keys = [k("k1", Primary), k("k2", Pending)];
        let d = promote(&keys, "k2").unwrap();
        assert_eq!(
            d.changes,
            vec![("k1".into(), DecryptOnly), ("k2".into(), Primary)]
        );
        assert!(d.warnings[0].contains("every reader must have loaded it"));
        // Rollback: the previous primary is decrypt-only and promotable.
        let keys = [k("k1", DecryptOnly), k("k2", Primary)];
        let d = promote(&keys, "k1").unwrap();
        assert_eq!(
            d.changes,
            vec![("k2".into(), DecryptOnly), ("k1".into(), Primary)]
        );
    }

    #[test]
    fn promote_checks_live_instances() {
        let keys = [k("k1", Primary), k("k2", Pending)];
        let inst = |d: &str, live: bool, holds: &[&str]| InstanceFacts {
            description: d.into(),
            live,
            holds: holds.iter().map(|h| (*h).to_owned()).collect(),
        };
        let web = inst("web (host a, pid 1)", true, &["k1"]);
        let worker = inst("worker (host b, pid 2)", true, &["k1", "k2"]);
        let old = inst("legacy (host c, pid 3)", false, &["k1"]);
        let all = [web.clone(), worker.clone(), old.clone()];
        let e = promote_checked(&keys, "k2", &all, false).unwrap_err();
        assert_eq!(e.kind(), "instances_missing_key");
        let msg = e.to_string();
        assert!(msg.contains("web (host a, pid 1)"), "{msg}");
        assert!(!msg.contains("worker") && !msg.contains("legacy"), "{msg}");
        assert!(msg.contains("--force"), "{msg}");
        // --force: promoted, with a warning naming the instance.
        let d = promote_checked(&keys, "k2", &all, true).unwrap();
        assert_eq!(d.changes.last(), Some(&("k2".to_string(), Primary)));
        assert!(d.warnings[0].contains("--force") && d.warnings[0].contains("web"));
        // Every live instance holds it: promoted; the stale one is named.
        let d = promote_checked(&keys, "k2", &[worker.clone(), old.clone()], false).unwrap();
        assert!(d.warnings[0].contains("all 1 live"), "{:?}", d.warnings);
        assert!(d.warnings[1].contains("stale") && d.warnings[1].contains("legacy (host c"));
        // Only stale instances: the untracked warning.
        let d = promote_checked(&keys, "k2", &[old], false).unwrap();
        assert!(d.warnings[0].contains("every reader must have loaded"));
        // Other refusals come first.
        assert_eq!(
            promote_checked(&keys, "k1", &all, true).unwrap_err().kind(),
            "already_primary"
        );
    }

    #[test]
    fn promote_refusals() {
        let mut c = k("kc", Pending);
        c.compromised = true;
        let keys = [k("k1", Primary), k("kr", Retired), k("kd", Destroyed), c];
        assert_eq!(promote(&keys, "k1").unwrap_err().kind(), "already_primary");
        let e = promote(&keys, "kr").unwrap_err();
        assert_eq!(e.kind(), "not_promotable");
        assert!(e.to_string().contains("restore"), "{e}");
        assert_eq!(promote(&keys, "kd").unwrap_err().kind(), "not_promotable");
        assert_eq!(promote(&keys, "kc").unwrap_err().kind(), "compromised");
        assert_eq!(promote(&keys, "nope").unwrap_err().kind(), "unknown_key");
    }

    #[test]
    fn retire_checks_primary_rows_and_safety_period() {
        let p = Policy::default();
        let mut old = k("k1", DecryptOnly);
        old.demoted_at = Some(NOW - time::Duration::hours(2));
        let keys = [old.clone(), k("k2", Primary)];
        assert_eq!(
            retire(&keys, "k2", &[], NOW, &p, true).unwrap_err().kind(),
            "is_primary"
        );
        let rows = vec![("t.a".to_string(), 3), ("t.b".to_string(), 0)];
        let e = retire(&keys, "k1", &rows, NOW, &p, false).unwrap_err();
        assert_eq!(e.kind(), "rows_remain");
        assert!(e.to_string().contains("t.a: 3"), "{e}");
        assert!(!e.to_string().contains("t.b"), "{e}");
        let e = retire(&keys, "k1", &[], NOW, &p, false).unwrap_err();
        assert_eq!(e.kind(), "safety_period");
        assert!(e.to_string().contains("2026-01-11T10:00:00.000Z"), "{e}");
        // After the safety period, with no rows: retired.
        let later = NOW + time::Duration::hours(23);
        let d = retire(&keys, "k1", &rows[1..], later, &p, false).unwrap();
        assert_eq!(d.changes, vec![("k1".into(), Retired)]);
        assert!(d.warnings.is_empty());
        // --force says what becomes unreadable.
        let d = retire(&keys, "k1", &rows, NOW, &p, true).unwrap();
        assert!(
            d.warnings
                .iter()
                .any(|w| w.contains("3 rows") && w.contains("unreadable"))
        );
        assert!(d.warnings.iter().any(|w| w.contains("safety period")));
        // A pending key never encrypted anything: no safety period.
        let keys = [k("k3", Pending)];
        retire(&keys, "k3", &[], NOW, &p, false).unwrap();
        let keys = [k("k3", Retired)];
        assert_eq!(
            retire(&keys, "k3", &[], NOW, &p, false).unwrap_err().kind(),
            "already_in_state"
        );
    }

    #[test]
    fn destroy_only_after_retire_and_retention() {
        let p = Policy::default();
        let keys = [k("k1", DecryptOnly)];
        assert_eq!(
            destroy(&keys, "k1", NOW, &p, true).unwrap_err().kind(),
            "not_retired"
        );
        let mut r = k("k1", Retired);
        r.retired_at = Some(NOW - time::Duration::days(3));
        let keys = [r];
        let e = destroy(&keys, "k1", NOW, &p, false).unwrap_err();
        assert_eq!(e.kind(), "retention_period");
        let d = destroy(&keys, "k1", NOW, &p, true).unwrap();
        assert_eq!(d.changes, vec![("k1".into(), Destroyed)]);
        destroy(&keys, "k1", NOW + time::Duration::days(28), &p, false).unwrap();
        let keys = [k("k1", Destroyed)];
        assert_eq!(
            destroy(&keys, "k1", NOW, &p, true).unwrap_err().kind(),
            "already_in_state"
        );
    }

    #[test]
    fn restore_and_compromised() {
        let keys = [k("k1", Retired), k("k2", Destroyed), k("k3", Primary)];
        assert_eq!(
            restore(&keys, "k1", false).unwrap().changes,
            vec![("k1".into(), DecryptOnly)]
        );
        assert_eq!(restore(&keys, "k2", true).unwrap_err().kind(), "destroyed");
        assert_eq!(
            restore(&keys, "k3", false).unwrap_err().kind(),
            "not_restorable"
        );
        let mut c = k("k1", Retired);
        c.compromised = true;
        let keys = [c];
        assert_eq!(
            restore(&keys, "k1", false).unwrap_err().kind(),
            "compromised"
        );
        assert!(!restore(&keys, "k1", true).unwrap().warnings.is_empty());

        let keys = [k("k3", Primary)];
        let d = mark_compromised(&keys, "k3").unwrap();
        assert_eq!(d.changes, vec![("k3".into(), Primary)]);
        assert!(d.warnings[0].contains("promote"));
    }

    #[test]
    fn state_names_round_trip() {
        for s in [Pending, Primary, DecryptOnly, Retired, Destroyed] {
            assert_eq!(LifecycleState::from_name(s.name()), Some(s));
        }
        assert_eq!(LifecycleState::from_name("active"), None);
    }
}
