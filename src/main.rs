//! The `taskreaper` command: parses arguments, sets up tracing, dispatches to [`taskreaper::cli`].
#![forbid(unsafe_code)]

use clap::Parser;
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = taskreaper::cli::Cli::parse();
    taskreaper::observability::init_tracing(cli.log_format.into());
    taskreaper::cli::run(cli).await
}
