//! `keyturn kms retire-old-versions`: after a verified rotation of columns
//! rotated inside a KMS (`kms = "NAME"`), retire the key versions no row
//! needs any more (transit `min_decryption_version`).

use crate::cli::{Cli, TargetArgs};
use crate::exit::Exit;
use crate::output::print_json;
use anyhow::Result;
use clap::Subcommand;

#[derive(Subcommand, Debug)]
pub enum KmsCommand {
    /// Raise each kms column's key to accept only its latest version (transit min_decryption_version), refused while any row is under an older version (audited)
    #[command(name = "retire-old-versions")]
    RetireOldVersions(TargetArgs),
}

pub async fn run(cli: &Cli, cmd: &KmsCommand, actor: &str) -> Result<Exit> {
    let KmsCommand::RetireOldVersions(target) = cmd;
    let session = crate::app::open_session(cli, target, 2).await?;
    let done = keyturn_ops::kms::retire_older_versions(&session, actor).await;
    session.close().await;
    let done = done?;
    if cli.json {
        print_json(&serde_json::json!({ "columns": done }))?;
    } else {
        for r in &done {
            outln!("{}.{} ({}): {}", r.table, r.column, r.kms, r.outcome);
        }
    }
    Ok(Exit::Ok)
}
