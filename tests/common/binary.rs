//! The `taskreaper` binary, started for a test.

/// A command that runs the `taskreaper` binary under `setpriv --pdeathsig KILL` (util-linux), so the
/// kernel kills it when the test's thread ends, even if the test binary exits without dropping the
/// child; dropping it kills it too.
pub fn taskreaper() -> tokio::process::Command {
    let mut command = tokio::process::Command::new("setpriv");
    command
        .args(["--pdeathsig", "KILL", "--", env!("CARGO_BIN_EXE_taskreaper")])
        .env("RUST_LOG", "warn")
        .kill_on_drop(true);
    command
}

/// What a failed start of [`taskreaper`] says.
pub const START_FAILED: &str = "the taskreaper binary starts (through `setpriv`, from util-linux)";
