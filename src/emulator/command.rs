//! The emulator as a foreground process (what `taskreaper emulator` runs once its flags are read):
//! start, write the CA, announce the URL on stdout and serve until Ctrl-C or SIGTERM. Does network,
//! file and terminal I/O.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use super::{Config, Emulator, EmulatorError, Seed};

/// Demo access key id, accepted when no `--access-key` is given. For local demos only.
pub const DEMO_ACCESS_KEY: &str = "DEMOACCESSKEY";
/// Secret key of [`DEMO_ACCESS_KEY`]. Public on purpose; never use it outside the emulator.
pub const DEMO_SECRET_KEY: &str = "demo-secret-key";
/// Projects generated when no `--projects` is given.
pub const DEMO_PROJECTS: [&str; 3] = [
    "0605767b5c00d4bb2f10c01a1e3b3a7e",
    "1b2c3d4e5f60718293a4b5c6d7e8f901",
    "9f8e7d6c5b4a39281706f5e4d3c2b1a0",
];

/// What `taskreaper emulator` runs: the server settings plus where to write the CA certificate.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Address to listen on; port 0 picks a free port.
    pub listen: SocketAddr,
    pub config: Config,
    pub seed: Seed,
    /// Write the CA certificate (PEM) here; needs [`Config::tls`].
    pub ca_out: Option<PathBuf>,
}

/// Starts the emulator, prints `taskreaper emulator listening on <url>` and serves until
/// Ctrl-C or SIGTERM.
pub async fn run(options: RunOptions) -> Result<(), EmulatorError> {
    if options.ca_out.is_some() && !options.config.tls {
        return Err(EmulatorError::CaOutWithoutTls);
    }
    let signals = ShutdownSignals::install()?;
    let emulator = Emulator::start(options.listen, options.config, options.seed).await?;
    if let (Some(path), Some(pem)) = (&options.ca_out, emulator.ca_pem()) {
        std::fs::write(path, pem).map_err(|source| EmulatorError::WriteCa { path: path.clone(), source })?;
    }
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "taskreaper emulator listening on {}", emulator.url())
        .map_err(EmulatorError::Announce)?;
    stdout.flush().map_err(EmulatorError::Announce)?;
    drop(stdout);
    signals.wait().await?;
    emulator.shutdown().await;
    Ok(())
}

/// Ctrl-C and SIGTERM, listened to from creation on so that no signal is missed once the address
/// is announced.
struct ShutdownSignals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    #[cfg(unix)]
    fn install() -> Result<Self, EmulatorError> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            interrupt: signal(SignalKind::interrupt()).map_err(EmulatorError::Signal)?,
            terminate: signal(SignalKind::terminate()).map_err(EmulatorError::Signal)?,
        })
    }

    #[cfg(unix)]
    async fn wait(mut self) -> Result<(), EmulatorError> {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
        Ok(())
    }

    #[cfg(not(unix))]
    fn install() -> Result<Self, EmulatorError> {
        Ok(Self {})
    }

    #[cfg(not(unix))]
    async fn wait(self) -> Result<(), EmulatorError> {
        tokio::signal::ctrl_c().await.map_err(EmulatorError::Signal)
    }
}
