//! Throw-away certificates for TLS tests, made with the `openssl` command:
//! a CA, a server certificate for `127.0.0.1` / `localhost` and a client
//! certificate, all signed by that CA.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::HarnessError;

/// PEM files of a test CA and the certificates it signed, in one directory.
#[derive(Debug, Clone)]
pub struct TestCertificates {
    /// The CA's certificate (trust anchor).
    pub ca_cert: PathBuf,
    /// The CA's private key.
    pub ca_key: PathBuf,
    /// A server certificate for `127.0.0.1` and `localhost`.
    pub server_cert: PathBuf,
    /// Its private key.
    pub server_key: PathBuf,
    /// A client certificate (`clientAuth`).
    pub client_cert: PathBuf,
    /// Its private key.
    pub client_key: PathBuf,
}

impl TestCertificates {
    /// Makes a new CA and its server and client certificates in `dir`
    /// (P-256 keys, valid for two days).
    ///
    /// # Errors
    ///
    /// [`HarnessError::MissingBinary`] without `openssl`, [`HarnessError::Io`]
    /// when a file cannot be written, [`HarnessError::NotReady`] when
    /// `openssl` fails.
    pub fn generate(dir: &Path) -> Result<Self, HarnessError> {
        let openssl =
            crate::binary::find("openssl", "OPENSSL", "install it: apt-get install openssl")?;
        let file = |name: &str| dir.join(name);
        let certificates = Self {
            ca_cert: file("ca.crt"),
            ca_key: file("ca.key"),
            server_cert: file("server.crt"),
            server_key: file("server.key"),
            client_cert: file("client.crt"),
            client_key: file("client.key"),
        };
        let path = |path: &PathBuf| path.display().to_string();
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
        run(
            &openssl,
            &[
                &["req", "-x509", "-nodes", "-days", "2"][..],
                &ec,
                &[
                    "-subj",
                    "/CN=token-harness test CA",
                    "-addext",
                    "basicConstraints=critical,CA:TRUE",
                    "-addext",
                    "keyUsage=critical,keyCertSign,cRLSign",
                    "-keyout",
                    &path(&certificates.ca_key),
                    "-out",
                    &path(&certificates.ca_cert),
                ],
            ]
            .concat(),
        )?;
        for (serial, name, cert, key, usage) in [
            (
                "1001",
                "127.0.0.1",
                &certificates.server_cert,
                &certificates.server_key,
                "serverAuth",
            ),
            (
                "1002",
                "token-harness client",
                &certificates.client_cert,
                &certificates.client_key,
                "clientAuth",
            ),
        ] {
            let csr = key.with_extension("csr");
            let extensions = key.with_extension("ext");
            std::fs::write(
                &extensions,
                format!(
                    "basicConstraints=critical,CA:FALSE\n\
                     keyUsage=critical,digitalSignature\n\
                     extendedKeyUsage={usage}\n\
                     subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                ),
            )
            .map_err(HarnessError::io("writing a certificate extension file"))?;
            run(
                &openssl,
                &[
                    &["req", "-nodes"][..],
                    &ec,
                    &[
                        "-subj",
                        &format!("/CN={name}"),
                        "-keyout",
                        &path(key),
                        "-out",
                        &path(&csr),
                    ],
                ]
                .concat(),
            )?;
            run(
                &openssl,
                &[
                    "x509",
                    "-req",
                    "-days",
                    "2",
                    "-in",
                    &path(&csr),
                    "-CA",
                    &path(&certificates.ca_cert),
                    "-CAkey",
                    &path(&certificates.ca_key),
                    "-set_serial",
                    serial,
                    "-extfile",
                    &path(&extensions),
                    "-out",
                    &path(cert),
                ],
            )?;
        }
        Ok(certificates)
    }
}

fn run(openssl: &Path, args: &[&str]) -> Result<(), HarnessError> {
    let output = Command::new(openssl)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(HarnessError::io("running openssl"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(HarnessError::NotReady(format!(
            "openssl {} failed: {}",
            args.first().copied().unwrap_or_default(),
            String::from_utf8_lossy(&output.stderr)
        )))
    }
}
