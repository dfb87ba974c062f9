//! Running a server binary as a child process.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How long a server may take to print its address.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A server process started by a test; killed when dropped.
#[derive(Debug)]
pub struct ServerProcess {
    child: Option<Child>,
    url: String,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl ServerProcess {
    /// Spawns `binary` with `env` (and nothing else of this process's
    /// environment that could point it at a foreign Redis), waits for the
    /// line `listening on http://…` on its standard output and returns the
    /// running process.
    ///
    /// # Panics
    ///
    /// When the process cannot start or does not print its address in time
    /// (its standard error is in the message).
    pub fn spawn(binary: &Path, args: &[&str], env: &[(String, String)]) -> Self {
        let mut command = Command::new(binary);
        command
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {}: {error}", binary.display()));
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
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
        let (sender, receiver) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped stdout");
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            while let Some(Ok(line)) = lines.next() {
                if let Some(url) = line.strip_prefix("listening on ") {
                    let _ = sender.send(url.trim().to_owned());
                    break;
                }
            }
            // Keep draining so the child never blocks on a full pipe.
            for _ in lines {}
        });
        let mut process = Self {
            child: Some(child),
            url: String::new(),
            stderr,
        };
        match receiver.recv_timeout(START_TIMEOUT) {
            Ok(url) => process.url = url,
            Err(_) => {
                process.kill();
                panic!(
                    "{} did not report its address within {START_TIMEOUT:?}; stderr:\n{}",
                    binary.display(),
                    process.stderr()
                );
            }
        }
        process
    }

    /// `http://127.0.0.1:<port>`.
    #[must_use]
    pub fn url(&self) -> &str {
        &self.url
    }

    /// What the process wrote to standard error so far (its logs).
    #[must_use]
    pub fn stderr(&self) -> String {
        self.stderr
            .lock()
            .map(|log| log.clone())
            .unwrap_or_default()
    }

    /// Sends SIGTERM and waits for the exit; answers the exit status, or
    /// `None` when it did not exit within `timeout` (it is killed then).
    #[must_use]
    pub fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let exited = token_test_harness::wait_until(timeout, || child.try_wait().ok().flatten());
        match exited {
            Some((status, _)) => Some(status),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                None
            }
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
