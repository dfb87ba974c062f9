//! Locating the executables the harness runs.

use std::path::{Path, PathBuf};

use crate::HarnessError;

/// Finds `name` on `PATH`, unless the environment variable `override_var`
/// names it explicitly (for a Redis built from source, say).
///
/// # Errors
///
/// [`HarnessError::MissingBinary`] with `install_hint` when it is nowhere to
/// be found: tests never skip silently because a tool is missing.
pub fn find(name: &str, override_var: &str, install_hint: &str) -> Result<PathBuf, HarnessError> {
    if let Some(explicit) = std::env::var_os(override_var) {
        let path = PathBuf::from(explicit);
        return if is_executable(&path) {
            Ok(path)
        } else {
            Err(HarnessError::MissingBinary(format!(
                "{override_var}={} is not an executable file. {install_hint}",
                path.display()
            )))
        };
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
        .ok_or_else(|| {
            HarnessError::MissingBinary(format!(
                "`{name}` was not found on PATH. {install_hint} \
                 (or point {override_var} at the executable)"
            ))
        })
}

/// `redis-server`, or how to install it.
///
/// # Errors
///
/// [`HarnessError::MissingBinary`] when it is not installed.
pub fn redis_server() -> Result<PathBuf, HarnessError> {
    find("redis-server", "REDIS_SERVER", REDIS_INSTALL_HINT)
}

/// `redis-cli`, or how to install it.
///
/// # Errors
///
/// [`HarnessError::MissingBinary`] when it is not installed.
pub fn redis_cli() -> Result<PathBuf, HarnessError> {
    find("redis-cli", "REDIS_CLI", REDIS_INSTALL_HINT)
}

/// What to run when Redis is missing.
pub const REDIS_INSTALL_HINT: &str = "Install Redis 7: `sudo apt-get install -y redis-server` \
     on Debian/Ubuntu, `brew install redis` on macOS";

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A missing tool fails with the install hint instead of a bare "not found".
    #[test]
    fn missing_binary_names_the_install_command() {
        let err = find(
            "surely-no-such-binary-here",
            "TOKEN_HARNESS_TEST_UNSET_VARIABLE",
            "Install it with `apt-get install nothing`",
        )
        .unwrap_err();
        let message = err.to_string();
        assert!(message.contains("apt-get install nothing"), "{message}");
        assert!(message.contains("surely-no-such-binary-here"), "{message}");
    }
}
