//! The compose demo, checked without a Docker engine: `docker-compose
//! config` (Debian's package) must accept `docker/compose.yaml`, and the
//! resolved file must have the topology the README promises.

use std::path::Path;
use std::process::Command;

use token_test_harness::binary;
use yaml_rust2::{Yaml, YamlLoader};

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
/// Redis and the service for both; every secret file exists.
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
    let Yaml::Hash(secrets) = &compose["secrets"] else {
        panic!("no secrets section");
    };
    for (name, secret) in secrets {
        let file = secret["file"].as_str().expect("secret file");
        assert!(Path::new(file).is_file(), "secret {name:?}: {file} missing");
    }
}

/// No password is written into the image or the compose environment: the
/// authority and the service read their Redis URLs from secret files, and
/// Redis loads the ACL file (default user off) as a secret.
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
    let redis_command: Vec<&str> = services["redis"]["command"]
        .as_vec()
        .expect("redis command")
        .iter()
        .filter_map(Yaml::as_str)
        .collect();
    assert!(
        redis_command
            .windows(2)
            .any(|pair| pair == ["--aclfile", "/run/secrets/redis_users_acl"])
    );
    let acl = std::fs::read_to_string(docker_dir().join("redis-users.acl")).expect("acl");
    assert!(acl.lines().any(|line| line.trim() == "user default off"));

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
