//! The cache's rules without Redis: epochs, tickets, pushes, the cap.

use token_repository::redis::{Epoch, Invalidation, InvalidationSink as _};
use token_repository::{KeyPrefix, ResourceUri, Scopes, Timestamp};

use super::*;
use crate::accounts::Client;

fn client(id: &str) -> Client {
    Client {
        client_id: id.into(),
        secret_hash: "$hmac-sha256$x".into(),
        previous_secret: None,
        scopes: Scopes::empty(),
        introspect: true,
        view_access_tokens: false,
        view_providers: None,
        allowed_ips: Vec::new(),
        redirect_uris: Vec::new(),
        public: false,
        first_party: false,
        resources: Vec::new(),
        disabled: false,
        created_at: Timestamp::now(),
        updated_at: Timestamp::now(),
    }
}

fn resource(uri: &str) -> HeldResource {
    (ResourceUri::parse(uri).expect("uri"), Scopes::empty())
}

/// Users are plain names here: the rules do not depend on the record.
type Cache = Tracked<Client, String>;

const ROOMY: Capacity = Capacity {
    clients: 100,
    users: 100,
};

/// A cache of `capacity` tracking epoch 1.
fn tracking_with(capacity: Capacity) -> Cache {
    let tracked = Cache::new(&KeyPrefix::default(), capacity);
    tracked.on_event(Invalidation::Connecting(Epoch(1)));
    tracked.on_event(Invalidation::Tracking(Epoch(1)));
    tracked
}

/// A roomy cache tracking epoch 1.
fn tracking() -> Cache {
    tracking_with(ROOMY)
}

fn remember(tracked: &Cache, id: &str) {
    let ticket = tracked.ticket().expect("active");
    tracked.remember_client(ticket, id, &format!("ts:client:{id}"), client(id));
}

/// Nothing is answered or stored before tracking is on.
#[test]
fn inactive_until_tracking() {
    let tracked = Cache::new(&KeyPrefix::default(), ROOMY);
    assert!(tracked.ticket().is_none());
    tracked.on_event(Invalidation::Connecting(Epoch(1)));
    assert!(tracked.ticket().is_none());
    tracked.on_event(Invalidation::Tracking(Epoch(1)));
    remember(&tracked, "a");
    assert!(tracked.client("a").is_some());
}

/// A lost connection clears and deactivates; a late `Lost` or `Tracking`
/// of an older attempt changes nothing; a new attempt starts empty.
#[test]
fn epochs() {
    let tracked = tracking();
    remember(&tracked, "a");
    tracked.on_event(Invalidation::Lost(Epoch(1)));
    assert!(!tracked.is_active());
    assert!(tracked.client("a").is_none());
    assert_eq!(tracked.clients_held(), 0);

    tracked.on_event(Invalidation::Connecting(Epoch(2)));
    tracked.on_event(Invalidation::Tracking(Epoch(1)));
    assert!(!tracked.is_active(), "a late Tracking of an old attempt");
    tracked.on_event(Invalidation::Tracking(Epoch(2)));
    remember(&tracked, "a");
    tracked.on_event(Invalidation::Lost(Epoch(1)));
    assert!(
        tracked.client("a").is_some(),
        "a late Lost of an old attempt"
    );

    // Lost before Tracking: the attempt never becomes active.
    tracked.on_event(Invalidation::Connecting(Epoch(3)));
    assert_eq!(tracked.clients_held(), 0, "a new attempt starts empty");
    tracked.on_event(Invalidation::Lost(Epoch(3)));
    tracked.on_event(Invalidation::Tracking(Epoch(3)));
    assert!(!tracked.is_active());
}

/// Pushes drop the client under the pushed key, or every resource;
/// `Flushed` drops everything; token keys are ignored.
#[test]
fn pushes() {
    let tracked = tracking();
    remember(&tracked, "a");
    remember(&tracked, "b");
    let ticket = tracked.ticket().expect("active");
    tracked.remember_resources(ticket, [resource("https://api.example/")]);
    let tag = resource("https://api.example/").0.tag();
    assert!(tracked.resources(&[tag]).is_some());

    tracked.on_event(Invalidation::Names(&[b"ts:client:a".to_vec()]));
    assert!(tracked.client("a").is_none());
    assert!(tracked.client("b").is_some());
    tracked.on_event(Invalidation::Keys(&[]));
    tracked.on_event(Invalidation::Names(&[b"ts:resources".to_vec()]));
    assert!(tracked.resources(&[tag]).is_none());
    assert!(tracked.client("b").is_some());
    tracked.on_event(Invalidation::Flushed);
    assert!(tracked.client("b").is_none());
    assert!(tracked.is_active(), "a flush clears, tracking goes on");
}

/// An insert whose ticket predates an invalidation (a push, an own write,
/// a new attempt) is dropped: a record read before a change is never
/// stored after it.
#[test]
fn stale_inserts_are_dropped() {
    let tracked = tracking();
    let before = tracked.ticket().expect("active");
    tracked.on_event(Invalidation::Names(&[b"ts:client:other".to_vec()]));
    tracked.remember_client(before, "a", "ts:client:a", client("a"));
    assert!(tracked.client("a").is_none());

    let before = tracked.ticket().expect("active");
    tracked.forget_client("x");
    tracked.remember_client(before, "a", "ts:client:a", client("a"));
    assert!(tracked.client("a").is_none());

    let before = tracked.ticket().expect("active");
    tracked.forget_resources();
    tracked.remember_resources(before, [resource("https://api.example/")]);
    assert!(
        tracked
            .resources(&[resource("https://api.example/").0.tag()])
            .is_none()
    );

    let before = tracked.ticket().expect("active");
    tracked.on_event(Invalidation::Connecting(Epoch(2)));
    tracked.on_event(Invalidation::Tracking(Epoch(2)));
    tracked.remember_client(before, "a", "ts:client:a", client("a"));
    assert!(tracked.client("a").is_none());

    remember(&tracked, "a");
    tracked.forget_client("a");
    assert!(tracked.client("a").is_none(), "own writes drop at once");
}

/// The number of clients held never passes the cap.
#[test]
fn capped() {
    let tracked = tracking_with(Capacity {
        clients: 5,
        users: 5,
    });
    for n in 0..50 {
        remember(&tracked, &format!("c{n}"));
        remember_user(&tracked, &format!("u{n}"));
        assert!(tracked.clients_held() <= 5);
        assert!(tracked.users_held() <= 5);
    }
    assert!(tracked.client("c49").is_some());
    assert!(tracked.user("u49").is_some());
}

fn remember_user(tracked: &Cache, name: &str) {
    let ticket = tracked.ticket().expect("active");
    tracked.remember_user(
        ticket,
        name,
        &format!("ts:user:H{name}"),
        Arc::new(name.to_owned()),
    );
}

/// Users follow the same rules: held while tracking, dropped by a push of
/// their key name, by an own write, by a flush or a lost connection, and
/// never stored from a read that predates an invalidation.
#[test]
fn users() {
    let tracked = tracking();
    remember_user(&tracked, "alice");
    remember_user(&tracked, "bob");
    assert_eq!(
        tracked.user("alice").as_deref().map(String::as_str),
        Some("alice")
    );

    tracked.on_event(Invalidation::Names(&[b"ts:user:Halice".to_vec()]));
    assert!(tracked.user("alice").is_none(), "pushed");
    assert!(tracked.user("bob").is_some());
    tracked.on_event(Invalidation::Names(&[b"ts:client:bob".to_vec()]));
    assert!(
        tracked.user("bob").is_some(),
        "a client's key is not a user's"
    );

    tracked.forget_user("bob");
    assert!(tracked.user("bob").is_none(), "own writes drop at once");

    let before = tracked.ticket().expect("active");
    tracked.on_event(Invalidation::Names(&[b"ts:user:Hcarol".to_vec()]));
    tracked.remember_user(before, "alice", "ts:user:Halice", Arc::new("alice".into()));
    assert!(tracked.user("alice").is_none(), "read before a change");

    remember_user(&tracked, "alice");
    tracked.on_event(Invalidation::Flushed);
    assert!(tracked.user("alice").is_none(), "flushed");
    remember_user(&tracked, "alice");
    tracked.on_event(Invalidation::Lost(Epoch(1)));
    assert!(tracked.user("alice").is_none(), "lost");
    assert_eq!(tracked.users_held(), 0);
}

/// `users: 0` holds no user.
#[test]
fn users_off() {
    let tracked = tracking_with(Capacity {
        clients: 5,
        users: 0,
    });
    remember_user(&tracked, "alice");
    assert!(tracked.user("alice").is_none());
    remember(&tracked, "a");
    assert!(tracked.client("a").is_some(), "clients are held still");
}
