//! End-to-end tests of the token service; helpers shared by the test files.
//!
//! # Layout
//!
//! - [`process`]: run one of the workspace's binaries as a child process
//!   (the middleware's example service), learn its address from its
//!   `listening on` line, kill it on drop.
//! - [`protected`]: the middleware's example service (`protected-service`)
//!   as a process, and a client for its routes.
//! - [`redis_admin`]: what the tests ask Redis directly (command counters,
//!   clients).
//! - [`tokens`]: issue tokens straight into a harness Redis with the
//!   repository's writer.

pub mod process;
pub mod protected;
pub mod redis_admin;
pub mod tokens;
