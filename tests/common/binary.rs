//! The `taskreaper` binary, started for a test.

/// The binary the tests run: `TASKREAPER_BINARY` when set (for example the release build, to
/// measure what users run), else the debug build `cargo test` makes.
pub fn path() -> std::ffi::OsString {
    std::env::var_os("TASKREAPER_BINARY").unwrap_or_else(|| env!("CARGO_BIN_EXE_taskreaper").into())
}

/// How tables name the binary the tests run.
#[allow(dead_code, reason = "used by some test binaries only")]
pub fn label() -> String {
    match std::env::var_os("TASKREAPER_BINARY") {
        Some(path) => format!("{}", std::path::Path::new(&path).display()),
        None => "debug build".into(),
    }
}

/// A command that runs [`path`] under `setpriv --pdeathsig KILL` (util-linux), so the
/// kernel kills it when the test's thread ends, even if the test binary exits without dropping the
/// child; dropping it kills it too.
pub fn taskreaper() -> tokio::process::Command {
    let mut command = tokio::process::Command::new("setpriv");
    command.args(["--pdeathsig", "KILL", "--"]).arg(path()).env("RUST_LOG", "warn").kill_on_drop(true);
    command
}

/// What a failed start of [`taskreaper`] says.
pub const START_FAILED: &str = "the taskreaper binary starts (through `setpriv`, from util-linux)";
