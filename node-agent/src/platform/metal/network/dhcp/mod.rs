//! A DHCPv4 client (RFC 2131) for one interface: DISCOVER, OFFER, REQUEST, ACK, then
//! renewal from T1 (unicast to the server) and rebinding from T2 (broadcast) until the
//! lease expires.
//!
//! It sends over a UDP socket bound to `0.0.0.0:68` and to the interface
//! (`SO_BINDTODEVICE`), with `SO_BROADCAST`; the kernel sends from `0.0.0.0` while the
//! interface has no address. Replies are read on that UDP socket once the interface
//! holds the lease. Before that (INIT, SELECTING, REQUESTING) they are read on an
//! `AF_PACKET` socket with a BPF filter (this interface, UDP, port 68): the kernel's
//! UDP path drops an offer whose source it has no route back to when reverse-path
//! filtering is on (`rp_filter=1`), and an unconfigured interface has no routes. The
//! messages are encoded and decoded by [`message`]; the lease's timing is pure
//! ([`Lease::phase`], [`Lease::retransmit_wait`], [`backoff`]) so that it is tested
//! without a network.

mod message;

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use message::{FLAG_BROADCAST, Message, MessageType, Opcode, Options, code};
use ring::rand::{SecureRandom, SystemRandom};
use socket2::{Domain, Protocol, SockFilter, Socket, Type};
use tokio::net::UdpSocket;
use tokio::time::Instant;

/// The client port, which servers answer to.
const CLIENT_PORT: u16 = 68;
/// The server port.
const SERVER_PORT: u16 = 67;
/// The longest wait between two DISCOVERs (RFC 2131 suggests 64 s; a booting node
/// should not wait that long after its server comes back).
const MAX_BACKOFF: Duration = Duration::from_secs(32);
/// RFC 2131 4.4.5: the shortest wait between two REQUESTs while renewing or rebinding.
const MIN_RENEW_RETRANSMIT: Duration = Duration::from_secs(60);
/// REQUESTs sent for one OFFER before starting over with a DISCOVER.
const REQUEST_ATTEMPTS: u32 = 4;
/// Large enough for any DHCP message on an Ethernet link.
const RECEIVE_BUFFER: usize = 1500;

/// A lease: what the server granted and when to renew it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Lease {
    /// The address granted (`yiaddr`).
    pub address: Ipv4Addr,
    /// Prefix length from the subnet mask option (classful when the server sent none).
    pub prefix_len: u8,
    /// Routers, in the server's order of preference.
    pub routers: Vec<Ipv4Addr>,
    /// DNS servers.
    pub dns: Vec<Ipv4Addr>,
    /// The server that granted the lease (option 54), which renewals are sent to.
    pub server: Option<Ipv4Addr>,
    /// Lease time in seconds; `u32::MAX` is infinite, as in the kernel's lifetimes.
    pub lease_secs: u32,
    /// T1: when renewing starts, from the start of the lease.
    pub renew_after: Duration,
    /// T2: when rebinding starts, from the start of the lease.
    pub rebind_after: Duration,
}

/// Where a lease stands at some time after it was granted (RFC 2131 4.4.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Before T1: nothing to do.
    Bound,
    /// From T1: REQUESTs are unicast to the server that granted the lease.
    Renewing,
    /// From T2: REQUESTs are broadcast to any server.
    Rebinding,
    /// The lease is over: the address must go.
    Expired,
}

impl Lease {
    /// How long the lease lasts from its start.
    pub fn duration(&self) -> Duration {
        Duration::from_secs(u64::from(self.lease_secs))
    }

    /// The phase at `elapsed` after the lease was granted.
    pub fn phase(&self, elapsed: Duration) -> Phase {
        if elapsed >= self.duration() {
            Phase::Expired
        } else if elapsed >= self.rebind_after {
            Phase::Rebinding
        } else if elapsed >= self.renew_after {
            Phase::Renewing
        } else {
            Phase::Bound
        }
    }

    /// How long to wait for an answer to a REQUEST sent at `elapsed`: half the time
    /// left until the next phase, at least 60 s, but never past that phase's start.
    pub fn retransmit_wait(&self, elapsed: Duration) -> Duration {
        let next = match self.phase(elapsed) {
            Phase::Bound => self.renew_after,
            Phase::Renewing => self.rebind_after,
            Phase::Rebinding | Phase::Expired => self.duration(),
        };
        let left = next.saturating_sub(elapsed);
        (left / 2).max(MIN_RENEW_RETRANSMIT).min(left)
    }

    /// The lease's address with its prefix.
    pub fn network(&self) -> ipnet::Ipv4Net {
        // The prefix length comes from `prefix_of` or `classful`, which never exceed 32.
        ipnet::Ipv4Net::new(self.address, self.prefix_len).expect("prefix length is at most 32")
    }
}

/// The wait after the `attempt`th DISCOVER (from 0) before sending the next:
/// 1 s, doubling up to [`MAX_BACKOFF`].
pub(super) fn backoff(attempt: u32) -> Duration {
    Duration::from_secs(1u64 << attempt.min(6)).min(MAX_BACKOFF)
}

/// A server's answer that belongs to our transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Reply {
    /// DHCPOFFER: an address and the server offering it.
    Offer {
        /// The offered address.
        address: Ipv4Addr,
        /// The offering server's identifier, to name in the REQUEST.
        server: Ipv4Addr,
    },
    /// DHCPACK: the lease is ours.
    Ack(Lease),
    /// DHCPNAK: start over.
    Nak,
}

/// DHCPDISCOVER.
fn discover(xid: u32, mac: &[u8; 6]) -> Message {
    request_base(xid, mac, MessageType::Discover, Ipv4Addr::UNSPECIFIED)
}

/// DHCPREQUEST in the SELECTING state: accepts `offer` from `server`.
fn request_offer(xid: u32, mac: &[u8; 6], address: Ipv4Addr, server: Ipv4Addr) -> Message {
    let mut message = request_base(xid, mac, MessageType::Request, Ipv4Addr::UNSPECIFIED);
    message.options.requested_ip = Some(address);
    message.options.server_id = Some(server);
    message
}

/// DHCPREQUEST in the RENEWING and REBINDING states: extends the lease on `address`.
fn request_extend(xid: u32, mac: &[u8; 6], address: Ipv4Addr) -> Message {
    request_base(xid, mac, MessageType::Request, address)
}

fn request_base(xid: u32, mac: &[u8; 6], kind: MessageType, ciaddr: Ipv4Addr) -> Message {
    let mut message = Message::request(xid, mac);
    message.ciaddr = ciaddr;
    message.flags = FLAG_BROADCAST;
    message.options = Options {
        message_type: Some(kind),
        client_id: [&[1][..], mac].concat(), // hardware type: Ethernet
        max_message_size: Some(RECEIVE_BUFFER as u16),
        parameter_request_list: vec![
            code::SUBNET_MASK,
            code::ROUTER,
            code::DNS,
            code::LEASE_TIME,
            code::RENEWAL_TIME,
            code::REBINDING_TIME,
        ],
        ..Options::default()
    };
    message
}

/// Parses a datagram received on port 68; `None` when it is not a reply to
/// transaction `xid` for `mac`, or not a reply we act on.
pub(super) fn parse_reply(bytes: &[u8], xid: u32, mac: &[u8; 6]) -> Option<Reply> {
    let message = Message::decode(bytes).ok()?;
    if message.op != Opcode::BootReply || message.xid != xid || !message.chaddr.starts_with(mac) {
        return None;
    }
    match message.options.message_type? {
        MessageType::Offer => Some(Reply::Offer {
            address: message.yiaddr,
            server: message.options.server_id?,
        }),
        MessageType::Ack => Some(Reply::Ack(lease_of(message))),
        MessageType::Nak => Some(Reply::Nak),
        _ => None,
    }
}

fn lease_of(message: Message) -> Lease {
    let options = message.options;
    let address = message.yiaddr;
    let prefix_len = options
        .subnet_mask
        .map_or_else(|| classful(address), prefix_of);
    let seconds = |s: Option<u32>| s.map(|s| Duration::from_secs(u64::from(s)));
    // RFC 2131 requires a lease time in an ACK to a REQUEST; an hour when it is missing.
    let lease_secs = options.lease_time.unwrap_or(3600);
    let lease = Duration::from_secs(u64::from(lease_secs));
    let rebind_default = lease * 7 / 8;
    let rebind_after = seconds(options.rebinding_time)
        .filter(|&t2| t2 <= lease)
        .unwrap_or(rebind_default);
    let renew_after = seconds(options.renewal_time)
        .filter(|&t1| t1 <= rebind_after)
        .unwrap_or((lease / 2).min(rebind_after));
    Lease {
        address,
        prefix_len,
        routers: options.routers,
        dns: options.dns,
        server: options
            .server_id
            .or_else(|| Some(message.siaddr).filter(|s| !s.is_unspecified())),
        lease_secs,
        renew_after,
        rebind_after,
    }
}

/// The prefix length of a subnet mask (its leading ones).
fn prefix_of(mask: Ipv4Addr) -> u8 {
    // At most 32 leading ones in a u32.
    u32::from(mask).leading_ones() as u8
}

/// The pre-CIDR prefix of an address, for a server that sends no subnet mask.
fn classful(address: Ipv4Addr) -> u8 {
    match address.octets()[0] {
        0..=127 => 8,
        128..=191 => 16,
        _ => 24,
    }
}

/// The client of one interface: its socket and hardware address.
pub(super) struct Client {
    socket: UdpSocket,
    index: u32,
    mac: [u8; 6],
    random: SystemRandom,
}

impl Client {
    /// Opens the client's UDP socket on `interface` (index `index`).
    pub fn new(interface: &str, index: u32, mac: [u8; 6]) -> io::Result<Self> {
        let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
        socket.set_reuse_address(true)?;
        socket.set_broadcast(true)?;
        socket.bind_device(Some(interface.as_bytes()))?;
        socket.set_nonblocking(true)?;
        socket.bind(&SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, CLIENT_PORT).into())?;
        Ok(Self {
            socket: UdpSocket::from_std(socket.into())?,
            index,
            mac,
            random: SystemRandom::new(),
        })
    }

    /// Obtains a lease from scratch (INIT, SELECTING, REQUESTING), retrying with
    /// backoff until a server grants one. The caller bounds the wait.
    pub async fn obtain(&self) -> io::Result<Lease> {
        let raw = packet_socket(self.index)?;
        let inbox = Inbox::Raw(&raw);
        let mut attempt = 0;
        loop {
            let xid = self.xid();
            let discover = discover(xid, &self.mac);
            let wait = backoff(attempt) + self.jitter();
            attempt += 1;
            let Some((address, server)) = self
                .exchange(
                    inbox,
                    &discover,
                    broadcast(),
                    xid,
                    wait,
                    |reply| match reply {
                        Reply::Offer { address, server } => Some((address, server)),
                        _ => None,
                    },
                )
                .await?
            else {
                continue;
            };
            let request = request_offer(xid, &self.mac, address, server);
            for request_attempt in 0..REQUEST_ATTEMPTS {
                let wait = backoff(request_attempt) + self.jitter();
                match self
                    .exchange(
                        inbox,
                        &request,
                        broadcast(),
                        xid,
                        wait,
                        |reply| match reply {
                            Reply::Ack(lease) => Some(Some(lease)),
                            Reply::Nak => Some(None),
                            Reply::Offer { .. } => None,
                        },
                    )
                    .await?
                {
                    Some(Some(lease)) => return Ok(lease),
                    Some(None) => break,
                    None => {}
                }
            }
        }
    }

    /// Keeps `lease` (granted at `granted`) alive: waits for T1, then renews with its
    /// server and, from T2, rebinds with any. Returns the extended lease, or `None`
    /// when a server refused it or it expired.
    pub async fn extend(&self, lease: &Lease, granted: Instant) -> io::Result<Option<Lease>> {
        tokio::time::sleep_until(granted + lease.renew_after).await;
        let xid = self.xid();
        let request = request_extend(xid, &self.mac, lease.address);
        loop {
            let elapsed = granted.elapsed();
            let to = match (lease.phase(elapsed), lease.server) {
                (Phase::Expired, _) => return Ok(None),
                (Phase::Bound | Phase::Renewing, Some(server)) => {
                    SocketAddrV4::new(server, SERVER_PORT)
                }
                _ => broadcast(),
            };
            let wait = lease.retransmit_wait(elapsed);
            let reply = self
                .exchange(Inbox::Udp, &request, to, xid, wait, |reply| match reply {
                    Reply::Ack(lease) => Some(Some(lease)),
                    Reply::Nak => Some(None),
                    Reply::Offer { .. } => None,
                })
                .await?;
            if let Some(outcome) = reply {
                return Ok(outcome);
            }
        }
    }

    /// Sends `message` to `to` and waits up to `wait` for a reply in `inbox` that
    /// `accept` takes.
    async fn exchange<T>(
        &self,
        inbox: Inbox<'_>,
        message: &Message,
        to: SocketAddrV4,
        xid: u32,
        wait: Duration,
        accept: impl Fn(Reply) -> Option<T>,
    ) -> io::Result<Option<T>> {
        self.socket.send_to(&message.encode(), to).await?;
        let deadline = Instant::now() + wait;
        let mut buffer = vec![0; RECEIVE_BUFFER];
        loop {
            let received = tokio::time::timeout_at(deadline, self.receive(inbox, &mut buffer));
            let Ok(received) = received.await else {
                return Ok(None);
            };
            if let Some(reply) = parse_reply(&received?, xid, &self.mac)
                && let Some(taken) = accept(reply)
            {
                return Ok(Some(taken));
            }
        }
    }

    /// The next datagram for port 68 from `inbox`, as the DHCP message it carries.
    async fn receive(&self, inbox: Inbox<'_>, buffer: &mut [u8]) -> io::Result<Vec<u8>> {
        match inbox {
            Inbox::Udp => {
                let length = self.socket.recv(buffer).await?;
                Ok(buffer[..length].to_vec())
            }
            Inbox::Raw(raw) => loop {
                let length = raw.recv(buffer).await?;
                if let Some(payload) = udp_payload(&buffer[..length]) {
                    return Ok(payload.to_vec());
                }
            },
        }
    }

    fn xid(&self) -> u32 {
        u32::from_ne_bytes(self.random_bytes())
    }

    /// Up to a second, so that machines booted together do not retransmit in step.
    fn jitter(&self) -> Duration {
        Duration::from_millis(u64::from(u16::from_ne_bytes(self.random_bytes()) % 1000))
    }

    fn random_bytes<const N: usize>(&self) -> [u8; N] {
        let mut bytes = [0; N];
        // The system's random source does not fail on Linux once booted; zeros would
        // only make the xid predictable, not wrong.
        let _ = self.random.fill(&mut bytes);
        bytes
    }
}

/// Where replies are read.
#[derive(Clone, Copy)]
enum Inbox<'a> {
    /// The UDP socket: once the interface holds the lease.
    Udp,
    /// The packet socket of [`packet_socket`]: while it holds none.
    Raw(&'a UdpSocket),
}

/// An `AF_PACKET` socket that receives the IPv4 packets of interface `index` that are
/// UDP to port 68, without their link-layer header.
///
/// tokio has no packet socket type. It is registered as a tokio `UdpSocket`, whose
/// `recv` is a plain recv(2) on the descriptor, the same for any datagram socket; only
/// `recv` is ever called on it.
fn packet_socket(index: u32) -> io::Result<UdpSocket> {
    const ETH_P_IP: u16 = 0x0800;
    let protocol = Protocol::from(i32::from(ETH_P_IP.to_be()));
    let socket = Socket::new(Domain::PACKET, Type::DGRAM, Some(protocol))?;
    socket.attach_filter(&dhcp_filter(index))?;
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket.into())
}

/// A classic BPF program over an IPv4 packet: accept it when it arrived on interface
/// `index` and is an unfragmented UDP datagram to port 68.
fn dhcp_filter(index: u32) -> [SockFilter; 11] {
    const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
    const LD_H_ABS: u16 = 0x28; // BPF_LD | BPF_H | BPF_ABS
    const LD_B_ABS: u16 = 0x30; // BPF_LD | BPF_B | BPF_ABS
    const LD_H_IND: u16 = 0x48; // BPF_LD | BPF_H | BPF_IND
    const LDX_B_MSH: u16 = 0xb1; // BPF_LDX | BPF_B | BPF_MSH: x = 4 * (ihl)
    const JEQ: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const JSET: u16 = 0x45; // BPF_JMP | BPF_JSET | BPF_K
    const RET: u16 = 0x06; // BPF_RET | BPF_K
    const SKF_AD_IFINDEX: u32 = 0xffff_f000 + 8; // SKF_AD_OFF + SKF_AD_IFINDEX
    [
        SockFilter::new(LD_W_ABS, 0, 0, SKF_AD_IFINDEX),
        SockFilter::new(JEQ, 0, 8, index),
        SockFilter::new(LD_B_ABS, 0, 0, 9), // protocol
        SockFilter::new(JEQ, 0, 6, 17),     // UDP
        SockFilter::new(LD_H_ABS, 0, 0, 6), // flags and fragment offset
        SockFilter::new(JSET, 4, 0, 0x1fff),
        SockFilter::new(LDX_B_MSH, 0, 0, 0),
        SockFilter::new(LD_H_IND, 0, 0, 2), // UDP destination port
        SockFilter::new(JEQ, 0, 1, u32::from(CLIENT_PORT)),
        SockFilter::new(RET, 0, 0, u32::from(u16::MAX)),
        SockFilter::new(RET, 0, 0, 0),
    ]
}

/// The payload of an IPv4 UDP datagram to port 68, or `None` for anything else. The
/// checksum is not checked: a packet socket may see it before it is filled in.
fn udp_payload(packet: &[u8]) -> Option<&[u8]> {
    let version_ihl = *packet.first()?;
    let header = usize::from(version_ihl & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([*packet.get(2)?, *packet.get(3)?]));
    if version_ihl >> 4 != 4 || header < 20 || packet.get(9) != Some(&17) {
        return None;
    }
    let packet = packet.get(..total)?;
    let udp = packet.get(header..)?;
    let port = u16::from_be_bytes([*udp.get(2)?, *udp.get(3)?]);
    let length = usize::from(u16::from_be_bytes([*udp.get(4)?, *udp.get(5)?]));
    if port != CLIENT_PORT || length < 8 {
        return None;
    }
    udp.get(8..length)
}

fn broadcast() -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::BROADCAST, SERVER_PORT)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

    /// A server's reply as slirp sends it.
    fn reply(kind: MessageType, xid: u32, options: Options) -> Vec<u8> {
        let mut message = Message::request(xid, &MAC);
        message.op = Opcode::BootReply;
        message.yiaddr = Ipv4Addr::new(10, 0, 2, 15);
        message.siaddr = Ipv4Addr::new(10, 0, 2, 2);
        message.options = Options {
            message_type: Some(kind),
            ..options
        };
        message.encode()
    }

    fn slirp_options() -> Options {
        Options {
            server_id: Some(Ipv4Addr::new(10, 0, 2, 2)),
            subnet_mask: Some(Ipv4Addr::new(255, 255, 255, 0)),
            routers: vec![Ipv4Addr::new(10, 0, 2, 2)],
            dns: vec![Ipv4Addr::new(10, 0, 2, 3)],
            lease_time: Some(86400),
            ..Options::default()
        }
    }

    fn lease(lease_secs: u32, t1: u64, t2: u64) -> Lease {
        Lease {
            address: Ipv4Addr::new(10, 0, 2, 15),
            prefix_len: 24,
            routers: vec![],
            dns: vec![],
            server: None,
            lease_secs,
            renew_after: Duration::from_secs(t1),
            rebind_after: Duration::from_secs(t2),
        }
    }

    #[test]
    fn discover_asks_for_a_broadcast_reply_and_the_options_we_use() {
        let bytes = discover(0x1234_5678, &MAC).encode();
        let message = Message::decode(&bytes).unwrap();
        assert_eq!(message.op, Opcode::BootRequest);
        assert_eq!(message.xid, 0x1234_5678);
        assert_eq!(&message.chaddr[..6], &MAC);
        assert_eq!(message.flags & FLAG_BROADCAST, FLAG_BROADCAST);
        assert_eq!(message.ciaddr, Ipv4Addr::UNSPECIFIED);
        let options = &message.options;
        assert_eq!(options.message_type, Some(MessageType::Discover));
        let asked = &options.parameter_request_list;
        for code in [code::SUBNET_MASK, code::ROUTER, code::DNS, code::LEASE_TIME] {
            assert!(asked.contains(&code), "{code} not requested: {asked:?}");
        }
        assert_eq!(options.client_id, [1, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
    }

    #[test]
    fn a_request_for_an_offer_names_the_address_and_the_server() {
        let server = Ipv4Addr::new(10, 0, 2, 2);
        let address = Ipv4Addr::new(10, 0, 2, 15);
        let bytes = request_offer(7, &MAC, address, server).encode();
        let message = Message::decode(&bytes).unwrap();
        let options = &message.options;
        assert_eq!(options.message_type, Some(MessageType::Request));
        assert_eq!(options.requested_ip, Some(address));
        assert_eq!(options.server_id, Some(server));
        assert_eq!(message.ciaddr, Ipv4Addr::UNSPECIFIED);
    }

    #[test]
    fn a_renewal_carries_the_address_in_ciaddr_and_names_no_server() {
        let address = Ipv4Addr::new(10, 0, 2, 15);
        let bytes = request_extend(7, &MAC, address).encode();
        let message = Message::decode(&bytes).unwrap();
        assert_eq!(message.ciaddr, address);
        assert_eq!(message.options.server_id, None);
        assert_eq!(message.options.requested_ip, None);
    }

    #[test]
    fn an_offer_gives_the_address_and_server() {
        let bytes = reply(MessageType::Offer, 9, slirp_options());
        assert_eq!(
            parse_reply(&bytes, 9, &MAC),
            Some(Reply::Offer {
                address: Ipv4Addr::new(10, 0, 2, 15),
                server: Ipv4Addr::new(10, 0, 2, 2),
            })
        );
    }

    #[test]
    fn an_ack_becomes_a_lease_with_mask_router_dns_and_default_timers() {
        let bytes = reply(MessageType::Ack, 9, slirp_options());
        let Some(Reply::Ack(lease)) = parse_reply(&bytes, 9, &MAC) else {
            panic!("not an ack");
        };
        assert_eq!(
            lease,
            Lease {
                address: Ipv4Addr::new(10, 0, 2, 15),
                prefix_len: 24,
                routers: vec![Ipv4Addr::new(10, 0, 2, 2)],
                dns: vec![Ipv4Addr::new(10, 0, 2, 3)],
                server: Some(Ipv4Addr::new(10, 0, 2, 2)),
                lease_secs: 86400,
                renew_after: Duration::from_secs(43200),
                rebind_after: Duration::from_secs(75600),
            }
        );
        assert_eq!(lease.network().to_string(), "10.0.2.15/24");
    }

    #[test]
    fn server_timers_are_used_when_consistent() {
        let mut options = slirp_options();
        options.renewal_time = Some(100);
        options.rebinding_time = Some(200);
        let Some(Reply::Ack(lease)) = parse_reply(&reply(MessageType::Ack, 1, options), 1, &MAC)
        else {
            panic!("not an ack");
        };
        assert_eq!(lease.renew_after, Duration::from_secs(100));
        assert_eq!(lease.rebind_after, Duration::from_secs(200));

        let mut options = slirp_options();
        options.renewal_time = Some(90000); // past the lease: ignored
        let Some(Reply::Ack(lease)) = parse_reply(&reply(MessageType::Ack, 1, options), 1, &MAC)
        else {
            panic!("not an ack");
        };
        assert_eq!(lease.renew_after, Duration::from_secs(43200));
    }

    #[test]
    fn a_missing_mask_falls_back_to_the_address_class() {
        let options = Options {
            lease_time: Some(60),
            ..Options::default()
        };
        let Some(Reply::Ack(lease)) = parse_reply(&reply(MessageType::Ack, 1, options), 1, &MAC)
        else {
            panic!("not an ack");
        };
        assert_eq!(lease.prefix_len, 8);
        assert_eq!(
            lease.server,
            Some(Ipv4Addr::new(10, 0, 2, 2)),
            "from siaddr"
        );
        assert_eq!(prefix_of(Ipv4Addr::new(255, 255, 240, 0)), 20);
        assert_eq!(classful(Ipv4Addr::new(172, 16, 0, 1)), 16);
        assert_eq!(classful(Ipv4Addr::new(192, 168, 0, 1)), 24);
    }

    #[test]
    fn replies_to_other_transactions_or_clients_are_ignored() {
        let bytes = reply(MessageType::Ack, 9, slirp_options());
        assert_eq!(parse_reply(&bytes, 10, &MAC), None, "other xid");
        assert_eq!(parse_reply(&bytes, 9, &[0; 6]), None, "other client");
        assert_eq!(parse_reply(b"garbage", 9, &MAC), None);
        let request = discover(9, &MAC).encode();
        assert_eq!(parse_reply(&request, 9, &MAC), None, "not a reply");
        let offer_without_server = reply(MessageType::Offer, 9, Options::default());
        assert_eq!(parse_reply(&offer_without_server, 9, &MAC), None);
        assert_eq!(
            parse_reply(&reply(MessageType::Nak, 9, Options::default()), 9, &MAC),
            Some(Reply::Nak)
        );
    }

    #[test]
    fn a_lease_moves_through_its_phases_at_t1_t2_and_expiry() {
        let lease = lease(1000, 500, 875);
        let at = |s| lease.phase(Duration::from_secs(s));
        assert_eq!(at(0), Phase::Bound);
        assert_eq!(at(499), Phase::Bound);
        assert_eq!(at(500), Phase::Renewing);
        assert_eq!(at(874), Phase::Renewing);
        assert_eq!(at(875), Phase::Rebinding);
        assert_eq!(at(999), Phase::Rebinding);
        assert_eq!(at(1000), Phase::Expired);
    }

    #[test]
    fn retransmits_wait_half_the_time_left_but_at_least_a_minute_and_never_past_the_phase() {
        let lease = lease(86400, 43200, 75600);
        let wait = |s| lease.retransmit_wait(Duration::from_secs(s)).as_secs();
        assert_eq!(wait(43200), 16200, "renewing: half of the time to T2");
        assert_eq!(wait(75500), 60, "at least a minute");
        assert_eq!(wait(75570), 30, "but not past T2");
        assert_eq!(wait(75600), 5400, "rebinding: half of the time to expiry");
        assert_eq!(wait(86390), 10, "not past expiry");
        assert_eq!(wait(86400), 0, "expired");
    }

    #[test]
    fn an_infinite_lease_is_never_due() {
        let lease = lease(u32::MAX, u64::from(u32::MAX / 2), u64::from(u32::MAX));
        assert_eq!(
            lease.phase(Duration::from_secs(10 * 365 * 86400)),
            Phase::Bound
        );
    }

    /// An IPv4 UDP datagram from 10.0.2.2:67 to 255.255.255.255:`port`.
    fn datagram(port: u16, payload: &[u8]) -> Vec<u8> {
        let total = (20 + 8 + payload.len()) as u16;
        let mut packet = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 2, 2];
        packet[2..4].copy_from_slice(&total.to_be_bytes());
        packet.extend_from_slice(&[255, 255, 255, 255]);
        packet.extend_from_slice(&67u16.to_be_bytes());
        packet.extend_from_slice(&port.to_be_bytes());
        packet.extend_from_slice(&(8 + payload.len() as u16).to_be_bytes());
        packet.extend_from_slice(&[0, 0]);
        packet.extend_from_slice(payload);
        packet.extend_from_slice(&[0; 6]); // Ethernet padding beyond the IP length
        packet
    }

    #[test]
    fn the_dhcp_message_is_taken_from_a_raw_ipv4_udp_datagram() {
        let offer = reply(MessageType::Offer, 5, slirp_options());
        let packet = datagram(68, &offer);
        assert_eq!(udp_payload(&packet), Some(offer.as_slice()));
        assert!(matches!(
            parse_reply(udp_payload(&packet).unwrap(), 5, &MAC),
            Some(Reply::Offer { .. })
        ));
        assert_eq!(udp_payload(&datagram(69, &offer)), None, "other port");
        let mut tcp = packet.clone();
        tcp[9] = 6;
        assert_eq!(udp_payload(&tcp), None, "not UDP");
        assert_eq!(udp_payload(&packet[..30]), None, "truncated");
        assert_eq!(udp_payload(&[]), None);
    }

    #[test]
    fn discovery_backs_off_from_one_second_doubling_to_a_cap() {
        let waits: Vec<u64> = (0..8).map(|a| backoff(a).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 32, 32]);
    }
}
