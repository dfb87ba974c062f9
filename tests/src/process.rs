//! Child processes of the workspace's binaries.

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use token_test_harness::wait_until;

/// How long a service may take to print its `listening on` line.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A running service process: started with a given environment, known by
/// the address it printed, killed (and reaped) when dropped.
#[derive(Debug)]
pub struct ServiceProcess {
    child: Child,
    addr: SocketAddr,
}

impl ServiceProcess {
    /// Starts `binary` in an environment holding only `env` and `RUST_LOG`
    /// (the test's own, `warn` by default), and waits until it prints
    /// `listening on http://<addr>`.
    ///
    /// # Panics
    ///
    /// When the binary cannot be started, exits, or prints no address within
    /// the start timeout.
    #[must_use]
    pub fn start(binary: impl AsRef<Path>, env: &[(&str, &str)]) -> Self {
        let binary = binary.as_ref();
        let mut command = Command::new(binary);
        command
            .env_clear()
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .envs(env.iter().copied().collect::<HashMap<_, _>>())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = command
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {}: {error}", binary.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            // Forward the first line, then keep draining so the child never
            // blocks on a full pipe.
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = sender.send(line);
            }
            for _ in lines {}
        });
        let Ok(line) = receiver.recv_timeout(START_TIMEOUT) else {
            let status = child.try_wait().ok().flatten();
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{} printed no `listening on` line within {START_TIMEOUT:?} (exit status: {status:?})",
                binary.display()
            );
        };
        let addr = line
            .strip_prefix("listening on http://")
            .and_then(|addr| addr.trim().parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line from {}: {line:?}", binary.display()));
        Self { child, addr }
    }

    /// The address it listens on.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr><path>`.
    #[must_use]
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends SIGTERM and waits up to `timeout` for the process to exit;
    /// answers its exit status, or `None` when it is still running.
    ///
    /// # Panics
    ///
    /// When the signal cannot be sent.
    pub fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .expect("running kill");
        assert!(sent.success(), "kill -TERM failed");
        wait_until(timeout, || self.child.try_wait().ok().flatten()).map(|(status, _)| status)
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
