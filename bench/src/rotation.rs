//! Row 6: issuing without password hashing — `refresh_token` rotation at
//! the authority — against raw Redis `SET` at the same concurrency.
//!
//! Many users refresh their own sessions: the users are created in the
//! authority's account store, each gets one token pair (repository
//! writer, no client), and every worker rotates the refresh tokens of its
//! share of the users in turn; each answer carries the token of that
//! user's next rotation.
//!
//! Rotations and `SET`s are measured in interleaved rounds (`--rounds`),
//! so that the machine's noise hits both alike: this machine's `SET` rate
//! alone moved by half between two runs minutes apart. The median round of
//! each is reported, and the ratios round by round in the notes.

use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use http::StatusCode;
use token_authority::accounts::{Accounts, User};
use token_repository::{RedisConfig, RedisStore, Scopes, Timestamp};
use token_test_harness::RedisServer;

use crate::authority::{self, Authority};
use crate::fixtures::{self, Person};
use crate::load::{self, Scenario};
use crate::login;
use crate::report::{Figures, Row, median_run, thousands, times};
use crate::server::process_cpu;
use crate::{Context, redis_commandstats, redis_cpu};

/// The refresh tokens of one worker's users, rotated in turn.
struct Chains {
    tokens: Vec<String>,
    next: usize,
    in_flight: usize,
    /// Where the tokens wait between rounds: each answer replaces its
    /// token, so the next round must start from the last ones.
    home: Arc<Mutex<Vec<String>>>,
}

impl Chains {
    /// The chains of the worker whose tokens wait in `home`.
    fn resume(home: &Arc<Mutex<Vec<String>>>) -> Self {
        let tokens = std::mem::take(&mut *home.lock().unwrap_or_else(PoisonError::into_inner));
        Self {
            tokens,
            next: 0,
            in_flight: 0,
            home: Arc::clone(home),
        }
    }
}

impl Drop for Chains {
    /// A worker stops after its last answer: its tokens are the current ones.
    fn drop(&mut self) {
        *self.home.lock().unwrap_or_else(PoisonError::into_inner) =
            std::mem::take(&mut self.tokens);
    }
}

/// What a rotation's answer must carry for the next one.
#[derive(serde::Deserialize)]
struct Answer<'a> {
    refresh_token: &'a str,
}

impl Scenario for Chains {
    fn request(&mut self) -> http::Request<http_body_util::Full<Bytes>> {
        self.in_flight = self.next;
        self.next = (self.next + 1) % self.tokens.len();
        login::form(
            "/oauth/token",
            format!(
                "grant_type=refresh_token&refresh_token={}",
                self.tokens[self.in_flight]
            ),
            None,
        )
    }

    fn answer(&mut self, status: StatusCode, body: &Bytes) -> Result<(), String> {
        if status != StatusCode::OK {
            return Err(format!(
                "rotation answered {status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            ));
        }
        // Only the field the next request needs (the load generator shares
        // the machine with what it measures).
        let answer: Answer<'_> = serde_json::from_slice(body).map_err(|error| error.to_string())?;
        answer
            .refresh_token
            .clone_into(&mut self.tokens[self.in_flight]);
        Ok(())
    }
}

pub(crate) fn run(context: &mut Context) -> Result<(), String> {
    let redis = RedisServer::builder()
        .try_start()
        .map_err(|error| error.to_string())?;
    let binary = authority::locate(context.settings.authority.as_deref())?;
    let dir = tempfile::tempdir().map_err(|error| error.to_string())?;
    let env = login::authority_env(&redis.url(), &context.settings, &[]);
    let authority = Authority::start(&binary, &env, &dir.path().join("authority.log"))?;
    let bounds = context.bounds();
    let count = context.settings.rotation_users.max(bounds.concurrency);
    let people: Vec<Person> = (0..count).map(Person::new).collect();
    let url = redis.url();
    let tokens = context.generator.block_on(async {
        let store = RedisStore::new(RedisConfig::new(&url)).map_err(|error| error.to_string())?;
        let accounts = Accounts::new(store.clone());
        // A real argon2id hash (the default parameters), made once: rotation
        // never checks it.
        let password_hash = login::hash_password()?;
        for person in &people {
            let now = Timestamp::now();
            let user = User {
                subject: person.subject.clone(),
                username: person.username.clone(),
                name: Some(person.name.clone()),
                email: Some(person.email.clone()),
                scopes: Scopes::parse("read write").map_err(|error| error.to_string())?,
                password_hash: password_hash.clone(),
                disabled: false,
                created_at: now,
                updated_at: now,
                identity: None,
            };
            accounts
                .create_user(&user)
                .await
                .map_err(|error| error.to_string())?;
        }
        let minted = fixtures::issue(&store, &people, 1, 32, |grant| {
            grant.holder.client_id = None;
        })
        .await?;
        Ok::<_, String>(
            minted
                .iter()
                .filter_map(|m| {
                    m.refresh
                        .as_ref()
                        .map(|r| r.token.expose_secret().to_owned())
                })
                .collect::<Vec<_>>(),
        )
    })?;
    let homes: Arc<Vec<Arc<Mutex<Vec<String>>>>> = Arc::new(
        (0..bounds.concurrency)
            .map(|worker| {
                let mine = tokens
                    .iter()
                    .skip(worker)
                    .step_by(bounds.concurrency)
                    .cloned()
                    .collect();
                Arc::new(Mutex::new(mine))
            })
            .collect(),
    );
    // The same number of connections, each SETting a record-sized value
    // with a TTL, back to back.
    let value: Arc<[u8]> = Arc::from(vec![b'x'; 130]);
    let rounds = context.settings.rounds.max(1);
    let (mut rotation_runs, mut set_runs) = (Vec::new(), Vec::new());
    let mut cpu = std::time::Duration::ZERO;
    let mut redis_used = 0.0;
    // Redis's command counts of the rotation runs only (the SET runs in
    // between use the same server).
    let mut commands: Vec<(String, u64, u64)> = Vec::new();
    for round in 0..rounds {
        let cpu_before = process_cpu(authority.pid());
        let redis_before = redis_cpu(&context.generator, &url);
        let commands_before = redis_commandstats(&context.generator, &url);
        let homes = Arc::clone(&homes);
        let rotations = context.generator.http(
            authority.addr(),
            bounds,
            Arc::new(move |worker| Box::new(Chains::resume(&homes[worker]))),
        );
        cpu += process_cpu(authority.pid()).saturating_sub(cpu_before);
        redis_used += redis_cpu(&context.generator, &url) - redis_before;
        add_commands(
            &mut commands,
            &commands_before,
            &redis_commandstats(&context.generator, &url),
        );
        let value = Arc::clone(&value);
        let sets =
            context
                .generator
                .block_on(load::redis_commands(&url, bounds, move |worker, _| {
                    let mut cmd = redis::cmd("SET");
                    cmd.arg(format!("bench:set:{worker}"))
                        .arg(&*value)
                        .arg("PX")
                        .arg(900_000);
                    cmd
                }));
        context.progress(&format!(
            "round {}/{rounds}: rotation {} /s, SET {} /s",
            round + 1,
            thousands(rotations.rate()),
            thousands(sets.rate()),
        ));
        rotation_runs.push(rotations);
        set_runs.push(sets);
    }
    drop(authority);
    let round_ratios = rotation_runs
        .iter()
        .zip(&set_runs)
        .map(|(rotations, sets)| format!("{:.2}", rotations.rate() / sets.rate()))
        .collect::<Vec<_>>()
        .join(", ");
    let rotations_in_all_rounds = rotation_runs
        .iter()
        .map(|run| load::u64_to_f64(run.ok + run.errors))
        .sum::<f64>();
    let rotations = median_run(rotation_runs, load::Measured::rate);
    let sets = median_run(set_runs, load::Measured::rate);

    let mut ours = Figures::of(
        "refresh_token rotation (authority)",
        &rotations,
        bounds.concurrency,
    );
    // Every round's rotations (warm-ups included: the CPU and command
    // counts cover them), for the per-rotation costs.
    let total = rotations_in_all_rounds * (bounds.warmup + bounds.duration).as_secs_f64()
        / bounds.duration.as_secs_f64();
    let commands = commands_per_request(&commands, total);
    if total > 0.0 {
        ours.server_cpu_us = Some(cpu.as_secs_f64() * 1e6 / total);
        ours.redis_cpu_us = Some(redis_used * 1e6 / total);
    }
    let raw = Figures::of(
        "raw Redis SET (one connection per worker)",
        &sets,
        bounds.concurrency,
    );
    context.report.rows.push(
        Row::new(
            "6",
            "Issue without hashing: `refresh_token` rotations/s vs raw Redis `SET`/s, same concurrency",
        )
        .figures(ours.summary("rotation"), raw.summary("SET"))
        .ratio(times(ours.rate / raw.rate)),
    );
    context.report.notes.push(format!(
        "Row 6: {count} users, one session each, rotated in turn by {} connections: {:.1} rotations per user \
         in the run. A rotation rewrites the session's one key (the previous access token retired with it) \
         with an O(1) script; nothing accumulates per user. {rounds} interleaved rounds, the median of each \
         reported; the ratios round by round: {round_ratios}. Redis spent {} of CPU per rotation, the authority {}. \
         Redis commands per rotation (calls, wall time inside Redis; scripts include their commands): {commands}.",
        bounds.concurrency,
        total / load::u64_to_f64(u64::try_from(count).unwrap_or(1)),
        crate::report::micros(ours.redis_cpu_us.unwrap_or(0.0)),
        crate::report::micros(ours.server_cpu_us.unwrap_or(0.0)),
    ));
    context.progress(&format!(
        "rotation {} /s, SET {} /s",
        thousands(ours.rate),
        thousands(raw.rate)
    ));
    context.report.figures.push(ours);
    context.report.figures.push(raw);
    Ok(())
}

/// Adds what Redis ran between two `INFO commandstats` snapshots to `sum`
/// (command, calls, microseconds).
fn add_commands(
    sum: &mut Vec<(String, u64, u64)>,
    before: &[(String, u64, u64)],
    after: &[(String, u64, u64)],
) {
    for (name, calls, usec) in after {
        let (calls_before, usec_before) = before
            .iter()
            .find(|(other, _, _)| other == name)
            .map_or((0, 0), |(_, calls, usec)| (*calls, *usec));
        let (calls, usec) = (
            calls.saturating_sub(calls_before),
            usec.saturating_sub(usec_before),
        );
        match sum.iter_mut().find(|(other, _, _)| other == name) {
            Some(entry) => {
                entry.1 += calls;
                entry.2 += usec;
            }
            None => sum.push((name.clone(), calls, usec)),
        }
    }
}

/// What Redis ran per request, from the command counts of `ran`
/// (command, calls, microseconds), costliest first: `evalsha ×2.0 41 µs,
/// get ×1.0 1 µs, …`.
fn commands_per_request(ran: &[(String, u64, u64)], requests: f64) -> String {
    let requests = requests.max(1.0);
    let mut rows: Vec<(&str, f64, f64)> = ran
        .iter()
        .map(|(name, calls, usec)| {
            (
                name.as_str(),
                load::u64_to_f64(*calls) / requests,
                load::u64_to_f64(*usec) / requests,
            )
        })
        .filter(|(_, calls, _)| *calls >= 0.05)
        .collect();
    rows.sort_by(|a, b| b.2.total_cmp(&a.2));
    rows.iter()
        .map(|(name, calls, usec)| format!("`{name}` ×{calls:.1} {usec:.1} µs"))
        .collect::<Vec<_>>()
        .join(", ")
}
