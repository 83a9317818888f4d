//! Message-agnostic handling of machine API payloads, for forwarding and merging.
//!
//! Because every reply is `repeated Item messages = 1` and every item starts with
//! `NodeMetadata metadata = 1`, a proxy can merge replies from many nodes without
//! knowing the RPC: the protobuf encoding of a merged reply is the concatenation of the
//! nodes' encoded replies, and a node that failed is represented by an item holding
//! only its metadata with the error set.

use bytes::{Buf, BufMut, Bytes};
use prost::Message;
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

use crate::machine::NodeMetadata;

/// Any item or stream message, seen only through its leading metadata field.
#[derive(Clone, PartialEq, Message)]
struct MetadataOnly {
    #[prost(message, optional, tag = "1")]
    metadata: Option<NodeMetadata>,
}

/// Any unary reply, seen as its list of items.
#[derive(Clone, PartialEq, Message)]
struct Items {
    #[prost(message, repeated, tag = "1")]
    messages: Vec<MetadataOnly>,
}

fn failed_item(hostname: &str, error: &str) -> MetadataOnly {
    MetadataOnly {
        metadata: Some(NodeMetadata {
            hostname: hostname.to_owned(),
            error: error.to_owned(),
        }),
    }
}

/// The encoded unary reply of a node that could not answer: one item whose metadata
/// names the node and the error. Valid for every unary RPC of the machine API.
pub fn failed_reply(hostname: &str, error: &str) -> Bytes {
    Items {
        messages: vec![failed_item(hostname, error)],
    }
    .encode_to_vec()
    .into()
}

/// The encoded stream message of a node whose stream failed. Valid for every
/// server-streaming RPC of the machine API.
pub fn failed_stream_message(hostname: &str, error: &str) -> Bytes {
    failed_item(hostname, error).encode_to_vec().into()
}

/// A gRPC codec that passes encoded messages through untouched.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::{VersionInfo, VersionResponse};

    fn reply(hostname: &str, version: &str) -> VersionResponse {
        VersionResponse {
            messages: vec![VersionInfo {
                metadata: Some(NodeMetadata {
                    hostname: hostname.into(),
                    error: String::new(),
                }),
                agent_version: version.into(),
                ..Default::default()
            }],
        }
    }

    #[test]
    fn concatenated_replies_decode_as_one_merged_reply() {
        let mut merged = reply("n1", "1.0").encode_to_vec();
        merged.extend_from_slice(&failed_reply("n2", "connection refused"));
        merged.extend_from_slice(&reply("n3", "1.1").encode_to_vec());

        let decoded = VersionResponse::decode(merged.as_slice()).unwrap();
        let rows: Vec<_> = decoded
            .messages
            .iter()
            .map(|m| {
                let meta = m.metadata.clone().unwrap_or_default();
                (meta.hostname, meta.error, m.agent_version.clone())
            })
            .collect();
        assert_eq!(
            rows,
            vec![
                ("n1".into(), "".into(), "1.0".into()),
                ("n2".into(), "connection refused".into(), "".into()),
                ("n3".into(), "".into(), "1.1".into()),
            ]
        );
    }

    #[test]
    fn a_failed_stream_message_is_a_data_message_with_an_error() {
        let data = crate::machine::Data::decode(failed_stream_message("n2", "gone")).unwrap();
        assert_eq!(data.metadata.unwrap().error, "gone");
        assert!(data.bytes.is_empty());
    }
}
