//! A tonic server behind `TokenAuthLayer` (and a scope guard), called by a
//! tonic client over real HTTP/2 on loopback: refusals arrive as gRPC
//! statuses (`UNAUTHENTICATED`, `PERMISSION_DENIED`, `UNAVAILABLE`), not as
//! HTTP codes, and the handler sees the principal.
//!
//! The service is hand-written on tonic's `Grpc` with a pass-through bytes
//! codec: no protobuf code generation needed.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::net::SocketAddr;
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Buf as _, BufMut as _, Bytes};
use http::uri::PathAndQuery;
use token_client::{Principal, RequireScopeLayer, TokenAuthLayer};
use token_repository::{
    Error, Grant, Holder, MemoryStore, Minted, Scopes, Token, TokenReader, TokenRecord,
    TokenWriter as _,
};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Endpoint, Server};
use tonic::{Code, Status};

/// Messages are raw bytes.
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = Self;
    type Decoder = Self;

    fn encoder(&mut self) -> Self {
        Self
    }

    fn decoder(&mut self) -> Self {
        Self
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// `/test.Admin/Whoami`: answers the principal's username.
#[derive(Debug, Clone, Copy)]
struct Whoami;

impl tonic::server::UnaryService<Bytes> for Whoami {
    type Response = Bytes;
    type Future = Ready<Result<tonic::Response<Bytes>, Status>>;

    fn call(&mut self, request: tonic::Request<Bytes>) -> Self::Future {
        ready(
            request
                .extensions()
                .get::<Principal>()
                .map(|principal| {
                    tonic::Response::new(Bytes::from(principal.holder.username.clone()))
                })
                .ok_or_else(|| Status::internal("no principal")),
        )
    }
}

/// Serves `Whoami` behind `auth` and a guard requiring scope `admin`.
async fn serve(auth: TokenAuthLayer) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    let service = tower::service_fn(|request: http::Request<tonic::body::Body>| async move {
        Ok::<_, Infallible>(
            tonic::server::Grpc::new(RawCodec)
                .unary(Whoami, request)
                .await,
        )
    });
    let server = Server::builder()
        .layer(auth)
        .layer(RequireScopeLayer::any_of(["admin"]))
        .serve_with_incoming(service, TcpIncoming::from(listener));
    tokio::spawn(server);
    addr
}

/// Calls `Whoami` with an optional bearer token.
async fn whoami(addr: SocketAddr, token: Option<&str>) -> Result<String, Status> {
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let mut client = tonic::client::Grpc::new(channel);
    client.ready().await.expect("ready");
    let mut request = tonic::Request::new(Bytes::new());
    if let Some(token) = token {
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {token}").parse().expect("metadata"),
        );
    }
    let path = PathAndQuery::from_static("/test.Admin/Whoami");
    let response = client.unary(request, path, RawCodec).await?;
    Ok(String::from_utf8(response.into_inner().to_vec()).expect("utf-8"))
}

async fn issue(store: &MemoryStore, username: &str, scopes: &str) -> Minted {
    let minted = Grant {
        holder: Holder {
            subject: format!("user-{username}"),
            username: username.to_owned(),
            name: None,
            email: None,
            scopes: Scopes::parse(scopes).expect("scopes"),
            client_id: None,
        },
        access_ttl: Duration::from_secs(600),
        refresh_ttl: None,
        audience: token_repository::Audience::unrestricted(),
    }
    .mint()
    .expect("mint");
    store.issue(&minted, None).await.expect("issue");
    minted
}

/// A valid token with the scope reaches the handler; a missing or invalid
/// token is `UNAUTHENTICATED` (with the challenge in the metadata); a token
/// without the scope is `PERMISSION_DENIED`.
#[tokio::test]
async fn refusals_are_grpc_statuses() {
    let store = MemoryStore::new();
    let admin = issue(&store, "root", "admin").await;
    let reader = issue(&store, "alice", "read").await;
    let addr = serve(TokenAuthLayer::new(store.clone())).await;

    let answer = whoami(addr, Some(admin.access.token.expose_secret())).await;
    assert_eq!(answer.expect("authenticated"), "root");

    let missing = whoami(addr, None).await.expect_err("refused");
    // tonic also maps a bare HTTP 401 to UNAUTHENTICATED; the message shows
    // the status came from the middleware's grpc-status, not from HTTP.
    assert_eq!(missing.code(), Code::Unauthenticated, "{missing:?}");
    assert_eq!(missing.message(), "missing bearer token");
    assert!(missing.metadata().get("www-authenticate").is_some());
    let garbage = whoami(addr, Some("garbage")).await.expect_err("refused");
    assert_eq!(garbage.code(), Code::Unauthenticated, "{garbage:?}");
    assert_eq!(garbage.message(), "invalid bearer token");
    store.revoke(&admin.access.token).await.expect("revoke");
    let revoked = whoami(addr, Some(admin.access.token.expose_secret()))
        .await
        .expect_err("refused");
    assert_eq!(revoked.code(), Code::Unauthenticated, "{revoked:?}");

    let denied = whoami(addr, Some(reader.access.token.expose_secret()))
        .await
        .expect_err("refused");
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    assert_eq!(denied.message(), "insufficient scope");
}

/// A failing repository is `UNAVAILABLE`, never a pass.
#[tokio::test]
async fn repository_failure_is_unavailable() {
    #[derive(Debug)]
    struct Down;

    #[async_trait]
    impl TokenReader for Down {
        async fn lookup(&self, _: &Token) -> token_repository::Result<Option<TokenRecord>> {
            Err(Error::Timeout(Duration::from_millis(1)))
        }

        async fn ping(&self) -> token_repository::Result<()> {
            Err(Error::Timeout(Duration::from_millis(1)))
        }
    }

    let token = issue(&MemoryStore::new(), "root", "admin").await;
    let addr = serve(TokenAuthLayer::new(Down)).await;
    let unavailable = whoami(addr, Some(token.access.token.expose_secret()))
        .await
        .expect_err("refused");
    assert_eq!(unavailable.code(), Code::Unavailable, "{unavailable:?}");
    assert_eq!(unavailable.message(), "token repository unavailable");
}
