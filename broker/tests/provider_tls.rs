//! Provider calls over TLS in the default build: OpenID Connect discovery
//! against a real TLS server (`openssl s_server -WWW`, certificate from a
//! CA the test makes) succeeds when `CONNECT_CA_FILE`'s CA is trusted and
//! fails, as unavailable, when only the webpki roots are.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;
use token_broker::oauth_client::{ProviderClient, ProviderError};
use token_test_harness::{TestCertificates, wait_until};

/// An `openssl s_server` serving the files of its directory over TLS;
/// killed when dropped.
struct TlsFileServer {
    child: Child,
}

impl Drop for TlsFileServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve_files(dir: &std::path::Path, port: u16, certificates: &TestCertificates) -> TlsFileServer {
    let child = Command::new("openssl")
        .args(["s_server", "-quiet", "-WWW", "-accept"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("-cert")
        .arg(&certificates.server_cert)
        .arg("-key")
        .arg(&certificates.server_key)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl s_server (apt-get install openssl)");
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let server = TlsFileServer { child };
    assert!(
        wait_until(Duration::from_secs(10), || {
            TcpStream::connect_timeout(&addr, Duration::from_millis(200))
                .ok()
                .map(drop)
        })
        .is_some(),
        "openssl s_server did not listen on {addr}"
    );
    server
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_discovery_trusts_connect_ca_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let certificates = TestCertificates::generate(dir.path()).expect("certificates");
    let www = dir.path().join("www");
    std::fs::create_dir_all(www.join(".well-known")).expect("dir");
    let port = token_test_harness::port::free_port().expect("port");
    let issuer = format!("https://127.0.0.1:{port}");
    std::fs::write(
        www.join(".well-known/openid-configuration"),
        serde_json::json!({
            "issuer": issuer,
            "authorization_endpoint": format!("{issuer}/authorize"),
            "token_endpoint": format!("{issuer}/token"),
            "code_challenge_methods_supported": ["S256"],
        })
        .to_string(),
    )
    .expect("discovery document");
    let _server = serve_files(&www, port, &certificates);

    let pem = std::fs::read(&certificates.ca_cert).expect("CA");
    let roots: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .expect("PEM");
    let trusting = ProviderClient::with_roots(Duration::from_secs(5), &roots).expect("client");
    let discovered = trusting
        .discover(&issuer)
        .await
        .expect("discovery over TLS");
    assert_eq!(
        discovered.token_endpoint.as_deref(),
        Some(format!("{issuer}/token").as_str())
    );

    let webpki_only = ProviderClient::new(Duration::from_secs(5)).expect("client");
    let error = webpki_only.discover(&issuer).await.unwrap_err();
    assert!(matches!(error, ProviderError::Unavailable(_)), "{error}");
}

/// Answers every request on a loopback port with the JSON `body(port)`,
/// until aborted; answers the port.
async fn json_responder(body: impl Fn(u16) -> String) -> (u16, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let body = body(port);
    let task = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut request = vec![0_u8; 4096];
            let _ = stream.read(&mut request).await;
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(answer.as_bytes()).await;
        }
    });
    (port, task)
}

/// A discovery document (from a loopback issuer, allowed over http://)
/// naming a plain http:// token endpoint on another host: the provider's
/// endpoints are refused, unless it sets `allow_insecure_http`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_discovered_endpoints_are_refused() {
    use token_broker::providers::parse;
    use token_broker::registry::Provider;

    let (port, responder) = json_responder(|port| {
        serde_json::json!({
            "issuer": format!("http://127.0.0.1:{port}"),
            "authorization_endpoint": "https://idp.example/authorize",
            "token_endpoint": "http://idp.example/token",
        })
        .to_string()
    })
    .await;
    let issuer = format!("http://127.0.0.1:{port}");
    let client = ProviderClient::new(Duration::from_secs(5)).expect("client");
    for (extra, allowed) in [("", false), ("allow_insecure_http = true\n", true)] {
        let text = format!(
            "[[providers]]\nname = \"p\"\nissuer = \"{issuer}\"\nclient_id = \"c\"\nclient_secret = \"s\"\n{extra}"
        );
        let table: toml::Table = text.parse().expect("toml");
        let tables = vec![table["providers"][0].as_table().expect("table").clone()];
        let config = parse(&tables, &|_| None).expect("a loopback issuer is fine");
        let provider = Provider::new(config[0].clone(), "http://127.0.0.1/cb");
        let endpoints = provider.endpoints(&client).await;
        if allowed {
            let endpoints = endpoints.expect("allowed for tests");
            assert_eq!(endpoints.token.as_str(), "http://idp.example/token");
        } else {
            let error = endpoints.unwrap_err();
            assert!(matches!(error, ProviderError::Invalid(_)), "{error}");
        }
    }
    responder.abort();
}
