//! Command-line interface: parses arguments and dispatches to each command.

mod demo;
mod emulator;
mod log;
mod purge;
mod rate;
mod run;

pub use log::LogFormatArg;
pub use purge::{PurgeArgs, purge_once};

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Keeps Huawei Cloud projects free of failed SDRS and KPS tasks.
#[derive(Parser, Debug)]
#[command(name = "taskreaper", version, about)]
pub struct Cli {
    /// How log lines on stderr look: `text`, or `json` (one object per line).
    #[arg(long, global = true, value_enum, default_value_t, env = "TASKREAPER_LOG_FORMAT")]
    pub log_format: LogFormatArg,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the controller (kubeconfig or in-cluster).
    Run(run::RunArgs),
    /// Print the FailedTaskCleanupPolicy CustomResourceDefinition.
    Crd(CrdArgs),
    /// Run one policy once, without Kubernetes, and print the resulting status as YAML.
    Purge(PurgeArgs),
    /// Serve a local SDRS + KPS endpoint for tests, demos and benchmarks.
    Emulator(emulator::EmulatorArgs),
    /// Start the emulator with seeded failed tasks, run the example policies against it, and show
    /// before and after.
    Demo(demo::DemoArgs),
}

/// Arguments of `taskreaper crd` (none).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct CrdArgs {}

/// Runs the parsed command and turns its outcome into an exit code.
pub async fn run(cli: Cli) -> ExitCode {
    let result: Result<ExitCode, Box<dyn std::error::Error>> = match cli.command {
        Command::Run(args) => run::run(args).await.map(|()| ExitCode::SUCCESS).map_err(Into::into),
        Command::Crd(CrdArgs {}) => {
            crate::api::write_crd(&mut std::io::stdout()).map(|()| ExitCode::SUCCESS).map_err(Into::into)
        }
        Command::Purge(args) => purge::run(args).await.map_err(Into::into),
        Command::Emulator(args) => emulator::run(args).await.map(|()| ExitCode::SUCCESS).map_err(Into::into),
        Command::Demo(args) => demo::run(args).await.map(|()| ExitCode::SUCCESS).map_err(Into::into),
    };
    result.unwrap_or_else(|error| {
        eprintln!("taskreaper: {}", crate::controller::pipeline::error_chain(error.as_ref()));
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_takes_the_log_format() {
        for args in [
            &["taskreaper", "--log-format", "json", "crd"][..],
            &["taskreaper", "run", "--log-format", "json"],
            &["taskreaper", "emulator", "--log-format", "json"],
            &["taskreaper", "demo", "--log-format", "json"],
            &["taskreaper", "purge", "-f", "p.yaml", "--credentials", "c.yaml", "--log-format", "json"],
        ] {
            let cli = Cli::try_parse_from(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
            assert_eq!(cli.log_format, LogFormatArg::Json, "{args:?}");
        }
        assert_eq!(Cli::try_parse_from(["taskreaper", "crd"]).unwrap().log_format, LogFormatArg::Text);
        assert!(Cli::try_parse_from(["taskreaper", "--log-format", "xml", "crd"]).is_err());
    }
}
