//! `token-demo`: the compose demo's topology without Docker.
//!
//! Starts a private `redis-server` with `docker/redis-users.acl` (the
//! default user off, an `authority` user, a read-only `token-client` user)
//! rendered with passwords generated for this run (the file holds only
//! `#<sha256>` placeholders),
//! the authority and the example protected service on free loopback ports,
//! creates an admin and a demo user, registers the service as a resource
//! (its `AUDIENCE`), prints the URLs, the credentials and a
//! curl walk-through, and stops everything on Ctrl-C or SIGTERM.
//!
//! ```sh
//! scripts/demo            # builds, then runs this
//! token-demo [--authority PATH] [--service PATH] [--acl PATH]
//! ```
//!
//! Binaries default to `token-authority` and `protected-service` next to
//! this executable; the ACL template to `docker/redis-users.acl` of the
//! source tree. The last line printed is `ready`; everything before it is
//! `key: value` lines (`authority`, `service`, `resource`, `redis`,
//! `admin`, `user`) and
//! the walk-through, so scripts and tests can read them.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use token_service_tests::acl::{self, AUTHORITY_USER, CLIENT_USER, RenderedAcl};
use token_service_tests::process::ServiceProcess;
use token_test_harness::RedisServer;

/// The example service's resource URI: registered at the authority, its
/// `AUDIENCE`; tokens for it are requested with `resource=` this.
const SERVICE_RESOURCE: &str = "https://protected-service.example";

struct Options {
    authority: PathBuf,
    service: PathBuf,
    acl: PathBuf,
}

fn options() -> Result<Options, String> {
    let here = std::env::current_exe()
        .map_err(|error| format!("cannot find this executable: {error}"))?
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let mut options = Options {
        authority: here.join("token-authority"),
        service: here.join("protected-service"),
        acl: PathBuf::from(acl::TEMPLATE),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--authority" => options.authority = value.into(),
            "--service" => options.service = value.into(),
            "--acl" => options.acl = value.into(),
            _ => {
                return Err(format!(
                    "unknown option {flag} (known: --authority, --service, --acl)"
                ));
            }
        }
    }
    for (what, path) in [
        ("authority", &options.authority),
        ("service", &options.service),
        ("ACL template", &options.acl),
    ] {
        if !path.exists() {
            return Err(format!(
                "the {what} {} does not exist (run scripts/demo, which builds it)",
                path.display()
            ));
        }
    }
    Ok(options)
}

/// Runs the authority's admin CLI with `env`, feeding `stdin`.
fn cli(authority: &Path, env: &[(&str, &str)], args: &[&str], stdin: &str) -> Result<(), String> {
    let mut child = Command::new(authority)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| format!("cannot run {}: {error}", authority.display()))?;
    if let Some(mut input) = child.stdin.take() {
        std::io::Write::write_all(&mut input, stdin.as_bytes())
            .map_err(|error| format!("cannot write to the CLI: {error}"))?;
    }
    let output = child
        .wait_with_output()
        .map_err(|error| format!("the CLI failed: {error}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

fn run() -> Result<(), String> {
    let options = options()?;
    // Signal handlers first: a Ctrl-C at any later point stops everything
    // through the drops below instead of killing this process outright.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| format!("cannot start a runtime: {error}"))?;
    let (mut interrupt, mut terminate) = {
        use tokio::signal::unix::{SignalKind, signal};
        let _context = runtime.enter();
        match (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) {
            (Ok(interrupt), Ok(terminate)) => (interrupt, terminate),
            _ => return Err("cannot listen for Ctrl-C".to_owned()),
        }
    };
    let users = RenderedAcl::render(&options.acl)?;
    let redis = RedisServer::builder()
        .acl_file(users.path())
        .try_start()
        .map_err(|error| error.to_string())?;
    let authority_url = redis.url_as(AUTHORITY_USER, &users.authority_password);
    let client_url = redis.url_as(CLIENT_USER, &users.client_password);
    let authority_env = [
        ("REDIS_URL", authority_url.as_str()),
        ("LISTEN_ADDR", "127.0.0.1:0"),
    ];
    let admin_password = acl::password()?;
    let user_password = acl::password()?;
    cli(
        &options.authority,
        &authority_env,
        &[
            "user",
            "add",
            "admin",
            "--scope",
            "admin",
            "--name",
            "Demo Admin",
            "--password-stdin",
        ],
        &format!("{admin_password}\n"),
    )?;
    cli(
        &options.authority,
        &authority_env,
        &[
            "user",
            "add",
            "alice",
            "--scope",
            "read",
            "--name",
            "Alice Demo",
            "--email",
            "alice@example.com",
            "--password-stdin",
        ],
        &format!("{user_password}\n"),
    )?;
    // A demo application of the code flow: a public client with a loopback
    // redirect URI (any port), as a native app registers.
    cli(
        &options.authority,
        &authority_env,
        &[
            "client",
            "add",
            "demo-app",
            "--public",
            "--redirect-uri",
            "http://127.0.0.1/callback",
        ],
        "",
    )?;
    // The service is a resource server: tokens must be issued for it.
    cli(
        &options.authority,
        &authority_env,
        &["resource", "add", SERVICE_RESOURCE],
        "",
    )?;
    let authority = ServiceProcess::start_with_args(&options.authority, &["serve"], &authority_env);
    let service = ServiceProcess::start(
        &options.service,
        &[
            ("REDIS_URL", client_url.as_str()),
            ("LISTEN_ADDR", "127.0.0.1:0"),
            ("TOKEN_CACHE", "on"),
            ("AUDIENCE", SERVICE_RESOURCE),
        ],
    );
    let a = authority.url("");
    let s = service.url("");
    println!("authority: {a}");
    println!("service: {s}");
    println!("resource: {SERVICE_RESOURCE}");
    println!(
        "redis: redis://127.0.0.1:{} (users authority, token-client; passwords generated for this run)",
        redis.port()
    );
    println!("redis-authority: {authority_url}");
    println!("redis-token-client: {client_url}");
    println!("account: {a}/account");
    println!("app: demo-app (public client, redirect http://127.0.0.1/callback on any port)");
    println!("admin: admin {admin_password}");
    println!("user: alice {user_password}");
    println!();
    println!("# Walk-through (copy and paste):");
    println!("A={a} S={s} R={SERVICE_RESOURCE}");
    println!("# a token for the service (its audience, R); without resource= it is refused there");
    println!(
        "T=$(curl -s $A/oauth/token -d grant_type=password -d username=alice -d password={user_password} \
         -d resource=$R | sed 's/.*\"access_token\":\"\\([^\"]*\\)\".*/\\1/')"
    );
    println!("curl -s $S/whoami -H \"Authorization: Bearer $T\"          # 200, the principal");
    println!(
        "curl -si $A/v1/me -H \"Authorization: Bearer $T\" | head -1 # 401: not a token for the authority"
    );
    println!(
        "curl -s $A/oauth/revoke -d token=$T                          # revoke at the authority"
    );
    println!("curl -si $S/whoami -H \"Authorization: Bearer $T\" | head -1 # 401 at once");
    println!();
    println!("# The code flow (sign in as alice in a browser at the printed URL):");
    println!(
        "V=$(openssl rand -hex 32); C=$(printf %s $V | openssl dgst -sha256 -binary | basenc --base64url | tr -d =)"
    );
    println!(
        "echo \"$A/oauth/authorize?response_type=code&client_id=demo-app&redirect_uri=http%3A%2F%2F127.0.0.1%3A8400%2Fcallback&scope=read&state=demo&code_challenge=$C&code_challenge_method=S256&resource=$R\""
    );
    println!("# after signing in the browser goes to http://127.0.0.1:8400/callback?code=…; then:");
    println!(
        "curl -s $A/oauth/token -d grant_type=authorization_code -d client_id=demo-app \
         -d redirect_uri=http://127.0.0.1:8400/callback -d code_verifier=$V -d code=CODE"
    );
    println!();
    println!("Ctrl-C stops everything.");
    println!("ready");
    std::io::Write::flush(&mut std::io::stdout()).map_err(|error| format!("stdout: {error}"))?;
    runtime.block_on(async {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    });
    eprintln!("stopping the service, the authority and Redis");
    drop(service);
    drop(authority);
    drop(redis);
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("token-demo: {error}");
            ExitCode::FAILURE
        }
    }
}
