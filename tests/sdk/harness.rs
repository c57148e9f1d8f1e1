//! Runs the Python scripts beside this file with the interpreter named by `TASKREAPER_PYTHON`, with a
//! time limit; the child is killed if the test gives up on it, so it never outlives the test.

use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// How long one script may run.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);

/// The interpreter with the official SDK installed. Missing means the test cannot say anything, which
/// is a failure, not a skip.
pub fn python() -> String {
    match std::env::var("TASKREAPER_PYTHON") {
        Ok(python) if !python.trim().is_empty() => python,
        _ => panic!(
            "TASKREAPER_PYTHON is not set: it must name a Python interpreter with the packages of \
             tests/sdk/requirements.txt installed (bash tests/run.sh creates one), e.g. \
             TASKREAPER_PYTHON=/work/main/.venv/bin/python cargo test --test sdk_conformance"
        ),
    }
}

/// Path of a script in tests/sdk/.
pub fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests").join("sdk").join(name)
}

/// Runs `tests/sdk/<name>` with `args`, extra environment `envs` and `stdin`; panics with the script's
/// stderr unless it exits 0 within the time limit.
pub async fn run_python(name: &str, args: &[&str], envs: &[(&str, &str)], stdin: Vec<u8>) -> Output {
    let mut child = Command::new(python())
        .arg(script(name))
        .args(args)
        .envs(envs.iter().copied())
        .env("PYTHONIOENCODING", "utf-8")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {} (TASKREAPER_PYTHON): {e}", python()));
    let mut pipe = child.stdin.take().expect("stdin is piped");
    let feed = tokio::spawn(async move {
        // A script that exits early closes its end; its exit status tells what went wrong.
        let _ = pipe.write_all(&stdin).await;
        let _ = pipe.shutdown().await;
    });
    let output = match tokio::time::timeout(SCRIPT_TIMEOUT, child.wait_with_output()).await {
        Ok(result) => result.unwrap_or_else(|e| panic!("waiting for {name}: {e}")),
        Err(_) => panic!("{name} did not finish within {SCRIPT_TIMEOUT:?}; it was killed"),
    };
    let _ = feed.await;
    assert!(
        output.status.success(),
        "{name} failed with {}:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output
}
