//! The compose demo, checked without a Docker engine: `docker-compose
//! config` (Debian's package) must accept `docker/compose.yaml`, and the
//! resolved file must have the topology the README promises: health
//! checks, generated credentials, persistence.

use std::path::Path;
use std::process::Command;

use std::time::{Duration, Instant};

use token_service_tests::Authority;
use token_test_harness::{RedisServer, binary};
use yaml_rust2::{Yaml, YamlLoader};

const AUTHORITY: &str = env!("CARGO_BIN_EXE_e2e-token-authority");

fn docker_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../docker"))
}

fn resolved_compose() -> Yaml {
    let compose = binary::find(
        "docker-compose",
        "DOCKER_COMPOSE",
        "Install it: `sudo apt-get install -y docker-compose` (CI does this in .ci/run)",
    )
    .unwrap_or_else(|error| panic!("{error}"));
    let output = Command::new(compose)
        .args(["-f", "compose.yaml", "config"])
        .current_dir(docker_dir())
        .output()
        .expect("run docker-compose");
    assert!(
        output.status.success(),
        "docker-compose refused docker/compose.yaml:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).expect("utf-8");
    YamlLoader::load_from_str(&text).expect("yaml").remove(0)
}

/// `docker-compose config` accepts the file; Redis, the authority and the
/// service each have a health check; the authority waits for a healthy
/// Redis and the service for both; Redis waits for the `credentials`
/// service to finish, and the files it mounts exist.
#[test]
fn compose_file_is_valid_and_wired() {
    let compose = resolved_compose();
    let services = &compose["services"];
    for name in ["redis", "authority", "service"] {
        assert!(!services[name].is_badvalue(), "service {name} missing");
        assert!(
            !services[name]["healthcheck"]["test"].is_badvalue(),
            "{name} has no health check"
        );
    }
    assert_eq!(
        services["authority"]["depends_on"]["redis"]["condition"].as_str(),
        Some("service_healthy")
    );
    for dependency in ["redis", "authority"] {
        assert_eq!(
            services["service"]["depends_on"][dependency]["condition"].as_str(),
            Some("service_healthy")
        );
    }
    for mount in services["credentials"]["volumes"]
        .as_vec()
        .expect("credentials volumes")
    {
        let source = mount.as_str().expect("short syntax").split(':').next();
        let source = source.expect("source");
        if source.starts_with('/') {
            assert!(Path::new(source).is_file(), "{source} missing");
        }
    }
    assert_eq!(
        services["redis"]["depends_on"]["credentials"]["condition"].as_str(),
        Some("service_completed_successfully"),
        "Redis starts before its ACL file is rendered"
    );
}

/// The redis service's `command` as strings.
fn redis_command(compose: &Yaml) -> Vec<String> {
    compose["services"]["redis"]["command"]
        .as_vec()
        .expect("redis command")
        .iter()
        .filter_map(Yaml::as_str)
        .map(str::to_owned)
        .collect()
}

/// The value following `flag` in `command`.
fn flag<'a>(command: &'a [String], flag: &str) -> Option<&'a str> {
    command
        .windows(2)
        .find(|pair| pair[0] == flag)
        .map(|pair| pair[1].as_str())
}

/// Accounts live only in Redis, so the compose Redis persists: AOF on, an
/// fsync every second, its directory on a named volume (kept across
/// `down`/`up`, unlike the container); and it never evicts keys under
/// memory pressure (writes fail instead of tokens and accounts vanishing).
#[test]
fn redis_persists_and_never_evicts() {
    let compose = resolved_compose();
    let command = redis_command(&compose);
    assert_eq!(flag(&command, "--appendonly"), Some("yes"), "{command:?}");
    assert_eq!(
        flag(&command, "--appendfsync"),
        Some("everysec"),
        "{command:?}"
    );
    assert_eq!(
        flag(&command, "--maxmemory-policy"),
        Some("noeviction"),
        "{command:?}"
    );
    let dir = flag(&command, "--dir").expect("--dir");
    let volume = compose["services"]["redis"]["volumes"]
        .as_vec()
        .expect("redis volumes")
        .iter()
        .filter_map(Yaml::as_str)
        .find_map(|mount| {
            let mut parts = mount.split(':');
            let (source, target) = (parts.next()?, parts.next()?);
            (target == dir).then(|| source.to_owned())
        })
        .unwrap_or_else(|| panic!("nothing mounted at {dir}"));
    assert!(
        !compose["volumes"][volume.as_str()].is_badvalue(),
        "{volume} is not a named volume"
    );
}

/// No password is written into the image, the repository or the compose
/// environment: the authority and the service read their Redis URLs from
/// files in their own volumes, and Redis loads the ACL file (default user
/// off, hashes only) that the `credentials` service rendered.
#[test]
fn secrets_come_from_files_not_the_image() {
    let compose = resolved_compose();
    let services = &compose["services"];
    for name in ["authority", "service"] {
        let Yaml::Hash(environment) = &services[name]["environment"] else {
            panic!("{name} has no environment");
        };
        assert!(
            environment.contains_key(&Yaml::String("REDIS_URL_FILE".into())),
            "{name}"
        );
        for value in environment.values() {
            let value = value.as_str().unwrap_or_default();
            assert!(
                !value.contains("password") && !value.contains('@'),
                "{name}: {value}"
            );
        }
    }
    let command = redis_command(&compose);
    let acl_file = flag(&command, "--aclfile").expect("--aclfile");
    let acl_dir = Path::new(acl_file)
        .parent()
        .expect("dir")
        .to_str()
        .expect("utf-8");
    let mounted = |service: &str, target: &str| {
        services[service]["volumes"]
            .as_vec()
            .into_iter()
            .flatten()
            .filter_map(Yaml::as_str)
            .find_map(|mount| {
                let mut parts = mount.split(':');
                let source = parts.next()?;
                (parts.next()? == target).then(|| source.to_owned())
            })
    };
    // Redis reads the ACL the credentials service rendered into a volume,
    // from the template in the repository (no password in clear).
    let acl_volume = mounted("redis", acl_dir).expect("ACL volume on redis");
    let entrypoint: Vec<&str> = services["credentials"]["entrypoint"]
        .as_vec()
        .expect("credentials entrypoint")
        .iter()
        .filter_map(Yaml::as_str)
        .collect();
    assert!(
        entrypoint
            .iter()
            .any(|arg| arg.ends_with("render-secrets.sh")),
        "{entrypoint:?}"
    );
    let rendered_into = mounted("credentials", entrypoint[3]).expect("ACL output mount");
    assert_eq!(rendered_into, acl_volume);
    let acl = std::fs::read_to_string(docker_dir().join("redis-users.acl")).expect("acl");
    assert!(acl.lines().any(|line| line.trim() == "user default off"));
    assert!(
        !acl.contains(" >"),
        "a password in clear in redis-users.acl"
    );
    // Each program reads its URL from its own volume, which Redis never mounts.
    for name in ["authority", "service"] {
        let file = services[name]["environment"]["REDIS_URL_FILE"]
            .as_str()
            .expect("REDIS_URL_FILE");
        let dir = Path::new(file)
            .parent()
            .expect("dir")
            .to_str()
            .expect("utf-8");
        let volume = mounted(name, dir).unwrap_or_else(|| panic!("nothing at {dir} in {name}"));
        assert!(mounted("redis", "/data").as_deref() != Some(volume.as_str()));
        assert!(
            !compose["volumes"][volume.as_str()].is_badvalue(),
            "{volume} is not a named volume"
        );
    }

    let dockerfile = std::fs::read_to_string(docker_dir().join("Dockerfile")).expect("Dockerfile");
    let stages =
        dockerfile.matches("\nFROM ").count() + usize::from(dockerfile.starts_with("FROM "));
    assert!(stages >= 2, "a multi-stage build");
    let user = dockerfile
        .lines()
        .rev()
        .find_map(|line| line.strip_prefix("USER "))
        .expect("the runtime stage sets a USER");
    assert!(
        !user.starts_with("root") && !user.starts_with('0'),
        "runs as {user}"
    );
    for line in dockerfile
        .lines()
        .filter(|line| !line.trim_start().starts_with('#'))
    {
        let line = line.to_lowercase();
        assert!(
            !line.contains("password") && !line.contains("redis://"),
            "a secret in the image: {line}"
        );
    }
}

/// The compose Redis's settings from `docker/compose.yaml` (read directly,
/// no Docker needed) as `redis.conf` lines, without the ACL file and the
/// directory, which the harness sets.
fn compose_redis_settings() -> Vec<String> {
    let text = std::fs::read_to_string(docker_dir().join("compose.yaml")).expect("compose.yaml");
    let compose = YamlLoader::load_from_str(&text).expect("yaml").remove(0);
    let command: Vec<&str> = compose["services"]["redis"]["command"]
        .as_vec()
        .expect("redis command")
        .iter()
        .map(|word| word.as_str().expect("a string"))
        .collect();
    assert_eq!(command.first(), Some(&"redis-server"), "{command:?}");
    command[1..]
        .chunks(2)
        .filter_map(|pair| {
            let name = pair[0].strip_prefix("--").expect("--flag value pairs");
            let value = pair.get(1).copied().unwrap_or_default();
            match name {
                "aclfile" | "dir" => None,
                _ if value.is_empty() => Some(format!("{name} \"\"")),
                _ => Some(format!("{name} {value}")),
            }
        })
        .collect()
}

/// A Redis run with the compose file's settings keeps accounts, clients and
/// tokens when its process dies (SIGKILL) and comes back: the AOF is
/// written before Redis answers, so a crash of the process loses nothing
/// acknowledged (a crash of the machine can lose the last second, see the
/// README's "Durability and backups"). The authority reconnects by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compose_redis_settings_keep_accounts_across_a_crash() {
    let mut builder = RedisServer::builder();
    for line in compose_redis_settings() {
        builder = builder.config_line(line);
    }
    let mut redis = builder.start();
    let authority = Authority::start(AUTHORITY, &redis, &[]);
    authority.add_user("alice", "alice's password", &["read"]);
    let secret = authority.add_client("backend", &["read"], false);
    let login = authority.login("alice", "alice's password").await;
    let access = login["access_token"]
        .as_str()
        .expect("access token")
        .to_owned();

    redis.restart();

    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = authority.get_with("/v1/me", &access).await.status();
        if status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the token issued before the crash is gone ({status})\n{}",
            authority.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let again = authority.login("alice", "alice's password").await;
    assert!(again["access_token"].is_string());
    let client = authority
        .token(&[
            ("grant_type", "client_credentials"),
            ("client_id", "backend"),
            ("client_secret", secret.as_str()),
        ])
        .await;
    assert_eq!(client.status(), 200, "the client was lost");
}

/// The one-shot `demo-app` service's command, as one line.
fn demo_command(demo: &Yaml) -> String {
    demo["command"]
        .as_vec()
        .into_iter()
        .flatten()
        .filter_map(Yaml::as_str)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The example service checks its audience, and the demo registers that
/// resource, so the walk-through's `resource=` tokens are issued.
#[test]
fn the_service_audience_is_registered() {
    let compose = resolved_compose();
    let audience = compose["services"]["service"]["environment"]["AUDIENCE"]
        .as_str()
        .expect("the service has an AUDIENCE")
        .to_owned();
    let command = demo_command(&compose["services"]["demo-app"]);
    assert!(
        command.contains(&format!("resource add {audience}")),
        "{command}"
    );
    let readme = std::fs::read_to_string(docker_dir().join("README.md")).expect("docker/README.md");
    assert!(
        readme.contains("-d resource=$S"),
        "the walk-through asks for the service"
    );
}

/// The compose demo registers a public demo client for the browser sign-in
/// (PKCE, a loopback redirect URI) once the authority is healthy, with the
/// authority's Redis credentials, and prints the account page.
#[test]
fn demo_app_is_registered_and_the_account_page_printed() {
    let compose = resolved_compose();
    let demo = &compose["services"]["demo-app"];
    assert_eq!(
        demo["depends_on"]["authority"]["condition"].as_str(),
        Some("service_healthy")
    );
    let command = demo_command(demo);
    for needle in [
        "client add demo-app",
        "--public",
        "--redirect-uri http://127.0.0.1/callback",
        "/account",
    ] {
        assert!(command.contains(needle), "{needle} missing in {command}");
    }
    assert!(
        demo["volumes"]
            .as_vec()
            .into_iter()
            .flatten()
            .filter_map(Yaml::as_str)
            .any(|volume| volume.starts_with("authority-secrets:")),
        "the demo app needs the authority's Redis URL"
    );
}
