//! Fan-out: a call whose `nodes` metadata names other nodes is forwarded to each of
//! them and the replies are merged, so one client connection manages many nodes.
//!
//! The layer sits behind the auth layer, so the caller has been authorised here too.
//! It forwards the encoded request untouched (see `api::wire`) with this node's
//! `os:impersonator` certificate and the caller's role in metadata; each target
//! authorises the *original* role again, so forwarding never raises it. A node that
//! cannot be reached, or refuses, contributes an item carrying its error, and the
//! others still answer. Only control-plane nodes forward: they alone hold a
//! certificate that may impersonate.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use api::transport::{NodeAddress, connect};
use api::wire::{RawCodec, failed_reply, failed_stream_message};
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{StreamExt, stream};
use http::uri::PathAndQuery;
use rustls::ClientConfig;
use tonic::body::Body;
use tonic::codegen::tokio_stream::Stream;
use tonic::{Request, Response, Status};
use tower::{Layer, Service};

use super::access;
use super::auth::Caller;

/// Time to connect to a target node; a node that is down answers with an error item.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// How this node forwards calls: present on control-plane nodes only.
#[derive(Clone)]
pub struct Forwarder {
    /// TLS to the other nodes, presenting this node's os:impersonator certificate.
    pub tls: Arc<ClientConfig>,
    /// Port used for nodes named without one.
    pub default_port: u16,
}

/// The tower layer that wraps the API router with [`Fanout`].
#[derive(Clone)]
pub struct FanoutLayer {
    forwarder: Option<Forwarder>,
}

impl FanoutLayer {
    /// A layer that forwards with `forwarder`, or refuses fan-out (workers) when none.
    pub fn new(forwarder: Option<Forwarder>) -> Self {
        Self { forwarder }
    }
}

impl<S> Layer<S> for FanoutLayer {
    type Service = Fanout<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Fanout {
            inner,
            forwarder: self.forwarder.clone(),
        }
    }
}

/// Forwards calls that name other nodes; passes the rest to the local handlers.
#[derive(Clone)]
pub struct Fanout<S> {
    inner: S,
    forwarder: Option<Forwarder>,
}

impl<S> Service<http::Request<Body>> for Fanout<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let Some(nodes) = request.headers().get(api::NODES_METADATA) else {
            return Box::pin(self.inner.call(request));
        };
        let plan = self.plan(nodes, &request);
        Box::pin(async move {
            let plan = match plan {
                Ok(plan) => plan,
                Err(status) => return Ok(status.into_http()),
            };
            let mut grpc = tonic::server::Grpc::new(RawCodec);
            Ok(if plan.server_streaming {
                grpc.server_streaming(plan, request).await
            } else {
                grpc.unary(plan, request).await
            })
        })
    }
}

impl<S> Fanout<S> {
    fn plan(
        &self,
        nodes: &http::HeaderValue,
        request: &http::Request<Body>,
    ) -> Result<Plan, Status> {
        let forwarder = self.forwarder.clone().ok_or_else(|| {
            Status::failed_precondition(
                "this node is a worker: calls for other nodes (--nodes) go through a control-plane endpoint",
            )
        })?;
        let caller = request
            .extensions()
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| Status::internal("fan-out reached without an authorised caller"))?;
        let path = request.uri().path();
        // The auth layer already refused paths that are not in the table.
        let access = access::lookup(path).ok_or_else(|| Status::unimplemented(path.to_owned()))?;
        if access.client_streaming {
            return Err(Status::failed_precondition(format!(
                "{} uploads to one node: call that node's endpoint without --nodes",
                access::method_name(path)
            )));
        }
        let nodes = nodes
            .to_str()
            .map_err(|_| Status::invalid_argument("nodes metadata is not text"))?
            .split(',')
            .map(|node| NodeAddress::parse(node, forwarder.default_port))
            .collect::<Result<Vec<_>, _>>()
            .map_err(Status::invalid_argument)?;
        Ok(Plan {
            forwarder,
            role: caller.role,
            nodes,
            path: PathAndQuery::from_maybe_shared(Bytes::copy_from_slice(path.as_bytes()))
                .map_err(|e| Status::invalid_argument(e.to_string()))?,
            server_streaming: access.server_streaming,
        })
    }
}

/// One forwarded call: to whom, as whom, and which method.
#[derive(Clone)]
struct Plan {
    forwarder: Forwarder,
    role: pki::Role,
    nodes: Vec<NodeAddress>,
    path: PathAndQuery,
    server_streaming: bool,
}

impl Plan {
    async fn client(
        &self,
        node: &NodeAddress,
    ) -> Result<tonic::client::Grpc<tonic::transport::Channel>, Status> {
        let channel = connect(node, self.forwarder.tls.clone(), CONNECT_TIMEOUT)
            .await
            .map_err(|e| Status::unavailable(api::transport::explain(&e)))?;
        let mut grpc = tonic::client::Grpc::new(channel);
        grpc.ready()
            .await
            .map_err(|e| Status::unavailable(api::transport::explain(&e)))?;
        Ok(grpc)
    }

    fn request(&self, body: Bytes) -> Request<Bytes> {
        let mut request = Request::new(body);
        request.metadata_mut().insert(
            api::FORWARDED_ROLE_METADATA,
            // Role names are fixed ASCII strings, always valid metadata values.
            tonic::metadata::MetadataValue::from_static(self.role.as_str()),
        );
        request
    }

    async fn unary_to(&self, node: &NodeAddress, body: Bytes) -> Bytes {
        let reply = async {
            let mut grpc = self.client(node).await?;
            grpc.unary(self.request(body), self.path.clone(), RawCodec)
                .await
        };
        match reply.await {
            Ok(reply) => reply.into_inner(),
            Err(status) => failed_reply(&node.host, status.message()),
        }
    }

    async fn stream_from(
        &self,
        node: NodeAddress,
        body: Bytes,
    ) -> impl Stream<Item = Result<Bytes, Status>> + Send + 'static {
        let opened = async {
            let mut grpc = self.client(&node).await?;
            grpc.server_streaming(self.request(body), self.path.clone(), RawCodec)
                .await
        };
        match opened.await {
            Ok(reply) => {
                let host = node.host.clone();
                reply
                    .into_inner()
                    .map(move |item| {
                        Ok(item.unwrap_or_else(|status| {
                            failed_stream_message(&host, status.message())
                        }))
                    })
                    .boxed()
            }
            Err(status) => stream::once(std::future::ready(Ok(failed_stream_message(
                &node.host,
                status.message(),
            ))))
            .boxed(),
        }
    }
}

impl tonic::server::UnaryService<Bytes> for Plan {
    type Response = Bytes;
    type Future = BoxFuture<'static, Result<Response<Bytes>, Status>>;

    fn call(&mut self, request: Request<Bytes>) -> Self::Future {
        let plan = self.clone();
        Box::pin(async move {
            let body = request.into_inner();
            let replies = futures::future::join_all(
                plan.nodes
                    .iter()
                    .map(|node| plan.unary_to(node, body.clone())),
            )
            .await;
            // Concatenated replies are one merged reply (see api::wire).
            Ok(Response::new(replies.concat().into()))
        })
    }
}

impl tonic::server::ServerStreamingService<Bytes> for Plan {
    type Response = Bytes;
    type ResponseStream = stream::BoxStream<'static, Result<Bytes, Status>>;
    type Future = BoxFuture<'static, Result<Response<Self::ResponseStream>, Status>>;

    fn call(&mut self, request: Request<Bytes>) -> Self::Future {
        let plan = self.clone();
        Box::pin(async move {
            let body = request.into_inner();
            let streams = futures::future::join_all(
                plan.nodes
                    .iter()
                    .map(|node| plan.stream_from(node.clone(), body.clone())),
            )
            .await;
            Ok(Response::new(stream::select_all(streams).boxed()))
        })
    }
}
