//! Command-line interface. Key material is never an argument: keys come from
//! the sources named in the config (env:NAME, file:PATH, stdin).

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(name = "keyturn", version, about = "Rotate application-level encryption keys in live databases", long_about = None)]
pub struct Cli {
    /// Config file [default: $KEYTURN_CONFIG, else ./keyturn.toml]
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Machine-readable JSON on stdout
    #[arg(long, global = true)]
    pub json: bool,

    /// Who runs this, for the run record [default: $USER@host]
    #[arg(long, global = true, value_name = "NAME")]
    pub actor: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Per column: rows, NULLs, rows per key id, plaintext or unknown values
    Status(TargetArgs),
    /// Re-encrypt every value not under the primary key, online and resumable
    Rotate(RunArgs),
    /// Encrypt plaintext values in place (first migration of a plaintext column)
    Encrypt(RunArgs),
    /// Exit 0 only if every value is under the primary key (--deep: and decrypts)
    Verify(VerifyArgs),
    /// Create a sample SQLite database, encrypt it, rotate it, verify it
    Demo(DemoArgs),
    /// Key material
    #[command(subcommand)]
    Keys(KeysCommand),
    /// The audit trail: list or export events, verify the hash chain
    #[command(subcommand)]
    Audit(crate::compliance::AuditCommand),
    /// Which columns' keys are due for rotation (exit 0 ok, 10 due soon, 11 overdue)
    Due(crate::compliance::DueArgs),
    /// Evidence report for auditors: --html FILE (one self-contained page) or --json
    Report(crate::compliance::ReportArgs),
}

#[derive(Args, Debug, Clone, Default)]
pub struct TargetArgs {
    /// Only this table
    #[arg(long, value_name = "T")]
    pub table: Option<String>,
    /// Only this column
    #[arg(long, value_name = "C")]
    pub column: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Read and decrypt everything, write nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Rows per batch [default: from config, else 5000]
    #[arg(long, value_name = "N")]
    pub batch_size: Option<usize>,
    /// Batches written concurrently [default: from config, else 2]
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// Throttle to at most this many rows per second
    #[arg(long, value_name = "R")]
    pub max_rows_per_sec: Option<u64>,
    #[command(flatten)]
    pub audit: crate::compliance::RunAuditArgs,
}

#[derive(Args, Debug, Clone)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Decrypt every value (with its context), not just read key ids
    #[arg(long)]
    pub deep: bool,
}

#[derive(Args, Debug, Clone)]
pub struct DemoArgs {
    /// Directory for the demo database, keys and config
    #[arg(long, default_value = "keyturn-demo", value_name = "DIR")]
    pub dir: PathBuf,
    /// Number of sample patient rows
    #[arg(long, default_value_t = 100_000, value_name = "N")]
    pub rows: u64,
}

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Print a new key spec (<id>:<alg>:<base64>) from the OS random generator, and nothing else
    Generate {
        /// Key id [default: k<YYYYMMDD>]
        #[arg(long, value_name = "ID")]
        id: Option<String>,
        /// aes256gcm or xchacha20poly1305
        #[arg(long, default_value = "aes256gcm", value_name = "ALG")]
        alg: String,
    },
}
