//! The `keyturn` binary: parses arguments, runs the command, maps the outcome
//! to an exit code. Everything else lives in the library crates.
#![forbid(unsafe_code)]

#[macro_use]
mod output;
mod app;
mod bad_rows_cmd;
mod catalog_cmd;
mod cli;
mod compliance;
mod demo;
mod exit;
mod kms_cmd;
mod metrics;
mod runs_cmd;
mod table;

use std::process::ExitCode;

fn main() -> ExitCode {
    let raw: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // Whether the parse error of a malformed command line is a JSON
    // document too: `--json` anywhere before a `--`.
    let json_given = raw
        .iter()
        .skip(1)
        .take_while(|a| *a != "--")
        .any(|a| a == "--json");
    let (args, matches) = match cli::parse(&raw) {
        Ok(parsed) => parsed,
        Err(e) => return parse_error(e, json_given),
    };
    let json = args.json;
    if let Some(m) = cli::unused_flag(&matches) {
        let err = anyhow::Error::new(keyturn_engine::EngineError::Usage(m));
        output::print_error(&err, json_given);
        return exit::Exit::Usage.into();
    }
    match app::run(args) {
        Ok(code) => code.into(),
        Err(err) => {
            let code = exit::code_for(&err);
            output::print_error(&err, json);
            code.into()
        }
    }
}

/// clap's answer to a command line it could not parse: its message on
/// stderr as always, and with `--json` the error document on stdout
/// (kind `usage`). `--help` and `--version` print as usual.
fn parse_error(e: clap::Error, json: bool) -> ExitCode {
    use clap::error::ErrorKind;
    let code = u8::try_from(e.exit_code()).unwrap_or(exit::Exit::Usage as u8);
    if !json || matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        e.exit();
    }
    let text = if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        "this command needs a subcommand (see --help)".to_owned()
    } else {
        let rendered = e.render().to_string();
        let first = rendered.lines().next().unwrap_or_default();
        first.strip_prefix("error: ").unwrap_or(first).to_owned()
    };
    output::print_json_or_warn(&output::error_document(&text, "usage", code));
    let _ = e.print();
    ExitCode::from(code)
}
