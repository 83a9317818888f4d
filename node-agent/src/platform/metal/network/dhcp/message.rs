//! The DHCPv4 message (RFC 2131 section 2, options from RFC 2132): the fixed BOOTP
//! header, the magic cookie, and the options the client sends or reads.
//!
//! The codec is our own rather than a crate's: the client uses a dozen options, and
//! the general-purpose crates bring a DNS library and IDNA tables into an initramfs
//! that must stay small. Decoding reads bytes off the network, so every length is
//! checked and bad input is a [`DecodeError`], never a panic. Options the client does
//! not know are skipped; option overload (52) is one of them, so options carried in
//! `sname` and `file` are not read. An option that appears more than once is
//! concatenated (RFC 3396), and values longer than 255 bytes are split that way.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// The BOOTP header's length up to the options field (RFC 2131 figure 1).
const HEADER_LEN: usize = 236;
/// What starts the options field, telling DHCP from plain BOOTP (RFC 2131 3).
const MAGIC_COOKIE: [u8; 4] = [99, 130, 83, 99];
/// `htype` of Ethernet (RFC 1700), the only link type the client runs on.
const HTYPE_ETHERNET: u8 = 1;
/// The longest value one option can carry: its length is one byte.
const MAX_OPTION_LEN: usize = u8::MAX as usize;

/// The `flags` bit that asks the server to broadcast its reply (RFC 2131 4.1), which
/// the client needs while its interface holds no address to unicast to.
pub(super) const FLAG_BROADCAST: u16 = 0x8000;

/// Option codes (RFC 2132) that the client sends or reads, named so that the parameter
/// request list and the codec spell them the same way.
pub(super) mod code {
    /// Padding between options; has no length byte.
    pub const PAD: u8 = 0;
    /// Subnet mask of the leased address.
    pub const SUBNET_MASK: u8 = 1;
    /// Routers, in order of preference.
    pub const ROUTER: u8 = 3;
    /// DNS servers.
    pub const DNS: u8 = 6;
    /// The address a client asks for in a REQUEST.
    pub const REQUESTED_IP: u8 = 50;
    /// Lease time in seconds.
    pub const LEASE_TIME: u8 = 51;
    /// The message type (DISCOVER, OFFER, ...).
    pub const MESSAGE_TYPE: u8 = 53;
    /// The server's identifier (its address).
    pub const SERVER_ID: u8 = 54;
    /// The options a client asks the server for.
    pub const PARAMETER_REQUEST_LIST: u8 = 55;
    /// The largest message the client accepts.
    pub const MAX_MESSAGE_SIZE: u8 = 57;
    /// T1: seconds from the lease's start to renewing.
    pub const RENEWAL_TIME: u8 = 58;
    /// T2: seconds from the lease's start to rebinding.
    pub const REBINDING_TIME: u8 = 59;
    /// The client identifier: hardware type and address.
    pub const CLIENT_ID: u8 = 61;
    /// The end of the options; has no length byte.
    pub const END: u8 = 255;
}

/// Why a datagram is not a DHCP message the client can read. Replies come from the
/// network, so anything malformed ends up here rather than in a panic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum DecodeError {
    /// Shorter than the fixed header and the magic cookie.
    #[error("dhcp message of {0} bytes is shorter than its header")]
    Truncated(usize),
    /// `op` is neither BOOTREQUEST nor BOOTREPLY.
    #[error("dhcp message has unknown op {0}")]
    Opcode(u8),
    /// The options field does not start with the magic cookie: BOOTP, or not DHCP.
    #[error("dhcp message has magic cookie {0:?}, not [99, 130, 83, 99]")]
    Cookie([u8; 4]),
    /// An option's length byte, or its value, runs past the end of the message.
    #[error("dhcp option {0} runs past the end of the message")]
    OptionTruncated(u8),
    /// The options run out without an end option: the message was cut short.
    #[error("dhcp options have no end option")]
    MissingEnd,
    /// A known option's value has a length its type cannot have.
    #[error("dhcp option {code} has invalid length {length}")]
    OptionLength {
        /// The option's code.
        code: u8,
        /// Its value's length, after concatenating repeats.
        length: usize,
    },
    /// A message type (option 53) that RFC 2132 does not define.
    #[error("dhcp message type {0} is unknown")]
    MessageType(u8),
}

/// The BOOTP `op` field: who sent the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Opcode {
    /// From a client.
    BootRequest = 1,
    /// From a server; the only kind the client acts on.
    BootReply = 2,
}

/// Option 53, which makes a BOOTP message a DHCP one and says which step it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum MessageType {
    /// A client looks for servers.
    Discover = 1,
    /// A server offers an address.
    Offer = 2,
    /// A client asks for an offered address, or to extend its lease.
    Request = 3,
    /// A client found its address in use.
    Decline = 4,
    /// A server grants the lease.
    Ack = 5,
    /// A server refuses the request.
    Nak = 6,
    /// A client gives its lease up.
    Release = 7,
    /// A client asks for parameters only.
    Inform = 8,
}

impl MessageType {
    /// The type of value `value`, as option 53 carries it.
    fn from_u8(value: u8) -> Option<Self> {
        Some(match value {
            1 => Self::Discover,
            2 => Self::Offer,
            3 => Self::Request,
            4 => Self::Decline,
            5 => Self::Ack,
            6 => Self::Nak,
            7 => Self::Release,
            8 => Self::Inform,
            _ => return None,
        })
    }
}

/// A DHCP message: the BOOTP header fields as RFC 2131 names them, and its options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Message {
    /// Request from a client or reply from a server.
    pub op: Opcode,
    /// Hardware address type (1 for Ethernet).
    pub htype: u8,
    /// Hardware address length (6 for Ethernet).
    pub hlen: u8,
    /// Relay hops; clients send 0.
    pub hops: u8,
    /// Transaction id, which ties replies to requests.
    pub xid: u32,
    /// Seconds since the client began; the client sends 0.
    pub secs: u16,
    /// Flags; only [`FLAG_BROADCAST`] is defined.
    pub flags: u16,
    /// The client's address while it holds a lease (renewing, rebinding).
    pub ciaddr: Ipv4Addr,
    /// "Your" address: the one offered or granted.
    pub yiaddr: Ipv4Addr,
    /// The next server (often the DHCP server itself).
    pub siaddr: Ipv4Addr,
    /// The relay agent's address.
    pub giaddr: Ipv4Addr,
    /// The client's hardware address, zero-padded.
    pub chaddr: [u8; 16],
    /// Server host name, NUL-terminated; unused by the client.
    pub sname: [u8; 64],
    /// Boot file name, NUL-terminated; unused by the client.
    pub file: [u8; 128],
    /// The options after the magic cookie.
    pub options: Options,
}

/// The options the client sends or reads (RFC 2132). A list that is empty was not
/// in the message, and is not sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Options {
    /// 53: the message type; a message without one is plain BOOTP.
    pub message_type: Option<MessageType>,
    /// 50: the address asked for in a REQUEST for an offer.
    pub requested_ip: Option<Ipv4Addr>,
    /// 54: the server that offered or granted the lease.
    pub server_id: Option<Ipv4Addr>,
    /// 61: the client identifier, hardware type then address.
    pub client_id: Vec<u8>,
    /// 57: the largest message the client accepts.
    pub max_message_size: Option<u16>,
    /// 55: the codes of the options the client wants in replies.
    pub parameter_request_list: Vec<u8>,
    /// 1: the leased address's subnet mask.
    pub subnet_mask: Option<Ipv4Addr>,
    /// 3: routers, in order of preference.
    pub routers: Vec<Ipv4Addr>,
    /// 6: DNS servers.
    pub dns: Vec<Ipv4Addr>,
    /// 51: lease time in seconds.
    pub lease_time: Option<u32>,
    /// 58: T1, seconds until renewing.
    pub renewal_time: Option<u32>,
    /// 59: T2, seconds until rebinding.
    pub rebinding_time: Option<u32>,
}

impl Message {
    /// A BOOTREQUEST from Ethernet address `mac` in transaction `xid`, with every other
    /// field zero and no options: what each of the client's messages starts from.
    pub fn request(xid: u32, mac: &[u8; 6]) -> Self {
        let mut chaddr = [0; 16];
        chaddr[..6].copy_from_slice(mac);
        Self {
            op: Opcode::BootRequest,
            htype: HTYPE_ETHERNET,
            hlen: 6,
            hops: 0,
            xid,
            secs: 0,
            flags: 0,
            ciaddr: Ipv4Addr::UNSPECIFIED,
            yiaddr: Ipv4Addr::UNSPECIFIED,
            siaddr: Ipv4Addr::UNSPECIFIED,
            giaddr: Ipv4Addr::UNSPECIFIED,
            chaddr,
            sname: [0; 64],
            file: [0; 128],
            options: Options::default(),
        }
    }

    /// The message as it goes on the wire.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + 64);
        out.extend_from_slice(&[self.op as u8, self.htype, self.hlen, self.hops]);
        out.extend_from_slice(&self.xid.to_be_bytes());
        out.extend_from_slice(&self.secs.to_be_bytes());
        out.extend_from_slice(&self.flags.to_be_bytes());
        for address in [self.ciaddr, self.yiaddr, self.siaddr, self.giaddr] {
            out.extend_from_slice(&address.octets());
        }
        out.extend_from_slice(&self.chaddr);
        out.extend_from_slice(&self.sname);
        out.extend_from_slice(&self.file);
        out.extend_from_slice(&MAGIC_COOKIE);
        self.options.encode(&mut out);
        out.push(code::END);
        out
    }

    /// Reads a message from a datagram's payload. Anything after the end option (such
    /// as padding to the BOOTP minimum of 300 bytes) is ignored.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut header = Reader {
            rest: bytes,
            error: DecodeError::Truncated(bytes.len()),
        };
        let [op, htype, hlen, hops] = header.take()?;
        let op = match op {
            1 => Opcode::BootRequest,
            2 => Opcode::BootReply,
            other => return Err(DecodeError::Opcode(other)),
        };
        let xid = u32::from_be_bytes(header.take()?);
        let secs = u16::from_be_bytes(header.take()?);
        let flags = u16::from_be_bytes(header.take()?);
        let ciaddr = Ipv4Addr::from(header.take::<4>()?);
        let yiaddr = Ipv4Addr::from(header.take::<4>()?);
        let siaddr = Ipv4Addr::from(header.take::<4>()?);
        let giaddr = Ipv4Addr::from(header.take::<4>()?);
        let chaddr = header.take()?;
        let sname = header.take()?;
        let file = header.take()?;
        let cookie = header.take()?;
        if cookie != MAGIC_COOKIE {
            return Err(DecodeError::Cookie(cookie));
        }
        Ok(Self {
            op,
            htype,
            hlen,
            hops,
            xid,
            secs,
            flags,
            ciaddr,
            yiaddr,
            siaddr,
            giaddr,
            chaddr,
            sname,
            file,
            options: Options::decode(header.rest)?,
        })
    }
}

/// Reads fixed-size fields off the front of a buffer, failing with `error` when it
/// runs out.
struct Reader<'a> {
    rest: &'a [u8],
    error: DecodeError,
}

impl Reader<'_> {
    /// The next `N` bytes.
    fn take<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let (field, rest) = self
            .rest
            .split_first_chunk::<N>()
            .ok_or_else(|| self.error.clone())?;
        self.rest = rest;
        Ok(*field)
    }
}

impl Options {
    /// Appends the options, in ascending order of code, without the end option.
    fn encode(&self, out: &mut Vec<u8>) {
        let address = |a: Option<Ipv4Addr>| a.map(|a| a.octets().to_vec());
        let seconds = |s: Option<u32>| s.map(|s| s.to_be_bytes().to_vec());
        let list = |l: &[Ipv4Addr]| Some(l.iter().flat_map(|a| a.octets()).collect());
        let options: [(u8, Option<Vec<u8>>); 12] = [
            (code::SUBNET_MASK, address(self.subnet_mask)),
            (code::ROUTER, list(&self.routers)),
            (code::DNS, list(&self.dns)),
            (code::REQUESTED_IP, address(self.requested_ip)),
            (code::LEASE_TIME, seconds(self.lease_time)),
            (code::MESSAGE_TYPE, self.message_type.map(|t| vec![t as u8])),
            (code::SERVER_ID, address(self.server_id)),
            (
                code::PARAMETER_REQUEST_LIST,
                Some(self.parameter_request_list.clone()),
            ),
            (
                code::MAX_MESSAGE_SIZE,
                self.max_message_size.map(|s| s.to_be_bytes().to_vec()),
            ),
            (code::RENEWAL_TIME, seconds(self.renewal_time)),
            (code::REBINDING_TIME, seconds(self.rebinding_time)),
            (code::CLIENT_ID, Some(self.client_id.clone())),
        ];
        for (code, value) in options {
            // An empty list is an absent option; `chunks` yields nothing for it.
            for chunk in value.unwrap_or_default().chunks(MAX_OPTION_LEN) {
                out.push(code);
                // `chunks(MAX_OPTION_LEN)` yields at most 255 bytes.
                out.push(chunk.len() as u8);
                out.extend_from_slice(chunk);
            }
        }
    }

    /// Reads the options field (after the magic cookie) up to its end option.
    fn decode(mut bytes: &[u8]) -> Result<Self, DecodeError> {
        // Each option's value by code, repeats concatenated (RFC 3396).
        let mut values: BTreeMap<u8, Vec<u8>> = BTreeMap::new();
        loop {
            let Some((&code, rest)) = bytes.split_first() else {
                return Err(DecodeError::MissingEnd);
            };
            match code {
                code::END => break,
                code::PAD => bytes = rest,
                _ => {
                    let (value, rest) = rest
                        .split_first()
                        .and_then(|(&length, rest)| rest.split_at_checked(usize::from(length)))
                        .ok_or(DecodeError::OptionTruncated(code))?;
                    values.entry(code).or_default().extend_from_slice(value);
                    bytes = rest;
                }
            }
        }
        let value = |code| values.get(&code).map(Vec::as_slice);
        let address = |code| fixed(code, value(code)).map(|a| a.map(Ipv4Addr::from));
        let seconds = |code| fixed(code, value(code)).map(|s| s.map(u32::from_be_bytes));
        let message_type = match fixed::<1>(code::MESSAGE_TYPE, value(code::MESSAGE_TYPE))? {
            Some([kind]) => Some(MessageType::from_u8(kind).ok_or(DecodeError::MessageType(kind))?),
            None => None,
        };
        Ok(Self {
            message_type,
            requested_ip: address(code::REQUESTED_IP)?,
            server_id: address(code::SERVER_ID)?,
            client_id: value(code::CLIENT_ID).unwrap_or_default().to_vec(),
            max_message_size: fixed(code::MAX_MESSAGE_SIZE, value(code::MAX_MESSAGE_SIZE))?
                .map(u16::from_be_bytes),
            parameter_request_list: value(code::PARAMETER_REQUEST_LIST)
                .unwrap_or_default()
                .to_vec(),
            subnet_mask: address(code::SUBNET_MASK)?,
            routers: addresses(code::ROUTER, value(code::ROUTER))?,
            dns: addresses(code::DNS, value(code::DNS))?,
            lease_time: seconds(code::LEASE_TIME)?,
            renewal_time: seconds(code::RENEWAL_TIME)?,
            rebinding_time: seconds(code::REBINDING_TIME)?,
        })
    }
}

/// The value of option `code`, which must be `N` bytes long when present.
fn fixed<const N: usize>(code: u8, value: Option<&[u8]>) -> Result<Option<[u8; N]>, DecodeError> {
    value
        .map(|value| {
            value.try_into().map_err(|_| DecodeError::OptionLength {
                code,
                length: value.len(),
            })
        })
        .transpose()
}

/// The addresses in option `code`, whose length must be a multiple of four.
fn addresses(code: u8, value: Option<&[u8]>) -> Result<Vec<Ipv4Addr>, DecodeError> {
    let value = value.unwrap_or_default();
    match value.as_chunks::<4>() {
        (addresses, []) => Ok(addresses.iter().map(|&a| Ipv4Addr::from(a)).collect()),
        _ => Err(DecodeError::OptionLength {
            code,
            length: value.len(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

    /// An ACK with every option the codec knows.
    fn ack() -> Message {
        let mut message = Message::request(0xdead_beef, &MAC);
        message.op = Opcode::BootReply;
        message.flags = FLAG_BROADCAST;
        message.yiaddr = Ipv4Addr::new(192, 0, 2, 10);
        message.siaddr = Ipv4Addr::new(192, 0, 2, 1);
        message.sname[..4].copy_from_slice(b"dhcp");
        message.options = Options {
            message_type: Some(MessageType::Ack),
            requested_ip: Some(Ipv4Addr::new(192, 0, 2, 10)),
            server_id: Some(Ipv4Addr::new(192, 0, 2, 1)),
            client_id: vec![1, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56],
            max_message_size: Some(1500),
            parameter_request_list: vec![1, 3, 6, 51, 58, 59],
            subnet_mask: Some(Ipv4Addr::new(255, 255, 255, 0)),
            routers: vec![Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(192, 0, 2, 2)],
            dns: vec![Ipv4Addr::new(192, 0, 2, 53)],
            lease_time: Some(120),
            renewal_time: Some(60),
            rebinding_time: Some(105),
        };
        message
    }

    /// A message's header and cookie followed by `options` as raw bytes.
    fn with_options(options: &[u8]) -> Vec<u8> {
        let mut bytes = Message::request(1, &MAC).encode();
        bytes.truncate(HEADER_LEN + MAGIC_COOKIE.len());
        bytes.extend_from_slice(options);
        bytes
    }

    #[test]
    fn a_message_survives_encoding_and_decoding() {
        let message = ack();
        assert_eq!(Message::decode(&message.encode()), Ok(message));
        let request = Message::request(7, &MAC);
        assert_eq!(Message::decode(&request.encode()), Ok(request));
    }

    #[test]
    fn the_header_is_laid_out_as_rfc_2131_says() {
        let bytes = ack().encode();
        assert_eq!(&bytes[..4], &[2, 1, 6, 0], "op, htype, hlen, hops");
        assert_eq!(&bytes[4..8], &0xdead_beef_u32.to_be_bytes(), "xid");
        assert_eq!(&bytes[10..12], &[0x80, 0], "broadcast flag");
        assert_eq!(&bytes[16..20], &[192, 0, 2, 10], "yiaddr");
        assert_eq!(&bytes[28..34], &MAC, "chaddr");
        assert_eq!(&bytes[44..48], b"dhcp", "sname");
        assert_eq!(&bytes[236..240], &[99, 130, 83, 99], "magic cookie");
        assert_eq!(&bytes[240..246], &[1, 4, 255, 255, 255, 0], "first option");
        assert_eq!(bytes.last(), Some(&code::END));
    }

    #[test]
    fn pad_unknown_options_overload_and_trailing_bytes_are_skipped() {
        let bytes = with_options(&[
            0, 0, // pad
            53, 1, 2, // offer
            52, 1, 3, // overload: sname and file hold options, which are not read
            0, // pad
            43, 3, 9, 9, 9, // vendor-specific: unknown
            54, 4, 10, 0, 0, 1, // server
            255, 0, 0, 0, 7, // end, then padding
        ]);
        let message = Message::decode(&bytes).unwrap();
        assert_eq!(message.options.message_type, Some(MessageType::Offer));
        assert_eq!(message.options.server_id, Some(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(
            Options {
                message_type: None,
                server_id: None,
                ..message.options
            },
            Options::default()
        );
    }

    #[test]
    fn repeated_options_are_concatenated_and_long_ones_split() {
        let bytes = with_options(&[6, 4, 1, 1, 1, 1, 3, 4, 2, 2, 2, 2, 6, 4, 3, 3, 3, 3, 255]);
        let options = Message::decode(&bytes).unwrap().options;
        assert_eq!(
            options.dns,
            [Ipv4Addr::new(1, 1, 1, 1), Ipv4Addr::new(3, 3, 3, 3)]
        );
        assert_eq!(options.routers, [Ipv4Addr::new(2, 2, 2, 2)]);

        let mut message = ack();
        message.options.dns = (0..70).map(|i| Ipv4Addr::new(10, 0, 0, i)).collect();
        let bytes = message.encode();
        assert_eq!(Message::decode(&bytes), Ok(message));
    }

    #[test]
    fn a_truncated_header_is_an_error() {
        let bytes = ack().encode();
        assert_eq!(Message::decode(&[]), Err(DecodeError::Truncated(0)));
        assert_eq!(
            Message::decode(&bytes[..100]),
            Err(DecodeError::Truncated(100))
        );
        assert_eq!(
            Message::decode(&bytes[..HEADER_LEN + 3]),
            Err(DecodeError::Truncated(HEADER_LEN + 3)),
            "cookie cut short"
        );
        assert_eq!(
            Message::decode(&bytes[..HEADER_LEN + 4]),
            Err(DecodeError::MissingEnd),
            "no options at all"
        );
    }

    #[test]
    fn a_bad_cookie_or_op_is_an_error() {
        let mut bytes = ack().encode();
        bytes[HEADER_LEN] = 100;
        assert_eq!(
            Message::decode(&bytes),
            Err(DecodeError::Cookie([100, 130, 83, 99]))
        );
        let mut bytes = ack().encode();
        bytes[0] = 3;
        assert_eq!(Message::decode(&bytes), Err(DecodeError::Opcode(3)));
    }

    #[test]
    fn an_option_past_the_end_is_an_error() {
        assert_eq!(
            Message::decode(&with_options(&[3, 8, 1, 2, 3, 4])),
            Err(DecodeError::OptionTruncated(3)),
            "value cut short"
        );
        assert_eq!(
            Message::decode(&with_options(&[53])),
            Err(DecodeError::OptionTruncated(53)),
            "no length byte"
        );
        assert_eq!(
            Message::decode(&with_options(&[53, 1, 5])),
            Err(DecodeError::MissingEnd)
        );
    }

    #[test]
    fn a_known_option_with_a_wrong_length_or_value_is_an_error() {
        let length = |code, length| Err(DecodeError::OptionLength { code, length });
        let decode = |options: &[u8]| Message::decode(&with_options(options));
        assert_eq!(decode(&[1, 3, 255, 255, 255, 255]), length(1, 3));
        assert_eq!(decode(&[3, 5, 1, 2, 3, 4, 5, 255]), length(3, 5));
        assert_eq!(decode(&[51, 2, 0, 1, 255]), length(51, 2));
        assert_eq!(decode(&[53, 2, 5, 5, 255]), length(53, 2));
        assert_eq!(decode(&[57, 1, 5, 255]), length(57, 1));
        assert_eq!(decode(&[53, 1, 9, 255]), Err(DecodeError::MessageType(9)));
    }

    #[test]
    fn every_truncation_of_a_valid_message_is_an_error() {
        let bytes = ack().encode();
        for length in 0..bytes.len() {
            assert!(
                Message::decode(&bytes[..length]).is_err(),
                "{length} of {} bytes decoded",
                bytes.len()
            );
        }
    }

    #[test]
    fn corrupting_any_byte_never_panics() {
        let bytes = ack().encode();
        for index in 0..bytes.len() {
            for value in [0, 1, 4, 52, 53, 128, 255] {
                let mut corrupt = bytes.clone();
                corrupt[index] = value;
                let _ = Message::decode(&corrupt);
                let _ = Message::decode(&corrupt[..index]);
            }
        }
    }
}
