//! Command-line interface. Key material is never an argument: keys come from
//! the sources named in the config (env:NAME, file:PATH, stdin).

use clap::builder::RangedU64ValueParser;
use clap::parser::ValueSource;
use clap::{
    ArgAction, ArgMatches, Args, CommandFactory as _, FromArgMatches as _, Parser, Subcommand,
};
use keyturn_engine::config::{
    BATCH_SIZE_MAX, BATCH_SIZE_MIN, MAX_ROWS_PER_SEC_MIN, WORKERS_MAX, WORKERS_MIN,
};
use std::path::PathBuf;

/// A flag taking a whole number in `min..=max` (the config's own range: a
/// value outside it is a usage error, exit 2, never silently clamped).
fn usize_in(min: usize, max: usize) -> RangedU64ValueParser<usize> {
    RangedU64ValueParser::new().range(min as u64..=max as u64)
}

/// `--max-rows-per-sec`: at least [`MAX_ROWS_PER_SEC_MIN`]; 0 is refused
/// rather than read as "no limit".
fn rows_per_sec(s: &str) -> Result<u64, String> {
    let r: u64 = s
        .parse()
        .map_err(|_| "a whole number of rows per second".to_owned())?;
    if r < MAX_ROWS_PER_SEC_MIN {
        return Err(format!(
            "{r} would let no row through; the least is {MAX_ROWS_PER_SEC_MIN} (leave the flag out for no limit)"
        ));
    }
    Ok(r)
}

/// Shown after `keyturn --help`: the terminal conventions.
const AFTER_HELP: &str = "\
Output: results go to stdout; progress, notes, warnings and errors to stderr, \
each message as `level: text` (`error:`, `warning:`, `info:`, `debug:`). \
-q keeps only the results and errors; -v adds info lines, -vv debug, -vvv trace. \
KEYTURN_LOG=FILTER (a tracing filter such as `debug` or `warn,keyturn_engine=trace`) \
sets the log's levels instead of -q/-v. --color auto (the default) colours only a \
terminal and honours NO_COLOR; always and never override it.";

/// The global flags a command has no use for: (command path, flag, why).
/// They are hidden from its `--help` and refused when given (usage error,
/// exit 2), before the command runs.
pub const NOT_FOR: &[(&[&str], &str, &str)] = &[
    (
        &["demo"],
        "config",
        "the demo writes its own config into --dir and uses it",
    ),
    (
        &["demo"],
        "actor",
        "the demo's runs are recorded in its own database as you ($USER@host)",
    ),
    (
        &["keys", "generate"],
        "config",
        "it reads no config: it prints a new key from the OS random generator",
    ),
    (
        &["keys", "generate"],
        "actor",
        "it records nothing: it only prints a new key",
    ),
    (
        &["keys", "generate"],
        "json",
        "its output is a key spec, already one machine-readable line <id>:<alg>:<base64>; a secret is not put in a report (docs/JSON.md)",
    ),
    (&["completions"], "config", "it prints a completion script"),
    (&["completions"], "actor", "it prints a completion script"),
    (
        &["completions"],
        "json",
        "it prints a completion script, not JSON",
    ),
    (&["man"], "config", "it prints the man page"),
    (&["man"], "actor", "it prints the man page"),
    (&["man"], "json", "it prints the man page (roff), not JSON"),
];

/// The parser: [`Cli`]'s definition, with each global flag a command has
/// no use for ([`NOT_FOR`]) hidden from that command's help.
pub fn command() -> clap::Command {
    let mut cmd = Cli::command();
    for (path, flag, _) in NOT_FOR {
        // The command gets a hidden copy of the global flag before clap
        // builds the parser; clap then propagates the visible one to every
        // other command only. The copy stays global, so its value reaches
        // `Cli` (and [`unused_flag`] refuses it).
        let copy = cmd
            .get_arguments()
            .find(|a| a.get_id() == *flag)
            .map(|a| a.clone().hide(true));
        if let Some(copy) = copy {
            cmd = add_in(cmd, path, copy);
        }
    }
    cmd
}

fn add_in(cmd: clap::Command, path: &[&str], arg: clap::Arg) -> clap::Command {
    match path.split_first() {
        None => cmd.arg(arg),
        Some((first, rest)) => cmd.mut_subcommand(*first, |sub| add_in(sub, rest, arg)),
    }
}

/// The usage error for a global flag given to a command that has no use
/// for it ([`NOT_FOR`]), if one was.
pub fn unused_flag(matches: &ArgMatches) -> Option<String> {
    let mut path = Vec::new();
    let mut leaf = matches;
    while let Some((name, sub)) = leaf.subcommand() {
        path.push(name);
        leaf = sub;
    }
    NOT_FOR.iter().find_map(|(p, flag, why)| {
        (*p == path.as_slice() && leaf.value_source(flag) == Some(ValueSource::CommandLine)).then(
            || {
                format!(
                    "--{flag} means nothing for `keyturn {}`: {why}",
                    path.join(" ")
                )
            },
        )
    })
}

#[derive(Parser, Debug)]
#[command(name = "keyturn", version, about = "Rotate application-level encryption keys in live databases", long_about = None, after_help = AFTER_HELP)]
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

    /// Less on stderr: only errors (no progress, notes or warnings; -qq is the same); results stay on stdout
    #[arg(short, long, global = true, action = ArgAction::Count, conflicts_with = "verbose")]
    pub quiet: u8,

    /// More on stderr: -v info, -vv debug, -vvv trace [KEYTURN_LOG overrides]
    #[arg(short, long, global = true, action = ArgAction::Count)]
    pub verbose: u8,

    /// When to colour: auto colours a terminal, unless NO_COLOR is set
    #[arg(long, global = true, value_name = "WHEN", default_value = "auto")]
    pub color: clap::ColorChoice,

    #[command(subcommand)]
    pub command: Command,
}

/// Parses the command line with [`command`], clap's own help and errors
/// coloured as `--color` says (read before parsing: clap prints usage
/// errors while it parses). A parse error is returned for the caller to
/// print (with `--json`, as the error document too).
pub fn parse(args: &[std::ffi::OsString]) -> Result<(Cli, ArgMatches), clap::Error> {
    let mut cmd = command().color(color_arg(args));
    let matches = cmd.try_get_matches_from_mut(args)?;
    let cli = Cli::from_arg_matches(&matches).map_err(|e| e.format(&mut cmd))?;
    Ok((cli, matches))
}

/// The last `--color WHEN` / `--color=WHEN` before `--`; `auto` when there
/// is none or it is not a valid choice (the parser then reports it).
fn color_arg(args: &[std::ffi::OsString]) -> clap::ColorChoice {
    let mut choice = clap::ColorChoice::Auto;
    let mut it = args.iter().skip(1).map(|a| a.to_string_lossy());
    while let Some(a) = it.next() {
        let value = match a.as_ref() {
            "--" => break,
            "--color" => it.next().map(|v| v.into_owned()),
            other => other.strip_prefix("--color=").map(str::to_owned),
        };
        if let Some(v) = value
            && let Ok(c) = <clap::ColorChoice as clap::ValueEnum>::from_str(&v, false)
        {
            choice = c;
        }
    }
    choice
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Per column: rows, NULLs, rows per key id, values of the format without a key id, unrecognized values
    Status(StatusArgs),
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
    /// The key-encryption key of the key catalog
    #[command(subcommand)]
    Kek(KekCommand),
    /// Rows keyturn could not process (garbage, plaintext, wrong encoding, unknown key): list them, acknowledge them
    #[command(subcommand, name = "bad-rows")]
    BadRows(crate::bad_rows_cmd::BadRowsCommand),
    /// Running and recent runs (any host); pause, resume or stop the running one
    Runs(crate::runs_cmd::RunsArgs),
    /// Print a shell completion script: bash, zsh, fish, powershell or elvish
    Completions {
        /// The shell
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print keyturn's man page (roff): `keyturn man > keyturn.1`; with --dir, write it and one page per subcommand (keyturn-status.1, keyturn-keys-add.1, …)
    Man {
        /// Write keyturn.1 and every subcommand's page into this directory (created if missing) instead of printing keyturn.1
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Columns rotated inside a KMS (kms = "NAME"): retire the key versions no row needs
    #[command(subcommand)]
    Kms(crate::kms_cmd::KmsCommand),
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
    /// Rows per batch, 1 to 100000 [default: from config, else 5000]
    #[arg(long, value_name = "N", value_parser = usize_in(BATCH_SIZE_MIN, BATCH_SIZE_MAX))]
    pub batch_size: Option<usize>,
    /// Batches in flight, 1 to 64 [default: from config, else 2; 1 on SQLite]
    #[arg(long, value_name = "N", value_parser = usize_in(WORKERS_MIN, WORKERS_MAX))]
    pub workers: Option<usize>,
    /// Throttle to at most this many rows per second (at least 1) [default: from config, else no limit]
    #[arg(long, value_name = "R", value_parser = rows_per_sec)]
    pub max_rows_per_sec: Option<u64>,
    /// Serve /metrics (Prometheus) and /health on IP:PORT while the run runs, e.g. 127.0.0.1:9187 [default: [metrics] addr in the config, else none]
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// rotate: rows under keys the keyring cannot decrypt (unknown or retired) are recorded as bad rows and left untouched, and the rest is rotated, instead of the preflight refusing the run
    #[arg(long)]
    pub skip_unknown_keys: bool,
    /// rotate with a key catalog: the whole staged sequence in one go: add NEW
    /// if missing, promote it, re-encrypt, check and retire the old primary
    /// once its safety period has passed
    #[arg(long, value_name = "NEW")]
    pub to: Option<String>,
    #[command(flatten)]
    pub audit: crate::compliance::RunAuditArgs,
}

#[derive(Args, Debug, Clone)]
pub struct StatusArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Decrypt every value to count per key (formats without a key id, such as Fernet, Laravel or Lockbox), instead of counting in SQL
    #[arg(long)]
    pub deep: bool,
}

#[derive(Args, Debug, Clone)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Decrypt every value (with its context), not just read key ids
    #[arg(long)]
    pub deep: bool,
    /// Do not record the result in the audit trail (e.g. a read-only login)
    #[arg(long)]
    pub no_record: bool,
}

#[derive(Args, Debug, Clone)]
pub struct DemoArgs {
    /// Directory for the demo database, keys and config
    #[arg(long, default_value = "keyturn-demo", value_name = "DIR")]
    pub dir: PathBuf,
    /// Number of sample patient rows
    #[arg(long, default_value_t = 100_000, value_name = "N")]
    pub rows: u64,
    /// Overwrite the demo's database, config and key file if DIR holds them already
    #[arg(long)]
    pub force: bool,
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
    /// Catalog: add a new key (generated, or imported from key specs) as pending, wrapped by the KEK
    Add {
        /// Key id [default: k<YYYYMMDD>]; with --import, only the spec with this id
        #[arg(long, value_name = "ID")]
        id: Option<String>,
        /// aes256gcm or xchacha20poly1305 (generated keys)
        #[arg(long, default_value = "aes256gcm", value_name = "ALG")]
        alg: String,
        /// Import key specs instead of generating: env:NAME, file:PATH or stdin
        #[arg(long, value_name = "SOURCE")]
        import: Option<String>,
    },
    /// Catalog: every key with its state, fingerprint and KEK (never key material)
    List,
    /// Catalog: make a key primary (the old primary becomes decrypt-only; promote it back to roll back); refused while a live tracked application instance does not hold it
    Promote {
        #[arg(value_name = "ID")]
        id: String,
        /// Promote although live tracked instances do not hold the key (audited; they cannot decrypt new values until they refresh)
        #[arg(long)]
        force: bool,
    },
    /// Catalog: tracked application instances (AppKeyring::track_instance): host, pid, label, keys held, live or stale
    Instances {
        /// Delete the rows of stale instances (no heartbeat within instance_ttl_seconds)
        #[arg(long)]
        prune: bool,
    },
    /// Catalog: stop a key from decrypting (refused while rows use it or within the safety period)
    Retire {
        #[arg(value_name = "ID")]
        id: String,
        /// Retire anyway; says which rows become unreadable
        #[arg(long)]
        force: bool,
    },
    /// Catalog: erase a retired key's material (refused within the retention period)
    Destroy {
        #[arg(value_name = "ID")]
        id: String,
        /// Destroy within the retention period
        #[arg(long)]
        force: bool,
    },
    /// Catalog: let a retired key decrypt again (decrypt-only)
    Restore {
        #[arg(value_name = "ID")]
        id: String,
        /// Restore a compromised key
        #[arg(long)]
        force: bool,
    },
    /// Catalog: flag a key as compromised (never promoted again; rotate moves rows off it first)
    Compromised {
        #[arg(value_name = "ID")]
        id: String,
    },
    /// Catalog: load the keyring and encrypt and decrypt a probe with the primary
    SelfTest,
}

#[derive(Subcommand, Debug)]
pub enum KekCommand {
    /// Rewrap every DEK of the catalog under a new KEK, in one transaction; no data row is touched. Inside the KMS when old and new KEK share it (AWS ReEncrypt, transit rewrap)
    Rotate(KekRotateArgs),
}

/// The new KEK's settings (same names as in `[catalog]`); secrets by env:NAME / file:PATH only.
#[derive(Args, Debug, Clone)]
pub struct KekRotateArgs {
    /// local, aws-kms or vault-transit
    #[arg(long, value_name = "KIND")]
    pub to: String,
    /// local: env:NAME or file:PATH of the new master key
    #[arg(long, value_name = "SOURCE")]
    pub master_key: Option<String>,
    /// aws-kms: key id, ARN or alias
    #[arg(long, value_name = "ID")]
    pub key_id: Option<String>,
    #[arg(long, value_name = "REGION")]
    pub region: Option<String>,
    #[arg(long, value_name = "URL")]
    pub endpoint_url: Option<String>,
    #[arg(long, value_name = "NAME")]
    pub profile: Option<String>,
    /// vault-transit: http(s)://host:port
    #[arg(long, value_name = "URL")]
    pub address: Option<String>,
    #[arg(long, value_name = "PATH")]
    pub mount: Option<String>,
    /// vault-transit: the transit key's name
    #[arg(long, value_name = "NAME")]
    pub key: Option<String>,
    /// vault-transit: env:NAME or file:PATH of the token
    #[arg(long, value_name = "SOURCE")]
    pub token: Option<String>,
    #[arg(long, value_name = "NS")]
    pub namespace: Option<String>,
    /// vault-transit: how new wraps bind the context: embedded (default; later rotations stay inside transit) or aad
    #[arg(long, value_name = "BINDING")]
    pub binding: Option<String>,
    /// vault-transit: first create a new version of the transit key (POST <mount>/keys/<name>/rotate), then rewrap every DEK to it inside transit
    #[arg(long)]
    pub new_version: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::ColorChoice;

    fn args(a: &[&str]) -> Vec<std::ffi::OsString> {
        a.iter().map(Into::into).collect()
    }

    #[test]
    fn color_is_read_before_parsing() {
        assert_eq!(color_arg(&args(&["keyturn", "status"])), ColorChoice::Auto);
        assert_eq!(
            color_arg(&args(&["keyturn", "--color", "never", "status"])),
            ColorChoice::Never
        );
        assert_eq!(
            color_arg(&args(&["keyturn", "status", "--color=always"])),
            ColorChoice::Always
        );
        assert_eq!(
            color_arg(&args(&["keyturn", "--color=bogus", "status"])),
            ColorChoice::Auto
        );
        assert_eq!(
            color_arg(&args(&["keyturn", "x", "--", "--color=never"])),
            ColorChoice::Auto
        );
    }

    #[test]
    fn quiet_and_verbose_count_and_conflict() {
        let c = Cli::try_parse_from(["keyturn", "-vv", "status"]).expect("parses");
        assert_eq!((c.quiet, c.verbose), (0, 2));
        let c = Cli::try_parse_from(["keyturn", "status", "-qq"]).expect("parses");
        assert_eq!((c.quiet, c.verbose), (2, 0));
        assert!(Cli::try_parse_from(["keyturn", "-q", "-v", "status"]).is_err());
        let c = Cli::try_parse_from(["keyturn", "--color", "never", "due"]).expect("parses");
        assert_eq!(c.color, ColorChoice::Never);
        Cli::command().debug_assert();
    }

    fn parse(args: &[&str]) -> ArgMatches {
        command()
            .try_get_matches_from(args)
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    #[test]
    fn unused_global_flags_are_refused_in_either_position() {
        for args in [
            &["keyturn", "--config", "k.toml", "demo"][..],
            &["keyturn", "demo", "--config", "k.toml"],
            &["keyturn", "keys", "generate", "--json"],
            &["keyturn", "--actor", "me", "keys", "generate"],
            &["keyturn", "--json", "man"],
            &["keyturn", "completions", "bash", "--config", "k.toml"],
        ] {
            let m = parse(args);
            let e = unused_flag(&m).unwrap_or_else(|| panic!("{args:?} accepted"));
            assert!(e.contains("means nothing for `keyturn "), "{e}");
        }
        for args in [
            &["keyturn", "--config", "k.toml", "status"][..],
            &["keyturn", "keys", "add", "--actor", "me", "--json"],
            &["keyturn", "demo", "--json"],
            &["keyturn", "keys", "generate", "--id", "k2"],
        ] {
            assert_eq!(unused_flag(&parse(args)), None, "{args:?}");
        }
    }

    #[test]
    fn help_offers_only_the_flags_a_command_uses() {
        let mut cmd = command();
        // As when parsing: the global flags propagated.
        cmd.build();
        let help = |cmd: &clap::Command, path: &[&str]| {
            let mut c = cmd.clone();
            for p in path {
                c = c.find_subcommand(p).expect("a subcommand").clone();
            }
            c.render_help().to_string()
        };
        let demo = help(&cmd, &["demo"]);
        assert!(
            !demo.contains("--config") && !demo.contains("--actor"),
            "{demo}"
        );
        assert!(demo.contains("--json"), "{demo}");
        let generate = help(&cmd, &["keys", "generate"]);
        assert!(!generate.contains("--json"), "{generate}");
        let status = help(&cmd, &["status"]);
        for flag in ["--config", "--actor", "--json"] {
            assert!(status.contains(flag), "{flag}: {status}");
        }
        // The parser still parses into `Cli`.
        let m = parse(&["keyturn", "--json", "status"]);
        let cli = <Cli as clap::FromArgMatches>::from_arg_matches(&m).expect("a Cli");
        assert!(cli.json);
    }
}
