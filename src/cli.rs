//! Command-line interface: parses arguments and dispatches to each command.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Keeps Huawei Cloud projects free of failed SDRS and KPS tasks.
#[derive(Parser, Debug)]
#[command(name = "taskreaper", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {}

/// Runs the parsed command and turns its outcome into an exit code.
pub async fn run(cli: Cli) -> ExitCode {
    match cli.command {}
}
