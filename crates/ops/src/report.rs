//! What `due` and `report` read from the database, for keyturn-audit's pure
//! report logic.

use crate::Config;
use keyturn_audit::AuditError;
use keyturn_audit::report::{ColumnDistribution, EvidenceReport, KeyCount, ReportConfig};
use keyturn_db::Database;
use keyturn_engine::Plan;
use time::OffsetDateTime;

/// What the report needs of the config.
pub fn report_config(cfg: &Config) -> ReportConfig {
    ReportConfig {
        primary: cfg.keys.primary.clone(),
        retired: cfg.keys.retired.clone(),
        policy: cfg.policy.clone(),
    }
}

/// Counts every planned column's values per key id (the census: the same
/// counts `status` shows).
pub async fn distribution(
    db: &dyn Database,
    cfg: &Config,
    plan: &Plan,
) -> Result<Vec<ColumnDistribution>, AuditError> {
    let mut out = Vec::new();
    for c in &plan.columns {
        let counts = db.count_keys(&c.col, &c.census()).await?;
        let mut by_key: Vec<KeyCount> = counts
            .by_key
            .into_iter()
            .map(|k| KeyCount {
                key_id: k.key_id,
                rows: k.rows,
            })
            .collect();
        by_key.sort_by(|a, b| b.rows.cmp(&a.rows).then(a.key_id.cmp(&b.key_id)));
        out.push(ColumnDistribution {
            table: c.col.table.clone(),
            column: c.col.column.clone(),
            total: counts.total,
            nulls: counts.nulls,
            by_key,
            keyless: counts.keyless,
            unrecognized: counts.unrecognized,
            candidates: declared_keys(cfg, &c.col.table, &c.col.column),
            primary: cfg
                .keyring_config_for(&c.col.table, &c.col.column)
                .and(c.ring().ok())
                .map(|r| r.primary_id().to_string()),
        });
    }
    Ok(out)
}

/// Keys declared for a column: `[[policy.key]]` ids and the primary and
/// retired keys its keyring's config names.
fn declared_keys(cfg: &Config, table: &str, column: &str) -> Vec<String> {
    let mut ids: Vec<String> = cfg.policy.keys.iter().map(|k| k.id.clone()).collect();
    if let Some(k) = cfg.keyring_config_for(table, column) {
        ids.extend(k.primary.iter().cloned());
        ids.extend(k.retired.iter().cloned());
    }
    ids.sort();
    ids.dedup();
    ids
}

/// Reads everything from the database and builds the report.
pub async fn gather(
    db: &dyn Database,
    cfg: &Config,
    plan: &Plan,
    database: &str,
    now: OffsetDateTime,
) -> Result<EvidenceReport, AuditError> {
    let columns = distribution(db, cfg, plan).await?;
    let rows = keyturn_audit::read_rows(db).await?;
    let open = keyturn_db::open_runs(db).await?;
    let mut v = keyturn_audit::ChainVerifier::new();
    for r in &rows {
        v.push_row(r);
    }
    keyturn_audit::report::build_with_runs(
        now,
        &report_config(cfg),
        database,
        columns,
        &rows,
        v.finish(),
        &open,
    )
}
