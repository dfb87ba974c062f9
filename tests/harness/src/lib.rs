//! Test harness for the token service: private `redis-server` processes.
//!
//! Every test that touches a repository runs against a Redis that this crate
//! started on a free loopback port, with its own temporary directory and
//! configuration, and kills when it is dropped. Nothing here ever connects to
//! a Redis it did not start, so a developer's own server on 6379 survives the
//! test suite untouched.
//!
//! ```no_run
//! use token_test_harness::RedisServer;
//!
//! let mut redis = RedisServer::start();
//! let url = redis.url(); // redis://127.0.0.1:<free port>/
//! redis.stop(); // simulate an outage: the port stops answering
//! redis.restart(); // same port, same configuration, empty data set
//! # drop(url);
//! ```
//!
//! # Layout
//!
//! - [`redis_server`]: start, stop, pause, restart one `redis-server`, with an
//!   optional ACL file.
//! - [`binary`]: find an executable (`redis-server`, `redis-cli`) or fail with
//!   the command that installs it.
//! - [`cluster`]: a local Redis Cluster of three masters.
//! - [`sentinel`]: a master, a replica and three sentinels.
//! - [`tls`]: a throw-away CA and certificates (`openssl`), for a server
//!   started with [`RedisServerBuilder::tls`].
//! - [`port`]: pick a free loopback port.
//! - [`wait`]: poll a condition until it holds or a deadline passes, instead
//!   of sleeping for a fixed time.

pub mod binary;
pub mod cluster;
pub mod port;
pub mod redis_server;
pub mod sentinel;
pub mod tls;
pub mod wait;

pub use cluster::RedisCluster;
pub use redis_server::{RedisServer, RedisServerBuilder};
pub use sentinel::RedisSentinels;
pub use tls::TestCertificates;
pub use wait::{wait_until, wait_until_async};

/// Everything that can go wrong while the harness manages a process.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// A required executable is not installed; the message says how to install it.
    #[error("{0}")]
    MissingBinary(String),
    /// Starting, stopping or talking to a process failed at the OS level.
    #[error("{context}: {source}")]
    Io {
        /// What the harness was doing.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The process did not become ready in time, or exited early.
    #[error("{0}")]
    NotReady(String),
}

impl HarnessError {
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let context = context.into();
        move |source| Self::Io { context, source }
    }
}
