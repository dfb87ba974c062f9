//! One private `redis-server` process.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::{HarnessError, TestCertificates, binary, port};

/// How long a fresh server may take to answer its first PING.
const READY_TIMEOUT: Duration = Duration::from_secs(15);
/// How many free ports to try when another process grabs the one we picked.
const PORT_ATTEMPTS: usize = 5;

/// Configures a [`RedisServer`] before it starts.
#[derive(Debug, Default, Clone)]
pub struct RedisServerBuilder {
    acl_file: Option<PathBuf>,
    extra_config: Vec<String>,
    sentinel: bool,
    tls: Option<bool>,
}

impl RedisServerBuilder {
    /// Loads users from this ACL file (copied into the server's private
    /// directory first, so the original is never rewritten). The harness adds
    /// a user of its own, `harness`, that may do anything; tests reach it
    /// through [`RedisServer::admin_url`].
    #[must_use]
    pub fn acl_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.acl_file = Some(path.into());
        self
    }

    /// Appends one line to the generated `redis.conf`
    /// (for example `"maxmemory 64mb"`).
    #[must_use]
    pub fn config_line(mut self, line: impl Into<String>) -> Self {
        self.extra_config.push(line.into());
        self
    }

    /// Runs the process as a Sentinel (`redis-server <conf> --sentinel`);
    /// add its `sentinel monitor …` lines with [`Self::config_line`].
    #[must_use]
    pub fn sentinel(mut self) -> Self {
        self.sentinel = true;
        self
    }

    /// Serves TLS only (`port 0`, `tls-port <free port>`), with a CA and
    /// certificates made for this server ([`RedisServer::certificates`]);
    /// [`RedisServer::url`] is then `rediss://`. With `require_client_cert`
    /// the server refuses clients without a certificate from that CA
    /// (`tls-auth-clients yes`); otherwise it asks for none.
    #[must_use]
    pub fn tls(mut self, require_client_cert: bool) -> Self {
        self.tls = Some(require_client_cert);
        self
    }

    /// Starts the server and waits until it answers.
    ///
    /// # Errors
    ///
    /// [`HarnessError::MissingBinary`] when `redis-server` is not installed,
    /// [`HarnessError::NotReady`] when it exits or does not answer in time.
    pub fn try_start(self) -> Result<RedisServer, HarnessError> {
        let binary = binary::redis_server()?;
        let dir = tempfile::Builder::new()
            .prefix("token-harness-redis-")
            .tempdir()
            .map_err(HarnessError::io(
                "creating the server's temporary directory",
            ))?;
        let certificates = match self.tls {
            Some(_) => Some(TestCertificates::generate(dir.path())?),
            None => None,
        };
        let admin_password = if self.acl_file.is_some() {
            Some(random_password())
        } else {
            None
        };
        let mut last_error = None;
        for _ in 0..PORT_ATTEMPTS {
            let port = port::free_port()?;
            let mut server = RedisServer {
                binary: binary.clone(),
                dir_path: dir.path().to_path_buf(),
                port,
                child: None,
                admin_password: admin_password.clone(),
                certificates: certificates.clone(),
                builder: self.clone(),
                _dir: None,
            };
            server.write_config()?;
            match server.spawn_and_wait() {
                Ok(()) => {
                    server._dir = Some(dir);
                    return Ok(server);
                }
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error.unwrap_or_else(|| HarnessError::NotReady("no port could be tried".into())))
    }

    /// [`Self::try_start`], panicking with the harness's message on failure.
    ///
    /// # Panics
    ///
    /// When the server cannot be started; the message says why (and how to
    /// install Redis when it is missing).
    #[must_use]
    pub fn start(self) -> RedisServer {
        match self.try_start() {
            Ok(server) => server,
            Err(error) => panic!("could not start a private redis-server: {error}"),
        }
    }
}

/// A `redis-server` process that belongs to one test.
///
/// It listens on a free port on 127.0.0.1, keeps its data and log in a
/// temporary directory, persists nothing, and is killed when this value is
/// dropped (the directory is removed with it).
#[derive(Debug)]
pub struct RedisServer {
    binary: PathBuf,
    dir_path: PathBuf,
    port: u16,
    child: Option<Child>,
    admin_password: Option<String>,
    certificates: Option<TestCertificates>,
    builder: RedisServerBuilder,
    // Held for its Drop (removes the directory); `None` only while starting.
    _dir: Option<TempDir>,
}

impl RedisServer {
    /// A builder for servers with an ACL file or extra configuration.
    #[must_use]
    pub fn builder() -> RedisServerBuilder {
        RedisServerBuilder::default()
    }

    /// Starts a server with the default configuration.
    ///
    /// # Panics
    ///
    /// See [`RedisServerBuilder::start`].
    #[must_use]
    pub fn start() -> Self {
        Self::builder().start()
    }

    /// The port it listens on.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its address.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// `redis://127.0.0.1:<port>/` (`rediss://` with TLS), connecting as
    /// the default user.
    #[must_use]
    pub fn url(&self) -> String {
        format!("{}://127.0.0.1:{}/", self.scheme(), self.port)
    }

    /// A URL that connects as `user` with `password`.
    #[must_use]
    pub fn url_as(&self, user: &str, password: &str) -> String {
        format!(
            "{}://{user}:{password}@127.0.0.1:{}/",
            self.scheme(),
            self.port
        )
    }

    fn scheme(&self) -> &'static str {
        if self.certificates.is_some() {
            "rediss"
        } else {
            "redis"
        }
    }

    /// The CA and certificates of a TLS server
    /// ([`RedisServerBuilder::tls`]).
    #[must_use]
    pub fn certificates(&self) -> Option<&TestCertificates> {
        self.certificates.as_ref()
    }

    /// A URL with every permission: the harness's own user when an ACL file
    /// is loaded, the default user otherwise. For tests that inspect or
    /// prepare the data set.
    #[must_use]
    pub fn admin_url(&self) -> String {
        match &self.admin_password {
            Some(password) => self.url_as(HARNESS_USER, password),
            None => self.url(),
        }
    }

    /// The server's private directory (configuration, log, copied ACL file).
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir_path
    }

    /// The server's log so far, for assertion messages.
    #[must_use]
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir_path.join("redis.log")).unwrap_or_default()
    }

    /// Whether the process is running and answering.
    #[must_use]
    pub fn is_up(&self) -> bool {
        self.child.is_some() && self.answers()
    }

    /// A plain PING, or for a TLS server a TCP connection once its log
    /// says it is ready (a handshake needs more than the harness speaks).
    fn answers(&self) -> bool {
        if self.certificates.is_some() {
            self.log().contains("Ready to accept connections")
                && TcpStream::connect_timeout(&self.addr(), Duration::from_millis(200)).is_ok()
        } else {
            ping(self.addr())
        }
    }

    /// Kills the server (SIGKILL, like a crash or a pulled cable) and waits
    /// until it is gone. Clients see refused connections from now on.
    ///
    /// # Panics
    ///
    /// When the process cannot be killed or reaped.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Resume first in case it is paused, so the kill is delivered promptly.
            let _ = signal(&child, "CONT");
            child.kill().expect("killing redis-server");
            child.wait().expect("reaping redis-server");
        }
    }

    /// Freezes the server (SIGSTOP): connections stay open but nothing
    /// answers, the way a overloaded or partitioned Redis looks to clients.
    ///
    /// # Panics
    ///
    /// When the server is not running or the signal cannot be sent.
    pub fn pause(&self) {
        let child = self
            .child
            .as_ref()
            .expect("pause: redis-server is not running");
        signal(child, "STOP").expect("sending SIGSTOP to redis-server");
    }

    /// Undoes [`Self::pause`].
    ///
    /// # Panics
    ///
    /// When the server is not running or the signal cannot be sent.
    pub fn resume(&self) {
        let child = self
            .child
            .as_ref()
            .expect("resume: redis-server is not running");
        signal(child, "CONT").expect("sending SIGCONT to redis-server");
    }

    /// Starts the server again on the same port with the same configuration
    /// (after [`Self::stop`]; stops it first otherwise). The data set starts
    /// empty: nothing is persisted.
    ///
    /// # Panics
    ///
    /// When the server does not come back (for example because another
    /// process took the port meanwhile).
    pub fn restart(&mut self) {
        self.stop();
        if let Err(error) = self.spawn_and_wait() {
            panic!(
                "redis-server did not come back on port {}: {error}",
                self.port
            );
        }
    }

    /// Runs `redis-cli` against this server as the admin user and returns
    /// its output (for `CLUSTER`-style commands or quick inspection).
    ///
    /// # Panics
    ///
    /// When `redis-cli` is missing or fails.
    #[must_use]
    pub fn cli(&self, args: &[&str]) -> String {
        let cli = binary::redis_cli().unwrap_or_else(|error| panic!("{error}"));
        let mut command = Command::new(cli);
        command.args(["-h", "127.0.0.1", "-p", &self.port.to_string()]);
        if let Some(certificates) = &self.certificates {
            command
                .arg("--tls")
                .arg("--cacert")
                .arg(&certificates.ca_cert)
                .arg("--cert")
                .arg(&certificates.client_cert)
                .arg("--key")
                .arg(&certificates.client_key);
        }
        if let Some(password) = &self.admin_password {
            command.args([
                "--user",
                HARNESS_USER,
                "--pass",
                password,
                "--no-auth-warning",
            ]);
        }
        let output = command.args(args).output().expect("running redis-cli");
        assert!(
            output.status.success(),
            "redis-cli {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn write_config(&self) -> Result<(), HarnessError> {
        let dir = &self.dir_path;
        let mut config = String::new();
        match (&self.certificates, self.builder.tls) {
            (Some(certificates), Some(require_client_cert)) => {
                let _ = writeln!(config, "port 0");
                let _ = writeln!(config, "tls-port {}", self.port);
                let _ = writeln!(
                    config,
                    "tls-cert-file {}",
                    certificates.server_cert.display()
                );
                let _ = writeln!(config, "tls-key-file {}", certificates.server_key.display());
                let _ = writeln!(
                    config,
                    "tls-ca-cert-file {}",
                    certificates.ca_cert.display()
                );
                let auth = if require_client_cert { "yes" } else { "no" };
                let _ = writeln!(config, "tls-auth-clients {auth}");
            }
            _ => {
                let _ = writeln!(config, "port {}", self.port);
            }
        }
        let _ = writeln!(config, "bind 127.0.0.1");
        let _ = writeln!(config, "dir {}", dir.display());
        let _ = writeln!(config, "logfile {}", dir.join("redis.log").display());
        let _ = writeln!(config, "daemonize no");
        if !self.builder.sentinel {
            let _ = writeln!(config, "save \"\"");
            let _ = writeln!(config, "appendonly no");
        }
        let _ = writeln!(config, "protected-mode yes");
        if let Some(source) = &self.builder.acl_file {
            let mut acl = std::fs::read_to_string(source).map_err(HarnessError::io(format!(
                "reading ACL file {}",
                source.display()
            )))?;
            if !acl.ends_with('\n') {
                acl.push('\n');
            }
            let password = self.admin_password.as_deref().unwrap_or_default();
            let _ = writeln!(acl, "user {HARNESS_USER} on >{password} ~* &* +@all");
            let copy = dir.join("users.acl");
            std::fs::write(&copy, acl).map_err(HarnessError::io("writing the ACL file copy"))?;
            let _ = writeln!(config, "aclfile {}", copy.display());
        }
        for line in &self.builder.extra_config {
            let _ = writeln!(config, "{line}");
        }
        std::fs::write(dir.join("redis.conf"), config)
            .map_err(HarnessError::io("writing redis.conf"))
    }

    fn spawn_and_wait(&mut self) -> Result<(), HarnessError> {
        if self.certificates.is_some() {
            // Readiness is read from the log: not from an earlier run's.
            let _ = std::fs::remove_file(self.dir_path.join("redis.log"));
        }
        let mut command = Command::new(&self.binary);
        command.arg(self.dir_path.join("redis.conf"));
        if self.builder.sentinel {
            command.arg("--sentinel");
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(HarnessError::io(format!(
                "spawning {}",
                self.binary.display()
            )))?;
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = child
                .try_wait()
                .map_err(HarnessError::io("checking redis-server"))?
            {
                let mut stderr = String::new();
                if let Some(mut pipe) = child.stderr.take() {
                    let _ = pipe.read_to_string(&mut stderr);
                }
                return Err(HarnessError::NotReady(format!(
                    "redis-server on port {} exited with {status}: {stderr}{}",
                    self.port,
                    self.log()
                )));
            }
            if self.answers() {
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(HarnessError::NotReady(format!(
                    "redis-server on port {} did not answer within {READY_TIMEOUT:?}: {}",
                    self.port,
                    self.log()
                )));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = signal(&child, "CONT");
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The user the harness adds to every ACL file it loads.
const HARNESS_USER: &str = "harness";

/// Whether something on `addr` answers a RESP `PING` (any reply counts:
/// `-NOAUTH` from a server whose default user is off is an answer too).
fn ping(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut first = [0_u8; 1];
    matches!(stream.read(&mut first), Ok(1) if first[0] == b'+' || first[0] == b'-')
}

fn signal(child: &Child, name: &str) -> std::io::Result<()> {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(child.id().to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "kill -{name} exited with {status}"
        )))
    }
}

/// A password for the harness's own ACL user, unique per server.
fn random_password() -> String {
    // Not a secret worth a CSPRNG: the server listens on loopback only and
    // lives for one test. Uniqueness is what matters.
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_nanos())
            .unwrap_or_default(),
    );
    format!("harness-{:016x}", hasher.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(addr: SocketAddr, command: &str) -> String {
        let mut stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        stream.write_all(command.as_bytes()).expect("write");
        let mut buf = [0_u8; 256];
        let n = stream.read(&mut buf).expect("read");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    /// A started server answers on its own port and is gone after drop.
    #[test]
    fn starts_answers_and_dies_with_its_handle() {
        let server = RedisServer::start();
        let addr = server.addr();
        assert_ne!(addr.port(), 6379, "never the developer's default port");
        assert_eq!(roundtrip(addr, "PING\r\n"), "+PONG\r\n");
        drop(server);
        assert!(!ping(addr), "the server must be killed on drop");
    }

    /// stop() makes the port refuse connections; restart() brings it back on
    /// the same port.
    #[test]
    fn stop_and_restart_on_the_same_port() {
        let mut server = RedisServer::start();
        let addr = server.addr();
        assert_eq!(roundtrip(addr, "SET k v\r\n"), "+OK\r\n");
        server.stop();
        assert!(!server.is_up());
        assert!(TcpStream::connect(addr).is_err(), "stopped server refuses");
        server.restart();
        assert!(server.is_up());
        assert_eq!(server.addr(), addr);
        assert_eq!(roundtrip(addr, "GET k\r\n"), "$-1\r\n", "nothing persisted");
    }

    /// A paused server accepts connections but does not answer.
    #[test]
    fn pause_freezes_and_resume_thaws() {
        let server = RedisServer::start();
        server.pause();
        assert!(!ping(server.addr()), "a frozen server must not answer");
        server.resume();
        assert!(ping(server.addr()));
    }

    /// Two servers never share a port, so parallel tests never share data.
    #[test]
    fn two_servers_two_ports() {
        let a = RedisServer::start();
        let b = RedisServer::start();
        assert_ne!(a.port(), b.port());
        assert_eq!(roundtrip(a.addr(), "SET only-in-a 1\r\n"), "+OK\r\n");
        assert_eq!(roundtrip(b.addr(), "EXISTS only-in-a\r\n"), ":0\r\n");
    }

    /// A TLS server speaks TLS only, with the certificates it made.
    #[test]
    fn serves_tls_only() {
        let server = RedisServer::builder().tls(true).start();
        assert!(server.url().starts_with("rediss://127.0.0.1:"));
        let certificates = server.certificates().expect("certificates");
        assert!(certificates.ca_cert.exists() && certificates.client_key.exists());
        assert!(!ping(server.addr()), "no plain RESP on the TLS port");
        assert_eq!(server.cli(&["PING"]).trim(), "PONG");
    }

    /// An ACL file is loaded: its default user is refused, the harness's
    /// admin user works, and the source file is left untouched.
    #[test]
    fn loads_an_acl_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let acl = dir.path().join("users.acl");
        let original = "user default off\nuser reader on >pw resetkeys -@all +get %R~tok:*\n";
        std::fs::write(&acl, original).expect("write acl");
        let server = RedisServer::builder().acl_file(&acl).start();
        assert!(
            roundtrip(server.addr(), "GET tok:x\r\n").starts_with("-NOAUTH"),
            "default user is off"
        );
        assert_eq!(
            roundtrip(server.addr(), "AUTH reader pw\r\n"),
            "+OK\r\n",
            "users from the file exist"
        );
        assert!(server.cli(&["ACL", "WHOAMI"]).contains("harness"));
        assert_eq!(std::fs::read_to_string(&acl).expect("read"), original);
    }
}
