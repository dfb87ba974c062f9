//! Child processes of the workspace's binaries.

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use token_test_harness::wait_until;

/// How long a service may take to print its `listening on` line.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A running service process: started with a given environment, known by
/// the address it printed, its standard error kept for assertion messages,
/// killed (and reaped) when dropped.
#[derive(Debug)]
pub struct ServiceProcess {
    child: Option<Child>,
    addr: SocketAddr,
    stderr: Arc<Mutex<String>>,
}

impl ServiceProcess {
    /// Starts `binary` with `env` (see [`Self::start_with_args`]).
    ///
    /// # Panics
    ///
    /// As [`Self::start_with_args`].
    #[must_use]
    pub fn start(binary: impl AsRef<Path>, env: &[(&str, &str)]) -> Self {
        Self::start_with_args(binary, &[], env)
    }

    /// Starts `binary args…` in an environment holding only `env`, `PATH`
    /// and `RUST_LOG` (the test's own, `info` by default) — nothing of the
    /// test's environment can point it at a foreign Redis — and waits until
    /// it prints `listening on http://<addr>`.
    ///
    /// # Panics
    ///
    /// When the binary cannot be started, exits, or prints no address within
    /// the start timeout (its standard error is in the message).
    #[must_use]
    pub fn start_with_args(binary: impl AsRef<Path>, args: &[&str], env: &[(&str, &str)]) -> Self {
        let binary = binary.as_ref();
        let mut command = Command::new(binary);
        command
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {}: {error}", binary.display()));
        let stderr = Arc::new(Mutex::new(String::new()));
        if let Some(pipe) = child.stderr.take() {
            let sink = stderr.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    if let Ok(mut log) = sink.lock() {
                        log.push_str(&line);
                        log.push('\n');
                    }
                }
            });
        }
        let stdout = child.stdout.take().expect("piped stdout");
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            // Forward the address line, then keep draining so the child
            // never blocks on a full pipe.
            let mut lines = BufReader::new(stdout).lines();
            for line in lines.by_ref().map_while(Result::ok) {
                if line.starts_with("listening on ") {
                    let _ = sender.send(line);
                    break;
                }
            }
            for _ in lines {}
        });
        let line = receiver.recv_timeout(START_TIMEOUT).ok();
        let addr = line
            .as_deref()
            .and_then(|line| line.strip_prefix("listening on http://"))
            .and_then(|addr| addr.trim().parse().ok());
        let Some(addr) = addr else {
            let status = child.try_wait().ok().flatten();
            let _ = child.kill();
            let _ = child.wait();
            let log = stderr.lock().map(|log| log.clone()).unwrap_or_default();
            panic!(
                "{} printed no `listening on http://…` line within {START_TIMEOUT:?} \
                 (exit status: {status:?}, first line: {line:?}); stderr:\n{log}",
                binary.display()
            );
        };
        Self {
            child: Some(child),
            addr,
            stderr,
        }
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

    /// What the process wrote to standard error so far (its logs).
    #[must_use]
    pub fn stderr(&self) -> String {
        self.stderr
            .lock()
            .map(|log| log.clone())
            .unwrap_or_default()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// Sends SIGTERM and waits up to `timeout` for the process to exit;
    /// answers its exit status, or `None` when it is still running (it is
    /// killed then).
    ///
    /// # Panics
    ///
    /// When the signal cannot be sent.
    pub fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .expect("running kill");
        assert!(sent.success(), "kill -TERM failed");
        let exited =
            wait_until(timeout, || child.try_wait().ok().flatten()).map(|(status, _)| status);
        if exited.is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
        exited
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
