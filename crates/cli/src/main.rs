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
    let args = cli::parse();
    let json = args.json;
    match app::run(args) {
        Ok(code) => code.into(),
        Err(err) => {
            let code = exit::code_for(&err);
            output::print_error(&err, json);
            code.into()
        }
    }
}
