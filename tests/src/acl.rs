//! The compose demo's Redis ACL, `docker/redis-users.acl`, rendered with
//! fresh passwords.
//!
//! The file in the repository is a template: each user's password is a
//! `#{{USER_PASSWORD_SHA256}}` placeholder, never plain text. The compose
//! demo renders it with `docker/render-secrets.sh`; the tests and
//! `token-demo` render it here the same way (a random password per user, its
//! hex SHA-256 in Redis's `#<hash>` form in place of the placeholder).

use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};
use tempfile::TempDir;

/// The template in the source tree.
pub const TEMPLATE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docker/redis-users.acl");

/// The authority's Redis user.
pub const AUTHORITY_USER: &str = "authority";
/// The middleware's (read-only) Redis user.
pub const CLIENT_USER: &str = "token-client";

/// The placeholder of the authority user's password hash.
pub const AUTHORITY_PLACEHOLDER: &str = "{{AUTHORITY_PASSWORD_SHA256}}";
/// The placeholder of the middleware user's password hash.
pub const CLIENT_PLACEHOLDER: &str = "{{TOKEN_CLIENT_PASSWORD_SHA256}}";

/// A rendered ACL file (in a private temporary directory, removed on drop)
/// and the plain passwords it was rendered with.
#[derive(Debug)]
pub struct RenderedAcl {
    _dir: TempDir,
    path: PathBuf,
    /// The `authority` user's password.
    pub authority_password: String,
    /// The `token-client` user's password.
    pub client_password: String,
}

impl RenderedAcl {
    /// Renders [`TEMPLATE`] with fresh passwords.
    ///
    /// # Panics
    ///
    /// When it cannot (a test helper).
    #[must_use]
    pub fn new() -> Self {
        Self::render(Path::new(TEMPLATE)).unwrap_or_else(|error| panic!("{error}"))
    }

    /// Renders `template` with fresh passwords.
    ///
    /// # Errors
    ///
    /// A description when the template cannot be read, has a placeholder
    /// left after rendering, or the file cannot be written.
    pub fn render(template: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(template)
            .map_err(|error| format!("cannot read {}: {error}", template.display()))?;
        let authority_password = password()?;
        let client_password = password()?;
        let rendered = text
            .replace(AUTHORITY_PLACEHOLDER, &sha256_hex(&authority_password))
            .replace(CLIENT_PLACEHOLDER, &sha256_hex(&client_password));
        if rendered.contains("{{") {
            return Err(format!(
                "{} has a placeholder other than {AUTHORITY_PLACEHOLDER} and {CLIENT_PLACEHOLDER}",
                template.display()
            ));
        }
        let dir =
            tempfile::tempdir().map_err(|error| format!("no temporary directory: {error}"))?;
        let path = dir.path().join("users.acl");
        std::fs::write(&path, rendered)
            .map_err(|error| format!("cannot write {}: {error}", path.display()))?;
        Ok(Self {
            _dir: dir,
            path,
            authority_password,
            client_password,
        })
    }

    /// The rendered file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Default for RenderedAcl {
    fn default() -> Self {
        Self::new()
    }
}

/// A password nobody else has: 128 bits from the OS generator, as 32 hex
/// digits.
///
/// # Errors
///
/// A description when `/dev/urandom` cannot be read.
pub fn password() -> Result<String, String> {
    let mut bytes = [0_u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut random| std::io::Read::read_exact(&mut random, &mut bytes))
        .map_err(|error| format!("cannot read /dev/urandom: {error}"))?;
    Ok(hex(&bytes))
}

/// The hex SHA-256 of `password`: what Redis stores for `#<hash>`.
#[must_use]
pub fn sha256_hex(password: &str) -> String {
    hex(&Sha256::digest(password.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}
