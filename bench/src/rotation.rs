//! Row 6: issuing without password hashing — `refresh_token` rotation at
//! the authority — against raw Redis `SET` at the same concurrency.
//!
//! Every worker logs in once (a password grant) and then rotates its own
//! refresh token back to back: each answer carries the refresh token of the
//! next request.

use std::sync::Arc;

use bytes::Bytes;
use http::StatusCode;
use token_test_harness::RedisServer;

use crate::authority::{self, Authority};
use crate::load::{self, Scenario};
use crate::login::{self, PASSWORD};
use crate::report::{Figures, Row, thousands, times};
use crate::server::process_cpu;
use crate::{Context, redis_cpu};

/// One worker's refresh-token chain.
struct Chain {
    refresh_token: String,
}

impl Scenario for Chain {
    fn request(&mut self) -> http::Request<http_body_util::Full<Bytes>> {
        login::form(
            "/oauth/token",
            format!(
                "grant_type=refresh_token&refresh_token={}",
                self.refresh_token
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
        let value: serde_json::Value =
            serde_json::from_slice(body).map_err(|error| error.to_string())?;
        let next = value["refresh_token"]
            .as_str()
            .ok_or("no refresh token in the answer")?;
        next.clone_into(&mut self.refresh_token);
        Ok(())
    }
}

pub(crate) fn run(context: &mut Context) -> Result<(), String> {
    let redis = RedisServer::builder()
        .try_start()
        .map_err(|error| error.to_string())?;
    let binary = authority::locate(context.settings.authority.as_deref())?;
    let dir = tempfile::tempdir().map_err(|error| error.to_string())?;
    let env = login::authority_env(&redis.url(), context.settings.smoke, &[]);
    let authority = Authority::start(&binary, &env, &dir.path().join("authority.log"))?;
    let bounds = context.bounds();
    // One user per chain, as many people refreshing their own sessions.
    let users = login::add_users(&authority, bounds.concurrency)?;
    let addr = authority.addr();
    // One login per worker: the start of its chain.
    let tokens = context.generator.block_on(async {
        let mut sender = load::connect(addr).await?;
        let mut tokens = Vec::with_capacity(bounds.concurrency);
        for worker in 0..bounds.concurrency {
            let username = &users[worker % users.len()];
            let body = format!(
                "grant_type=password&username={username}&password={}",
                PASSWORD.replace(' ', "+")
            );
            let (status, body) =
                load::send(&mut sender, login::form("/oauth/token", body, None)).await?;
            if status != StatusCode::OK {
                return Err(format!(
                    "login failed: {status} {}",
                    String::from_utf8_lossy(&body)
                ));
            }
            let value: serde_json::Value =
                serde_json::from_slice(&body).map_err(|error| error.to_string())?;
            tokens.push(
                value["refresh_token"]
                    .as_str()
                    .ok_or("no refresh token")?
                    .to_owned(),
            );
        }
        Ok::<_, String>(tokens)
    })?;
    let tokens = Arc::new(tokens);
    let url = redis.url();
    let cpu_before = process_cpu(authority.pid());
    let redis_before = redis_cpu(&context.generator, &url);
    let rotations = context.generator.http(
        addr,
        bounds,
        Arc::new(move |worker| {
            Box::new(Chain {
                refresh_token: tokens[worker].clone(),
            })
        }),
    );
    let cpu = process_cpu(authority.pid()).saturating_sub(cpu_before);
    let redis_used = redis_cpu(&context.generator, &url) - redis_before;
    drop(authority);

    // The same number of connections, each SETting a record-sized value
    // with a TTL, back to back.
    let value = vec![b'x'; 130];
    let sets = context
        .generator
        .block_on(load::redis_commands(&url, bounds, move |worker, _| {
            let mut cmd = redis::cmd("SET");
            cmd.arg(format!("bench:set:{worker}"))
                .arg(value.as_slice())
                .arg("PX")
                .arg(900_000);
            cmd
        }));

    let mut ours = Figures::of(
        "refresh_token rotation (authority)",
        &rotations,
        bounds.concurrency,
    );
    let total = load::u64_to_f64(rotations.ok + rotations.errors)
        * (bounds.warmup + bounds.duration).as_secs_f64()
        / bounds.duration.as_secs_f64();
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
        "Row 6: each of the {} chains rotates back to back for its own user, so every access token \
         issued in the run (live 15 min) stays in that user's index: {:.0} entries per user by the end, \
         where a real user has about two per session. The rotation script scans the index, so this \
         row is pessimistic; Redis spent {} of CPU per rotation.",
        bounds.concurrency,
        load::u64_to_f64(rotations.ok + rotations.errors) / load::u64_to_f64(u64::try_from(bounds.concurrency).unwrap_or(1))
            * (bounds.warmup + bounds.duration).as_secs_f64() / bounds.duration.as_secs_f64(),
        crate::report::micros(ours.redis_cpu_us.unwrap_or(0.0))
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
