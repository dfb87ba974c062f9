//! The real authority binary as a child process of the harness.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The authority's binary: `--authority`, or `token-bench-authority` next to
/// this executable (both are built by `cargo build -p token-bench`).
pub(crate) fn locate(explicit: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(path) = explicit {
        return Ok(path.to_path_buf());
    }
    let me = std::env::current_exe().map_err(|error| error.to_string())?;
    let sibling = me.with_file_name("token-bench-authority");
    if sibling.is_file() {
        Ok(sibling)
    } else {
        Err(format!(
            "{} not found: build the harness with `cargo build --release -p token-bench` \
             (it builds both binaries), or pass --authority PATH",
            sibling.display()
        ))
    }
}

/// A running authority; killed when dropped.
#[derive(Debug)]
pub(crate) struct Authority {
    child: Child,
    addr: SocketAddr,
    binary: PathBuf,
    env: Vec<(String, String)>,
}

impl Authority {
    /// Starts `binary serve` with exactly `env` (plus `PATH`), its log going
    /// to `log`, and waits for its `listening on` line.
    pub(crate) fn start(
        binary: &Path,
        env: &[(String, String)],
        log: &Path,
    ) -> Result<Self, String> {
        let log_file =
            std::fs::File::create(log).map_err(|error| format!("{}: {error}", log.display()))?;
        let mut child = Command::new(binary)
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file))
            .spawn()
            .map_err(|error| format!("cannot start {}: {error}", binary.display()))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            for line in lines.by_ref().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("listening on http://") {
                    let _ = sender.send(addr.trim().to_owned());
                    break;
                }
            }
            for _ in lines {}
        });
        let addr = receiver
            .recv_timeout(Duration::from_secs(30))
            .ok()
            .and_then(|addr| addr.parse().ok());
        let Some(addr) = addr else {
            let _ = child.kill();
            let _ = child.wait();
            let log = std::fs::read_to_string(log).unwrap_or_default();
            return Err(format!("the authority did not start; its log:\n{log}"));
        };
        Ok(Self {
            child,
            addr,
            binary: binary.to_path_buf(),
            env: env.to_vec(),
        })
    }

    /// Where it listens.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Peak resident set size so far (`VmHWM`), in KiB.
    pub(crate) fn peak_rss_kib(&self) -> Option<u64> {
        status_field_kib(self.child.id(), "VmHWM:")
    }

    /// Runs the binary's admin CLI with the same configuration, feeding
    /// `stdin`; answers its standard output.
    pub(crate) fn cli(&self, args: &[&str], stdin: Option<&str>) -> Result<String, String> {
        run_cli(&self.binary, &self.env, args, stdin)
    }
}

impl Drop for Authority {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `binary args…` (the admin CLI) with `env`.
pub(crate) fn run_cli(
    binary: &Path,
    env: &[(String, String)],
    args: &[&str],
    stdin: Option<&str>,
) -> Result<String, String> {
    let mut child = Command::new(binary)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("RUST_LOG", "warn")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| format!("cannot run {}: {error}", binary.display()))?;
    if let (Some(mut pipe), Some(text)) = (child.stdin.take(), stdin) {
        pipe.write_all(text.as_bytes())
            .map_err(|error| format!("writing the CLI's stdin: {error}"))?;
    }
    let output = child
        .wait_with_output()
        .map_err(|error| error.to_string())?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!(
            "`{}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// A `… kB` field of `/proc/<pid>/status`.
pub(crate) fn status_field_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|number| number.parse().ok())
}
