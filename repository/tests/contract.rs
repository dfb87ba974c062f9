//! The store contract: one suite, run against the memory store and against a
//! real, private redis-server started by the test harness.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use token_repository::{
    Error, Grant, Holder, Minted, RefreshRefusal, RefreshState, Rotation, Scopes, Token,
    TokenWriter,
};
use token_test_harness::{RedisServer, wait_until_async};

/// A store under test, and what keeps its backend alive.
struct Fixture {
    store: Arc<dyn TokenWriter>,
    _redis: Option<RedisServer>,
}

fn memory_fixture() -> Fixture {
    Fixture {
        store: Arc::new(token_repository::MemoryStore::new()),
        _redis: None,
    }
}

fn redis_fixture() -> Fixture {
    let redis = RedisServer::start();
    let store = token_repository::RedisStore::new(
        token_repository::RedisConfig::new(redis.url()).timeout(Duration::from_millis(500)),
    )
    .expect("store");
    Fixture {
        store: Arc::new(store),
        _redis: Some(redis),
    }
}

/// Instantiates every test of `suite` for one backend.
macro_rules! contract_tests {
    ($fixture:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let fixture = $fixture();
                super::suite::$name(&fixture.store).await;
            }
        )*
    };
}

macro_rules! all_contract_tests {
    ($fixture:path) => {
        contract_tests!($fixture;
            issue_then_lookup,
            unknown_tokens_are_none,
            access_token_expires_by_ttl,
            revoke_one_access_token,
            revoking_a_refresh_token_revokes_its_family,
            revoke_family_leaves_other_sessions,
            revoke_all_leaves_other_subjects,
            revoke_all_racing_with_issues,
            collision_is_refused_and_overwrites_nothing,
            rotation_retires_the_old_refresh_token,
            reuse_of_a_rotated_refresh_token_revokes_the_family,
            concurrent_rotations_of_one_token_are_reuse,
            reuse_memory_is_bounded,
            generation_guard_refuses_grants_older_than_revoke_all,
            list_shows_live_tokens_only,
            rotation_refuses_a_pair_of_another_family,
            inspecting_an_access_token_is_a_caller_error,
        );
    };
}

mod memory {
    all_contract_tests!(super::memory_fixture);
}

mod redis {
    all_contract_tests!(super::redis_fixture);
}

/// Polls an async condition without a fixed sleep.
async fn eventually<F, Fut>(timeout: Duration, condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let mut condition = condition;
    wait_until_async(timeout, tokio::time::sleep, || {
        let check = condition();
        async move { check.await.then_some(()) }
    })
    .await
    .is_some()
}

mod suite {
    use super::*;

    type Store = Arc<dyn TokenWriter>;

    pub(super) fn grant(subject: &str) -> Grant {
        Grant {
            holder: Holder {
                subject: subject.to_owned(),
                username: format!("{subject}-login"),
                name: Some("Display Name".into()),
                email: Some(format!("{subject}@example.com")),
                scopes: Scopes::parse("read write").expect("scopes"),
                client_id: Some("web".into()),
            },
            access_ttl: Duration::from_secs(300),
            refresh_ttl: Some(Duration::from_secs(3600)),
            audience: token_repository::Audience::unrestricted(),
        }
    }

    async fn issued(store: &Store, subject: &str) -> Minted {
        let minted = grant(subject).mint().expect("mint");
        store.issue(&minted, None).await.expect("issue");
        minted
    }

    async fn live(store: &Store, token: &Token) -> bool {
        store.lookup(token).await.expect("lookup").is_some()
    }

    fn refresh(minted: &Minted) -> &Token {
        &minted.refresh.as_ref().expect("refresh token").token
    }

    /// Issued tokens are found with exactly the record they were issued with.
    pub(super) async fn issue_then_lookup(store: &Store) {
        let minted = issued(store, "alice").await;
        let access = store.lookup(&minted.access.token).await.expect("lookup");
        assert_eq!(access.as_ref(), Some(&minted.access.record));
        let refresh_record = store.lookup(refresh(&minted)).await.expect("lookup");
        assert_eq!(
            refresh_record.as_ref(),
            Some(&minted.refresh.as_ref().expect("r").record)
        );
        let record = access.expect("live");
        assert_eq!(record.id, minted.access.token.id());
        assert_eq!(record.family, refresh_record.expect("live").family);
        // The parsed text finds the same record: the digest is all that matters.
        let reparsed = Token::parse(minted.access.token.expose_secret()).expect("parse");
        assert!(live(store, &reparsed).await);
    }

    /// Well-formed tokens that were never issued are simply unknown.
    pub(super) async fn unknown_tokens_are_none(store: &Store) {
        let _other = issued(store, "alice").await;
        let never_issued = grant("alice").mint().expect("mint");
        assert!(!live(store, &never_issued.access.token).await);
        assert_eq!(
            store
                .inspect_refresh(refresh(&never_issued))
                .await
                .expect("inspect"),
            RefreshState::Refused(RefreshRefusal::Unknown)
        );
        assert_eq!(
            store
                .revoke(&never_issued.access.token)
                .await
                .expect("revoke"),
            0
        );
    }

    /// A token vanishes by itself when its TTL runs out (waiting on the
    /// condition, not on a fixed sleep), and leaves no index entry behind.
    pub(super) async fn access_token_expires_by_ttl(store: &Store) {
        let mut short = grant("alice");
        short.access_ttl = Duration::from_millis(200);
        short.refresh_ttl = None;
        let minted = short.mint().expect("mint");
        store.issue(&minted, None).await.expect("issue");
        assert!(live(store, &minted.access.token).await);
        let token = minted.access.token.clone();
        let gone = eventually(Duration::from_secs(5), || {
            let store = store.clone();
            let token = token.clone();
            async move { !live(&store, &token).await }
        })
        .await;
        assert!(gone, "token outlived its TTL");
        assert!(store.list("alice").await.expect("list").is_empty());
    }

    /// Revoking an access token kills it and nothing else.
    pub(super) async fn revoke_one_access_token(store: &Store) {
        let minted = issued(store, "alice").await;
        assert_eq!(store.revoke(&minted.access.token).await.expect("revoke"), 1);
        assert!(!live(store, &minted.access.token).await);
        assert!(
            live(store, refresh(&minted)).await,
            "refresh token survives"
        );
        assert_eq!(store.revoke(&minted.access.token).await.expect("revoke"), 0);
        assert_eq!(store.list("alice").await.expect("list").len(), 1);
    }

    /// RFC 7009 §2.1: revoking a refresh token revokes the access tokens of
    /// the same grant.
    pub(super) async fn revoking_a_refresh_token_revokes_its_family(store: &Store) {
        let minted = issued(store, "alice").await;
        assert_eq!(store.revoke(refresh(&minted)).await.expect("revoke"), 2);
        assert!(!live(store, &minted.access.token).await);
        assert!(!live(store, refresh(&minted)).await);
    }

    /// Signing out of one session leaves the others.
    pub(super) async fn revoke_family_leaves_other_sessions(store: &Store) {
        let laptop = issued(store, "alice").await;
        let phone = issued(store, "alice").await;
        let revoked = store
            .revoke_family("alice", laptop.family())
            .await
            .expect("revoke family");
        assert_eq!(revoked, 2);
        assert!(!live(store, &laptop.access.token).await);
        assert!(!live(store, refresh(&laptop)).await);
        assert!(live(store, &phone.access.token).await);
        assert!(live(store, refresh(&phone)).await);
    }

    /// Sign out everywhere revokes every token of the subject, only of it.
    pub(super) async fn revoke_all_leaves_other_subjects(store: &Store) {
        let first = issued(store, "alice").await;
        let second = issued(store, "alice").await;
        let bob = issued(store, "bob").await;
        assert_eq!(store.revoke_all("alice").await.expect("revoke all"), 4);
        for token in [
            &first.access.token,
            refresh(&first),
            &second.access.token,
            refresh(&second),
        ] {
            assert!(!live(store, token).await);
        }
        assert!(live(store, &bob.access.token).await);
        assert!(store.list("alice").await.expect("list").is_empty());
        assert_eq!(store.list("bob").await.expect("list").len(), 2);
    }

    /// Issues race with a revoke-all: every token whose issue completed
    /// before the revoke-all started is dead afterwards, and every token
    /// still alive is in the index (a second revoke-all gets it).
    pub(super) async fn revoke_all_racing_with_issues(store: &Store) {
        let started = Arc::new(AtomicBool::new(false));
        let mut issuers = Vec::new();
        for _ in 0..4 {
            let store = store.clone();
            let started = started.clone();
            issuers.push(tokio::spawn(async move {
                let mut before = Vec::new();
                let mut during = Vec::new();
                for _ in 0..60 {
                    let minted = issued(&store, "alice").await;
                    if started.load(Ordering::SeqCst) {
                        during.push(minted);
                    } else {
                        before.push(minted);
                    }
                    tokio::task::yield_now().await;
                }
                (before, during)
            }));
        }
        // Let some issues complete first.
        let store_for_wait = store.clone();
        assert!(
            eventually(Duration::from_secs(10), || {
                let store = store_for_wait.clone();
                async move { store.list("alice").await.expect("list").len() >= 20 }
            })
            .await
        );
        started.store(true, Ordering::SeqCst);
        store.revoke_all("alice").await.expect("revoke all");
        let mut before = Vec::new();
        let mut during = Vec::new();
        for issuer in issuers {
            let (b, d) = issuer.await.expect("issuer");
            before.extend(b);
            during.extend(d);
        }
        assert!(!before.is_empty());
        for minted in &before {
            assert!(
                !live(store, &minted.access.token).await,
                "survived revoke-all"
            );
            assert!(!live(store, refresh(minted)).await, "survived revoke-all");
        }
        let listed: Vec<uuid::Uuid> = store
            .list("alice")
            .await
            .expect("list")
            .into_iter()
            .map(|record| record.id)
            .collect();
        for minted in &during {
            for new in minted.tokens() {
                if live(store, &new.token).await {
                    assert!(
                        listed.contains(&new.token.id()),
                        "live token missing from index"
                    );
                }
            }
        }
        store.revoke_all("alice").await.expect("second revoke all");
        for minted in before.iter().chain(&during) {
            assert!(!live(store, &minted.access.token).await);
        }
    }

    /// Issuing a token that already exists is an error and changes nothing.
    pub(super) async fn collision_is_refused_and_overwrites_nothing(store: &Store) {
        let minted = issued(store, "alice").await;
        let mut again = minted.clone();
        Arc::make_mut(&mut again.access.record.holder).scopes =
            Scopes::parse("admin").expect("scopes");
        let result = store.issue(&again, None).await;
        assert!(matches!(result, Err(Error::Collision)), "{result:?}");
        let record = store.lookup(&minted.access.token).await.expect("lookup");
        assert_eq!(
            record,
            Some(minted.access.record.clone()),
            "record was overwritten"
        );
        assert_eq!(store.list("alice").await.expect("list").len(), 2);
    }

    /// Rotation retires the old refresh token and the session's old access
    /// token, and stores the new pair: a session holds one pair.
    pub(super) async fn rotation_retires_the_old_refresh_token(store: &Store) {
        let first = issued(store, "alice").await;
        let RefreshState::Live(record) = store
            .inspect_refresh(refresh(&first))
            .await
            .expect("inspect")
        else {
            panic!("refresh token should be live");
        };
        assert_eq!(record.family, first.family());
        let next = grant("alice").mint_in_family(record.family).expect("mint");
        let outcome = store.rotate(refresh(&first), &next).await.expect("rotate");
        assert_eq!(outcome, Rotation::Rotated);
        assert!(
            !live(store, refresh(&first)).await,
            "old refresh token retired"
        );
        assert!(live(store, &next.access.token).await);
        assert!(live(store, refresh(&next)).await);
        assert!(
            !live(store, &first.access.token).await,
            "old access token retired"
        );
        let listed = store.list("alice").await.expect("list");
        assert_eq!(listed.len(), 2, "the new pair only");
    }

    /// Presenting a rotated refresh token again revokes the whole family,
    /// including the pair it was exchanged for.
    pub(super) async fn reuse_of_a_rotated_refresh_token_revokes_the_family(store: &Store) {
        let first = issued(store, "alice").await;
        let other_session = issued(store, "alice").await;
        let next = grant("alice").mint_in_family(first.family()).expect("mint");
        assert_eq!(
            store.rotate(refresh(&first), &next).await.expect("rotate"),
            Rotation::Rotated
        );
        let state = store
            .inspect_refresh(refresh(&first))
            .await
            .expect("inspect");
        assert_eq!(
            state,
            RefreshState::Refused(RefreshRefusal::Reused { revoked: 2 })
        );
        for token in [&first.access.token, &next.access.token, refresh(&next)] {
            assert!(!live(store, token).await, "family member survived reuse");
        }
        assert!(live(store, &other_session.access.token).await);
        // Once the family is gone, the old token is just unknown.
        assert_eq!(
            store
                .inspect_refresh(refresh(&first))
                .await
                .expect("inspect"),
            RefreshState::Refused(RefreshRefusal::Unknown)
        );
    }

    /// Two rotations of one refresh token: the second one is reuse, revokes
    /// what the first one issued, and issues nothing.
    pub(super) async fn concurrent_rotations_of_one_token_are_reuse(store: &Store) {
        let first = issued(store, "alice").await;
        let winner = grant("alice").mint_in_family(first.family()).expect("mint");
        let loser = grant("alice").mint_in_family(first.family()).expect("mint");
        assert_eq!(
            store
                .rotate(refresh(&first), &winner)
                .await
                .expect("rotate"),
            Rotation::Rotated
        );
        let outcome = store.rotate(refresh(&first), &loser).await.expect("rotate");
        assert!(
            matches!(outcome, Rotation::Refused(RefreshRefusal::Reused { .. })),
            "{outcome:?}"
        );
        assert!(!live(store, refresh(&winner)).await);
        assert!(
            !live(store, &loser.access.token).await,
            "reuse must issue nothing"
        );
    }

    /// Only the last few rotated tokens are remembered: older ones are
    /// refused as unknown without revoking the family, so memory per
    /// session stays bounded however often it refreshes.
    pub(super) async fn reuse_memory_is_bounded(store: &Store) {
        let mut current = issued(store, "alice").await;
        let mut retired = Vec::new();
        for _ in 0..(token_repository::store::USED_REFRESH_MEMORY + 2) {
            let next = grant("alice")
                .mint_in_family(current.family())
                .expect("mint");
            assert_eq!(
                store
                    .rotate(refresh(&current), &next)
                    .await
                    .expect("rotate"),
                Rotation::Rotated
            );
            retired.push(current);
            current = next;
        }
        let oldest = &retired[0];
        assert_eq!(
            store
                .inspect_refresh(refresh(oldest))
                .await
                .expect("inspect"),
            RefreshState::Refused(RefreshRefusal::Unknown)
        );
        assert!(live(store, refresh(&current)).await, "family intact");
        let newest_retired = retired.last().expect("retired");
        assert!(matches!(
            store
                .inspect_refresh(refresh(newest_retired))
                .await
                .expect("inspect"),
            RefreshState::Refused(RefreshRefusal::Reused { .. })
        ));
        assert!(!live(store, refresh(&current)).await);
    }

    /// A grant that read the generation before a revoke-all cannot issue
    /// after it; a grant that read it after can.
    pub(super) async fn generation_guard_refuses_grants_older_than_revoke_all(store: &Store) {
        let before = store.generation("alice").await.expect("generation");
        assert_eq!(store.generation("alice").await.expect("generation"), before);
        store.revoke_all("alice").await.expect("revoke all");
        let minted = grant("alice").mint().expect("mint");
        let result = store.issue(&minted, Some(before)).await;
        assert!(matches!(result, Err(Error::Superseded)), "{result:?}");
        assert!(!live(store, &minted.access.token).await, "nothing written");
        let after = store.generation("alice").await.expect("generation");
        assert_ne!(after, before);
        store.issue(&minted, Some(after)).await.expect("issue");
        assert!(live(store, &minted.access.token).await);
        // Other subjects are not affected.
        let bob = grant("bob").mint().expect("mint");
        let bob_generation = store.generation("bob").await.expect("generation");
        store
            .issue(&bob, Some(bob_generation))
            .await
            .expect("issue");
    }

    /// The session list has the live tokens of the subject, oldest first,
    /// and no rotated or revoked ones.
    pub(super) async fn list_shows_live_tokens_only(store: &Store) {
        let first = issued(store, "alice").await;
        let second = issued(store, "alice").await;
        let _bob = issued(store, "bob").await;
        store.revoke(&second.access.token).await.expect("revoke");
        let next = grant("alice").mint_in_family(first.family()).expect("mint");
        store.rotate(refresh(&first), &next).await.expect("rotate");
        let ids: Vec<uuid::Uuid> = store
            .list("alice")
            .await
            .expect("list")
            .iter()
            .map(|record| record.id)
            .collect();
        let mut expected = vec![
            refresh(&second).id(),
            next.access.token.id(),
            refresh(&next).id(),
        ];
        expected.sort();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(sorted, expected);
        assert!(!ids.contains(&refresh(&first).id()));
        assert!(!ids.contains(&first.access.token.id()));
    }

    /// A rotation must continue the presented token's family.
    pub(super) async fn rotation_refuses_a_pair_of_another_family(store: &Store) {
        let first = issued(store, "alice").await;
        let stranger = grant("alice").mint().expect("mint");
        let result = store.rotate(refresh(&first), &stranger).await;
        assert!(
            matches!(result, Err(Error::InvalidRequest(_))),
            "{result:?}"
        );
        assert!(live(store, refresh(&first)).await, "nothing changed");
        assert!(!live(store, &stranger.access.token).await);
    }

    /// Access tokens are not refresh tokens, even to the store.
    pub(super) async fn inspecting_an_access_token_is_a_caller_error(store: &Store) {
        let minted = issued(store, "alice").await;
        let result = store.inspect_refresh(&minted.access.token).await;
        assert!(
            matches!(result, Err(Error::InvalidRequest(_))),
            "{result:?}"
        );
        assert!(live(store, &minted.access.token).await);
    }
}
