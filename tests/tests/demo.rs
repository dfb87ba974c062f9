//! The README's "run the main job" command, `scripts/demo` (which runs
//! `token-demo`), brings the system up; the walk-through of docker/README.md
//! succeeds against it; with Node.js, the test OpenID Connect provider it
//! starts signs a user in (and connects it) from the sign-in page's
//! button; Ctrl-C stops every process it started.

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const DEMO: &str = env!("CARGO_BIN_EXE_token-demo");
const AUTHORITY: &str = env!("CARGO_BIN_EXE_e2e-token-authority");
const SERVICE: &str = env!("CARGO_BIN_EXE_protected-service");

fn port_of(url: &str) -> u16 {
    url.rsplit(':')
        .next()
        .and_then(|port| port.trim_end_matches('/').parse().ok())
        .expect("port")
}

fn refuses(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_err()
}

/// The demo comes up with both users, the walk-through works (log in, call
/// the protected service, revoke, see 401; the admin creates a user), and
/// Ctrl-C leaves no process listening.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_walk_through() {
    let mut demo = Command::new(DEMO)
        .args(["--authority", AUTHORITY, "--service", SERVICE])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start token-demo");
    let stdout = demo.stdout.take().expect("stdout");
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let mut summary = HashMap::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line == "ready" {
                let _ = sender.send(summary);
                return;
            }
            if let Some((key, value)) = line.split_once(": ") {
                summary.insert(key.to_owned(), value.to_owned());
            }
        }
    });
    let summary = receiver
        .recv_timeout(Duration::from_secs(60))
        .expect("token-demo printed `ready`");
    let authority = summary["authority"].clone();
    let service = summary["service"].clone();
    let redis_port = summary["redis"]
        .split_whitespace()
        .next()
        .map(port_of)
        .expect("redis port");
    let (_, alice_password) = summary["user"].split_once(' ').expect("user line");
    let (_, admin_password) = summary["admin"].split_once(' ').expect("admin line");
    token_repository::redis::install_crypto_provider();
    // The account page is printed, and asks for a sign-in; the demo app
    // is registered (a well-formed authorization request reaches the
    // sign-in page, not an error page).
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let account = no_redirects
        .get(&summary["account"])
        .send()
        .await
        .expect("account page");
    assert_eq!(account.status(), 303);
    let authorize = no_redirects
        .get(format!(
            "{authority}/oauth/authorize?response_type=code&client_id=demo-app\
             &redirect_uri=http%3A%2F%2F127.0.0.1%3A8400%2Fcallback\
             &code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256"
        ))
        .send()
        .await
        .expect("authorize");
    assert_eq!(authorize.status(), 303);
    let target = authorize.headers()["location"].to_str().expect("location");
    assert!(target.starts_with("/signin?"), "{target}");
    // With Node.js, the test OpenID Connect provider is a sign-in provider
    // (a button on the sign-in page); without, one line says how to enable it.
    let oidc_provider = &summary["oidc-provider"];
    if token_test_harness::binary::find("node", "NODE", "").is_ok() {
        assert!(
            oidc_provider.starts_with("http://127.0.0.1:"),
            "{oidc_provider}"
        );
        let signin = no_redirects
            .get(format!("{authority}/signin"))
            .send()
            .await
            .expect("sign-in page")
            .text()
            .await
            .expect("page");
        assert!(
            signin.contains("Sign in with Test OpenID Provider"),
            "{signin}"
        );
        // The whole flow: signed in (the account made just in time) and
        // connected at once, as the account page shows.
        let browser = token_service_tests::oidc::Browser::new();
        let callback = browser
            .authorize(
                &format!("{authority}/signin/federated?provider=test-idp"),
                "dora",
            )
            .await;
        let (status, _) = browser.visit(callback.as_str()).await;
        assert_eq!(status, 303);
        let page = browser.page(&format!("{authority}/account")).await;
        assert!(
            page.contains("it signs in with <strong>Test OpenID Provider</strong>"),
            "{page}"
        );
        assert!(
            page.contains("data-provider=\"test-idp\" data-status=\"connected\""),
            "{page}"
        );
    } else {
        assert!(oidc_provider.contains("install Node.js"), "{oidc_provider}");
    }
    let http = reqwest::Client::new();
    // Tokens for the service name it (its AUDIENCE); the admin's is for the
    // authority (the default audience).
    let resource = summary["resource"].clone();
    let login = |username: &'static str, password: String| {
        let mut form = vec![
            ("grant_type", "password"),
            ("username", username),
            ("password", password.as_str()),
        ];
        if username != "admin" {
            form.push(("resource", resource.as_str()));
        }
        let request = http.post(format!("{authority}/oauth/token")).form(&form);
        async move {
            let response = request.send().await.expect("login");
            assert_eq!(response.status(), 200, "login of {username}");
            response.json::<Value>().await.expect("json")["access_token"]
                .as_str()
                .expect("token")
                .to_owned()
        }
    };

    let alice = login("alice", alice_password.to_owned()).await;
    let whoami = http
        .get(format!("{service}/whoami"))
        .bearer_auth(&alice)
        .send()
        .await
        .expect("whoami");
    assert_eq!(whoami.status(), 200);
    let principal: Value = whoami.json().await.expect("json");
    assert_eq!(principal["username"], "alice");
    assert_eq!(principal["email"], "alice@example.com");

    let revoked = http
        .post(format!("{authority}/oauth/revoke"))
        .form(&[("token", alice.as_str())])
        .send()
        .await
        .expect("revoke");
    assert_eq!(revoked.status(), 200);
    let started = Instant::now();
    loop {
        let status = http
            .get(format!("{service}/whoami"))
            .bearer_auth(&alice)
            .send()
            .await
            .expect("whoami")
            .status();
        if status == 401 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "still {status} after revocation"
        );
    }

    let admin = login("admin", admin_password.to_owned()).await;
    let created = http
        .post(format!("{authority}/v1/admin/users"))
        .bearer_auth(&admin)
        .json(&json!({ "username": "bob", "password": "bob's demo password", "scope": "read" }))
        .send()
        .await
        .expect("create bob");
    assert_eq!(created.status(), 201);
    let bob = login("bob", "bob's demo password".to_owned()).await;
    let public = http
        .get(format!("{service}/public"))
        .bearer_auth(&bob)
        .send()
        .await
        .expect("public")
        .json::<Value>()
        .await
        .expect("json");
    assert_eq!(public["greeting"], "hello, bob");

    let _ = Command::new("kill")
        .arg("-INT")
        .arg(demo.id().to_string())
        .status();
    let exited =
        token_test_harness::wait_until(Duration::from_secs(20), || demo.try_wait().ok().flatten());
    let (status, _) = exited.expect("token-demo stops on Ctrl-C");
    assert!(status.success(), "{status:?}");
    for port in [port_of(&authority), port_of(&service), redis_port] {
        assert!(refuses(port), "port {port} still listening after Ctrl-C");
    }
}

/// `scripts/demo` says what it builds and how long that takes before the
/// build starts, and lets cargo show its progress (no `--quiet`): a first
/// build of about 10 minutes must not look like a hung terminal. Cargo is
/// replaced by a recorder (`CARGO`), so nothing is built here.
#[test]
fn demo_script_announces_and_shows_its_build() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().expect("dir");
    let recorded = dir.path().join("args");
    let fake = dir.path().join("cargo");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$@\" > '{}'\necho FAKE-CARGO-RAN >&2\nexit 3\n",
            recorded.display()
        ),
    )
    .expect("write the fake cargo");
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/demo");
    let output = Command::new("bash")
        .arg(script)
        .env("CARGO", &fake)
        .stdin(Stdio::null())
        .output()
        .expect("run scripts/demo");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(3),
        "the build's failure is the script's: {stderr}"
    );
    let ran = stderr.find("FAKE-CARGO-RAN").expect("cargo ran");
    let note = &stderr[..ran];
    for what in [
        "token-authority",
        "protected-service",
        "token-demo",
        "10 minutes",
    ] {
        assert!(
            note.contains(what),
            "not said before the build: {what}\n{stderr}"
        );
    }
    let args = std::fs::read_to_string(&recorded).expect("recorded arguments");
    let args: Vec<&str> = args.lines().collect();
    assert_eq!(args.first(), Some(&"build"), "{args:?}");
    assert!(args.contains(&"--release"), "{args:?}");
    assert!(
        !args.iter().any(|arg| *arg == "--quiet" || *arg == "-q"),
        "the build hides its progress: {args:?}"
    );
}
