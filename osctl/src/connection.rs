//! Connecting to the machine API as a context says, and turning failures into one
//! clear line: which endpoint, and what to do about it.

use std::sync::Arc;
use std::time::Duration;

use api::machine::machine_service_client::MachineServiceClient;
use api::transport::{NodeAddress, explain};
use tonic::transport::Channel;

use crate::client_config::Context;

/// Time to connect (TCP and TLS) to an endpoint.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Errors reaching a node, phrased for the user.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    /// The context's credentials are unusable.
    #[error("client credentials: {0}")]
    Credentials(#[from] pki::Error),
    /// An endpoint or node address is malformed.
    #[error("{0}")]
    Address(String),
    /// No endpoint could be reached.
    #[error("{0}")]
    Unreachable(String),
}

/// Where a command goes: the endpoints to connect to and the nodes it is for.
#[derive(Debug, Clone)]
pub struct Target {
    /// Endpoints, tried in order.
    pub endpoints: Vec<NodeAddress>,
    /// Nodes named for fan-out; empty for the endpoint itself.
    pub nodes: Vec<NodeAddress>,
}

impl Target {
    /// The endpoints and nodes of `context`, overridden by flags when given.
    pub fn new(
        context: &Context,
        endpoints: &[String],
        nodes: &[String],
    ) -> Result<Self, ConnectionError> {
        let parse = Self::parse_addresses;
        let endpoints = parse(if endpoints.is_empty() {
            &context.endpoints
        } else {
            endpoints
        })?;
        let nodes = parse(if nodes.is_empty() {
            &context.nodes
        } else {
            nodes
        })?;
        if endpoints.is_empty() {
            return Err(ConnectionError::Address(
                "no endpoints: set them with `osctl config endpoint` or -e".into(),
            ));
        }
        Ok(Self { endpoints, nodes })
    }

    /// Parses `host[:port]` addresses, with the API's default port.
    pub fn parse_addresses(list: &[String]) -> Result<Vec<NodeAddress>, ConnectionError> {
        list.iter()
            .map(|a| NodeAddress::parse(a, api::DEFAULT_API_PORT).map_err(ConnectionError::Address))
            .collect()
    }

    /// The `nodes` metadata to send: none when the call is for the endpoint itself.
    pub fn nodes_metadata(&self, endpoint: &NodeAddress) -> Option<String> {
        match self.nodes.as_slice() {
            [] => None,
            [only] if only == endpoint => None,
            nodes => Some(
                nodes
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
            ),
        }
    }
}

/// A connected client and what it needs to address calls.
pub struct Connection {
    /// The machine API client.
    pub client: MachineServiceClient<Channel>,
    /// The endpoint connected to.
    pub endpoint: NodeAddress,
    nodes: Option<String>,
}

impl Connection {
    /// Connects with `context`'s credentials to the first endpoint of `target` that
    /// answers.
    pub async fn open(context: &Context, target: &Target) -> Result<Self, ConnectionError> {
        let tls = pki::tls::client_config(&context.ca, Some((&context.crt, &context.key)))?;
        Self::open_with(tls, target).await
    }

    /// Connects to a node in maintenance mode: no client certificate, and the node's
    /// self-signed certificate is not verified.
    pub async fn open_insecure(target: &Target) -> Result<Self, ConnectionError> {
        Self::open_with(pki::tls::insecure_client_config()?, target).await
    }

    async fn open_with(
        tls: Arc<rustls::ClientConfig>,
        target: &Target,
    ) -> Result<Self, ConnectionError> {
        let mut failures = Vec::new();
        for endpoint in &target.endpoints {
            match api::transport::connect(endpoint, tls.clone(), CONNECT_TIMEOUT).await {
                Ok(channel) => {
                    return Ok(Self {
                        client: MachineServiceClient::new(channel)
                            .max_decoding_message_size(64 << 20),
                        nodes: target.nodes_metadata(endpoint),
                        endpoint: endpoint.clone(),
                    });
                }
                Err(e) => failures.push(format!("{endpoint}: {}", explain(&e))),
            }
        }
        Err(ConnectionError::Unreachable(failures.join("; ")))
    }

    /// Wraps a request message, adding the `nodes` metadata when calls fan out.
    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(nodes) = &self.nodes {
            // Node addresses are validated ASCII; a value that still fails is dropped,
            // and the call then goes to the endpoint alone.
            if let Ok(value) = nodes.parse() {
                request.metadata_mut().insert(api::NODES_METADATA, value);
            }
        }
        request
    }

    /// Whether this call fans out to named nodes.
    pub fn fans_out(&self) -> bool {
        self.nodes.is_some()
    }
}
