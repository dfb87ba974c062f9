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
//! When Node.js is installed, it also starts the test OpenID Connect
//! provider (`tests/oidc-provider`, installing its dependencies with npm
//! first if they are missing) on a free loopback port and configures it as
//! `[[providers]]` `test-idp`: a sign-in provider (`login`, `provision`:
//! "Sign in with Test OpenID Provider" on the sign-in page, any username
//! and password there) and a connected service (the account page's
//! Connect), so the whole federated flow can be tried in a browser.
//! Without Node.js it says, in one line, how to enable it.
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
//! `admin`, `user`, and `oidc-provider` with the provider's issuer or why
//! it is off) and
//! the walk-through, so scripts and tests can read them.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use token_service_tests::acl::{self, AUTHORITY_USER, CLIENT_USER, RenderedAcl};
use token_service_tests::oidc::{self, CLIENT_ID, CLIENT_SECRET, OidcProvider};
use token_service_tests::process::ServiceProcess;
use token_test_harness::{RedisServer, binary};

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

/// The provider's name in the demo's `[[providers]]`.
const DEMO_PROVIDER: &str = "test-idp";

/// What the demo prints when the test OpenID Connect provider cannot run.
const NO_PROVIDER: &str = "off: install Node.js and npm (apt-get install -y nodejs npm, or brew install node) \
     and run scripts/demo again to sign in and connect with the test OpenID Connect provider";

/// 32 random bytes, base64 (a `CONNECT_*` key).
fn random_key() -> Result<String, String> {
    let mut bytes = [0_u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut random| std::io::Read::read_exact(&mut random, &mut bytes))
        .map_err(|error| format!("cannot read /dev/urandom: {error}"))?;
    Ok(STANDARD.encode(bytes))
}

/// The test OpenID Connect provider, started when Node.js is installed
/// (its dependencies installed with npm first when missing); otherwise
/// why not, in a line.
fn start_provider() -> Result<OidcProvider, String> {
    if binary::find("node", "NODE", "").is_err() {
        return Err(NO_PROVIDER.to_owned());
    }
    let dir = oidc::provider_dir();
    if !dir
        .join("node_modules/oidc-provider/package.json")
        .is_file()
    {
        if binary::find("npm", "NPM", "").is_err() {
            return Err(NO_PROVIDER.to_owned());
        }
        eprintln!("Installing the test OpenID Connect provider's dependencies (npm ci)...");
        let installed = Command::new("bash")
            .arg(dir.join("install.sh"))
            .stdout(Stdio::null())
            .status()
            .map_err(|error| format!("off: cannot run its install.sh: {error}"))?;
        if !installed.success() {
            return Err(format!(
                "off: {} failed; run it by hand to see why",
                dir.join("install.sh").display()
            ));
        }
    }
    // ID tokens carry the e-mail and name, as most sign-in providers' do.
    std::panic::catch_unwind(|| OidcProvider::start(&[("OIDC_ID_TOKEN_CLAIMS", "1")]))
        .map_err(|_| "off: the test OpenID Connect provider did not start (see above)".to_owned())
}

/// The authority's configuration file naming `provider` as a sign-in
/// provider and a connected service.
fn provider_config(provider: &OidcProvider) -> String {
    format!(
        "[[providers]]\n\
         name = \"{DEMO_PROVIDER}\"\n\
         display_name = \"Test OpenID Provider\"\n\
         issuer = \"{issuer}\"\n\
         client_id = \"{CLIENT_ID}\"\n\
         client_secret = \"{CLIENT_SECRET}\"\n\
         scopes = [\"openid\", \"email\", \"profile\", \"offline_access\"]\n\
         login = true\n\
         provision = true\n\
         default_scopes = [\"read\"]\n",
        issuer = provider.issuer(),
    )
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
    // The test OpenID Connect provider, for sign-in and as a connected
    // service, when Node.js can run it.
    let provider = start_provider();
    let config_dir =
        tempfile::tempdir().map_err(|error| format!("cannot make a directory: {error}"))?;
    let config_path = config_dir.path().join("authority.toml");
    let config_arg = config_path.display().to_string();
    let (state_key, connect_keys) = (random_key()?, format!("k1:{}", random_key()?));
    let mut serve_env = authority_env.to_vec();
    let mut serve_args = vec!["serve"];
    if let Ok(provider) = &provider {
        std::fs::write(&config_path, provider_config(provider))
            .map_err(|error| format!("cannot write {config_arg}: {error}"))?;
        serve_env.extend([
            ("CONNECT_STATE_KEY", state_key.as_str()),
            ("CONNECT_KEYS", connect_keys.as_str()),
            ("CONNECT_SUCCESS_URL", "/account"),
            ("CONNECT_FAILURE_URL", "/account"),
        ]);
        serve_args = vec!["--config", config_arg.as_str(), "serve"];
    }
    let authority = ServiceProcess::start_with_args(&options.authority, &serve_args, &serve_env);
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
    match &provider {
        Ok(provider) => println!(
            "oidc-provider: {} (provider {DEMO_PROVIDER}: \"Sign in with Test OpenID Provider\" at {a}/signin \
             with any username and password, and Connect on the account page)",
            provider.issuer()
        ),
        Err(why) => println!("oidc-provider: {why}"),
    }
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
    drop(provider);
    drop(redis);
    drop(config_dir);
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
