//! rtnetlink requests on a synchronous socket: list links, set MTU and link state, add
//! and remove addresses and routes.
//!
//! Every change is sent with `NLM_F_ACK` and its acknowledgement is read back, so a
//! refusal surfaces as the kernel's errno. The kernel answers route requests before
//! `send` returns, so these calls do not block for long even inside async tasks.

use std::io;
use std::net::IpAddr;

use ipnet::IpNet;
use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_REPLACE, NLM_F_REQUEST, NetlinkHeader,
    NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage, CacheInfo};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkLayerType, LinkMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

/// One network interface as the kernel lists it.
#[derive(Debug, Clone)]
pub(super) struct Link {
    /// Interface index, which every other request names the link by.
    pub index: u32,
    /// Kernel name (`eth0`).
    pub name: String,
    /// Hardware address of an Ethernet link (the DHCP client identifier).
    pub mac: Option<[u8; 6]>,
}

/// Who put a route there, recorded in the kernel as the route's protocol.
#[derive(Debug, Clone, Copy)]
pub(super) enum Origin {
    /// From the machine configuration.
    Static,
    /// From a DHCP lease.
    Dhcp,
}

/// A route to add or remove through one interface.
#[derive(Debug, Clone, Copy)]
pub(super) struct RouteSpec {
    /// Destination network.
    pub network: IpNet,
    /// Next hop; none for an on-link route.
    pub gateway: Option<IpAddr>,
    /// Route metric (priority); the kernel's default when absent.
    pub metric: Option<u32>,
    /// Static or DHCP.
    pub origin: Origin,
}

/// An rtnetlink socket and the sequence number of its last request.
pub(super) struct Netlink {
    socket: Socket,
    sequence: u32,
}

impl Netlink {
    /// Opens a socket on the route family of the calling thread's network namespace.
    pub fn open() -> io::Result<Self> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        Ok(Self {
            socket,
            sequence: 0,
        })
    }

    /// Every link, sorted by name.
    pub fn links(&mut self) -> io::Result<Vec<Link>> {
        let replies = self.request(
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            NLM_F_DUMP,
        )?;
        let mut links: Vec<Link> = replies
            .into_iter()
            .filter_map(|reply| match reply {
                RouteNetlinkMessage::NewLink(link) => Some(link_of(link)),
                _ => None,
            })
            .collect();
        links.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(links)
    }

    /// Sets the link's MTU.
    pub fn set_mtu(&mut self, index: u32, mtu: u32) -> io::Result<()> {
        let mut link = LinkMessage::default();
        link.header.index = index;
        link.attributes.push(LinkAttribute::Mtu(mtu));
        self.change(RouteNetlinkMessage::NewLink(link), 0)
    }

    /// Sets the link administratively up.
    pub fn set_up(&mut self, index: u32) -> io::Result<()> {
        let mut link = LinkMessage::default();
        link.header.index = index;
        link.header.flags = LinkFlags::Up;
        link.header.change_mask = LinkFlags::Up;
        self.change(RouteNetlinkMessage::NewLink(link), 0)
    }

    /// Adds `address` to the link, or updates it when it is already there (so a
    /// renewed lease refreshes its lifetime). `lifetime` is the valid and preferred
    /// lifetime in seconds; none means forever.
    pub fn add_address(
        &mut self,
        index: u32,
        address: IpNet,
        lifetime: Option<u32>,
    ) -> io::Result<()> {
        let mut message = address_message(index, address);
        if let Some(seconds) = lifetime {
            let mut info = CacheInfo::default();
            info.ifa_valid = seconds;
            info.ifa_preferred = seconds;
            message.attributes.push(AddressAttribute::CacheInfo(info));
        }
        self.change(
            RouteNetlinkMessage::NewAddress(message),
            NLM_F_CREATE | NLM_F_REPLACE,
        )
    }

    /// Removes `address` from the link.
    pub fn del_address(&mut self, index: u32, address: IpNet) -> io::Result<()> {
        let message = address_message(index, address);
        self.change(RouteNetlinkMessage::DelAddress(message), 0)
    }

    /// Adds a route in the main table. A route that is already there with the same
    /// next hop is refused by the kernel with `EEXIST`, which the caller may accept.
    pub fn add_route(&mut self, index: u32, route: &RouteSpec) -> io::Result<()> {
        let message = route_message(index, route);
        self.change(RouteNetlinkMessage::NewRoute(message), NLM_F_CREATE)
    }

    /// Removes a route from the main table.
    pub fn del_route(&mut self, index: u32, route: &RouteSpec) -> io::Result<()> {
        let message = route_message(index, route);
        self.change(RouteNetlinkMessage::DelRoute(message), 0)
    }

    fn change(&mut self, message: RouteNetlinkMessage, flags: u16) -> io::Result<()> {
        self.request(message, flags).map(drop)
    }

    /// Sends one request with `NLM_F_ACK` and collects the replies up to the
    /// acknowledgement (or the end of a dump); a negative acknowledgement is the error.
    fn request(
        &mut self,
        message: RouteNetlinkMessage,
        flags: u16,
    ) -> io::Result<Vec<RouteNetlinkMessage>> {
        self.sequence = self.sequence.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        header.sequence_number = self.sequence;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(message));
        packet.finalize();
        let mut buffer = vec![0; packet.buffer_len()];
        packet.serialize(&mut buffer);
        self.socket.send(&buffer, 0)?;

        let mut replies = Vec::new();
        loop {
            let (data, _) = self.socket.recv_from_full()?;
            let mut offset = 0;
            while offset < data.len() {
                let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&data[offset..])
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                let length = reply.header.length as usize;
                if length == 0 {
                    break;
                }
                offset += length.next_multiple_of(4);
                if reply.header.sequence_number != self.sequence {
                    // A late reply to an earlier request (such as a dump's trailing ack).
                    continue;
                }
                match reply.payload {
                    NetlinkPayload::Error(error) => {
                        return match error.code {
                            None => Ok(replies),
                            Some(_) => Err(error.to_io()),
                        };
                    }
                    NetlinkPayload::Done(_) => return Ok(replies),
                    NetlinkPayload::InnerMessage(inner) => replies.push(inner),
                    _ => {}
                }
            }
        }
    }
}

fn link_of(message: LinkMessage) -> Link {
    let mut name = String::new();
    let mut mac = None;
    for attribute in message.attributes {
        match attribute {
            LinkAttribute::IfName(n) => name = n,
            LinkAttribute::Address(bytes) => mac = <[u8; 6]>::try_from(bytes.as_slice()).ok(),
            _ => {}
        }
    }
    let ethernet = message.header.link_layer_type == LinkLayerType::Ether
        && !message.header.flags.contains(LinkFlags::Loopback);
    Link {
        index: message.header.index,
        name,
        mac: mac.filter(|m| ethernet && m.iter().any(|&b| b != 0)),
    }
}

fn address_message(index: u32, address: IpNet) -> AddressMessage {
    let mut message = AddressMessage::default();
    message.header.index = index;
    message.header.prefix_len = address.prefix_len();
    message.header.family = family(address.addr());
    message
        .attributes
        .push(AddressAttribute::Local(address.addr()));
    message
        .attributes
        .push(AddressAttribute::Address(address.addr()));
    if let IpNet::V4(v4) = address
        && v4.prefix_len() < 31
    {
        message
            .attributes
            .push(AddressAttribute::Broadcast(v4.broadcast()));
    }
    message
}

fn route_message(index: u32, route: &RouteSpec) -> RouteMessage {
    let mut message = RouteMessage::default();
    message.header.address_family = family(route.network.addr());
    message.header.destination_prefix_length = route.network.prefix_len();
    message.header.table = RouteHeader::RT_TABLE_MAIN;
    message.header.protocol = match route.origin {
        Origin::Static => RouteProtocol::Static,
        Origin::Dhcp => RouteProtocol::Dhcp,
    };
    message.header.scope = match (route.network, route.gateway) {
        (IpNet::V4(_), None) => RouteScope::Link,
        _ => RouteScope::Universe,
    };
    message.header.kind = RouteType::Unicast;
    if route.network.prefix_len() > 0 {
        message
            .attributes
            .push(RouteAttribute::Destination(route_address(
                route.network.network(),
            )));
    }
    if let Some(gateway) = route.gateway {
        message
            .attributes
            .push(RouteAttribute::Gateway(route_address(gateway)));
    }
    message.attributes.push(RouteAttribute::Oif(index));
    if let Some(metric) = route.metric {
        message.attributes.push(RouteAttribute::Priority(metric));
    }
    message
}

fn family(address: IpAddr) -> AddressFamily {
    match address {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

fn route_address(address: IpAddr) -> RouteAddress {
    match address {
        IpAddr::V4(v4) => RouteAddress::Inet(v4),
        IpAddr::V6(v6) => RouteAddress::Inet6(v6),
    }
}
