//! End-to-end tests of the token service, and the helpers they share: a
//! running authority process ([`authority`]), spawning binaries and reading
//! the address they listen on ([`process`]), and snapshots of a Redis data
//! set ([`snapshot`]).
//!
//! Every test starts its own private `redis-server` through
//! `token_test_harness` and its own processes on free loopback ports.

pub mod authority;
pub mod process;
pub mod snapshot;

pub use authority::Authority;
