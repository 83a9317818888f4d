//! The network of a machine where the agent is PID 1: loopback, the configuration's
//! interfaces (MTU, link state, static addresses and routes), DHCPv4 leases kept
//! renewed in the background, and resolv.conf.
//!
//! A node has no userland network tools, so links, addresses and routes are set over
//! rtnetlink ([`netlink`]) and [`dhcp`] is a DHCPv4 client of its own. Everything is
//! idempotent: applying the same section again changes nothing and fails on nothing.
//!
//! Everything happens in the network namespace of the calling thread, which is what
//! lets the tests run it in a namespace of their own.

mod dhcp;
mod netlink;

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ipnet::IpNet;
use machine_config::{Interface, Network};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config_store::{StoreError, write_atomic};
use dhcp::{Client, Lease};
use netlink::{Link, Netlink, Origin, RouteSpec};

/// How long a named interface may take to appear (its driver may still be probing
/// when PID 1 starts).
const LINK_WAIT: Duration = Duration::from_secs(5);
/// Metric of the default route from a lease, so that a static default route (metric 0
/// unless configured) wins over it.
const DHCP_ROUTE_METRIC: u32 = 1024;
/// How long a background client waits before trying again after a failed step.
const RETRY_AFTER: Duration = Duration::from_secs(5);

/// Why the network section could not be applied. Messages name the interface and the
/// step: `eth1: adding 10.5.0.2/24: File exists`.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// rtnetlink failed outside any one interface's step.
    #[error("rtnetlink: {step}: {}", describe(.source))]
    Netlink {
        /// What was being done (`listing links`).
        step: &'static str,
        /// The kernel's answer.
        #[source]
        source: io::Error,
    },
    /// A step on one interface failed.
    #[error("{interface}: {step}: {}", describe(.source))]
    Step {
        /// The interface.
        interface: String,
        /// What was being done (`adding 10.5.0.2/24`).
        step: String,
        /// The kernel's answer.
        #[source]
        source: io::Error,
    },
    /// A configured interface does not exist.
    #[error("{0}: no such interface")]
    NoSuchInterface(String),
    /// No interface is configured and there is no Ethernet interface to run DHCP on.
    #[error("no interface is configured and no ethernet interface was found for DHCP")]
    NoEthernet,
    /// resolv.conf could not be written.
    #[error("writing resolv.conf: {0}")]
    ResolvConf(#[source] StoreError),
}

/// An error's text without Rust's `(os error N)` suffix, as a person reads errno.
fn describe(error: &io::Error) -> String {
    match error.raw_os_error() {
        Some(code) => nix::errno::Errno::from_raw(code).desc().to_owned(),
        None => error.to_string(),
    }
}

/// An address this module put on an interface, for the boot log and the tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedAddress {
    /// The interface.
    pub interface: String,
    /// The address with its prefix.
    pub address: IpNet,
    /// True when it came from a DHCP lease.
    pub dhcp: bool,
}

/// What [`configure`] did, and the DHCP clients it left running.
///
/// The clients keep the leases renewed for as long as this value lives: dropping it
/// aborts them (leases then simply run out).
#[derive(Debug)]
pub struct Configured {
    /// Every address applied, static ones first, then the first lease of each DHCP
    /// interface that got one in time.
    pub addresses: Vec<AppliedAddress>,
    /// The resolvers written to resolv.conf: the configuration's, else the leases'.
    pub nameservers: Vec<IpAddr>,
    /// One line each for the boot log (leases obtained, leases still awaited).
    pub notes: Vec<String>,
    /// The DHCP clients, one per DHCP interface.
    clients: Vec<JoinHandle<()>>,
}

impl Drop for Configured {
    fn drop(&mut self) {
        for client in &self.clients {
            client.abort();
        }
    }
}

/// Applies the network section: brings up `lo`, then for each interface sets its MTU,
/// sets it up, adds its static addresses and routes, and starts its DHCP client. An
/// empty interface list means DHCP on the first Ethernet interface by name.
///
/// Waits up to `dhcp_wait` for each DHCP interface's first lease; an interface without
/// a lease by then is reported in the notes and its client keeps trying in the
/// background, so a late DHCP server still configures the node. resolv.conf at
/// `resolv_conf` holds the configured nameservers, or else the leases' DNS servers,
/// and is rewritten when a lease brings new ones.
///
/// Applying the same section again is harmless: addresses are replaced in place and a
/// route that is already there is accepted. Drop the previous [`Configured`] when
/// re-applying, so that one client at a time serves each DHCP interface.
pub async fn configure(
    network: &Network,
    resolv_conf: &Path,
    dhcp_wait: Duration,
) -> Result<Configured, NetworkError> {
    let mut netlink = Netlink::open().map_err(netlink_error("opening the socket"))?;
    let lo = link(&mut netlink, "lo").await?;
    netlink
        .set_up(lo.index)
        .map_err(step("lo", "setting the link up"))?;

    let interfaces = match network.interfaces.as_slice() {
        [] => {
            let link = wait_for_link(&mut netlink, |link| link.mac.is_some())
                .await?
                .ok_or(NetworkError::NoEthernet)?;
            vec![Interface {
                name: link.name,
                addresses: Vec::new(),
                routes: Vec::new(),
                dhcp: true,
                mtu: None,
            }]
        }
        interfaces => interfaces.to_vec(),
    };

    let resolver = Arc::new(Resolver {
        path: resolv_conf.to_path_buf(),
        configured: network.nameservers.clone(),
        leased: Mutex::default(),
    });
    let mut configured = Configured {
        addresses: Vec::new(),
        nameservers: Vec::new(),
        notes: Vec::new(),
        clients: Vec::new(),
    };
    // Every link up with its addresses, then the static routes (whose gateways must be
    // on-link by then), then the DHCP clients.
    let mut links = Vec::new();
    for interface in &interfaces {
        links.push(apply_link(&mut netlink, interface, &mut configured).await?);
    }
    for (interface, link) in interfaces.iter().zip(&links) {
        apply_routes(&mut netlink, interface, link)?;
    }
    let mut first_leases = Vec::new();
    for (interface, link) in interfaces.iter().zip(links) {
        if interface.dhcp {
            let name = interface.name.clone();
            let mac = link.mac.ok_or_else(|| NetworkError::Step {
                interface: name.clone(),
                step: "starting DHCP".to_owned(),
                source: io::Error::other("not an ethernet interface"),
            })?;
            let client = Client::new(&name, link.index, mac)
                .map_err(step(&name, "opening the DHCP socket"))?;
            let (first, first_lease) = oneshot::channel();
            let task = run_client(client, name.clone(), link.index, resolver.clone(), first);
            configured.clients.push(tokio::spawn(task));
            first_leases.push((name, first_lease));
        }
    }

    let deadline = Instant::now() + dhcp_wait;
    for (name, first_lease) in first_leases {
        match tokio::time::timeout_at(deadline, first_lease).await {
            Ok(Ok(Ok(lease))) => {
                configured.notes.push(format!(
                    "{name}: DHCP lease {} from {} for {}s",
                    lease.network(),
                    lease.server.map_or("?".to_owned(), |s| s.to_string()),
                    lease.lease_secs
                ));
                configured.addresses.push(AppliedAddress {
                    interface: name,
                    address: IpNet::V4(lease.network()),
                    dhcp: true,
                });
            }
            Ok(Ok(Err(error))) => return Err(error),
            Ok(Err(_)) => configured
                .notes
                .push(format!("{name}: the DHCP client stopped")),
            Err(_) => configured.notes.push(format!(
                "{name}: no DHCP lease within {}s; still trying",
                dhcp_wait.as_secs()
            )),
        }
    }
    configured.nameservers = resolver.write().map_err(NetworkError::ResolvConf)?;
    Ok(configured)
}

/// The link called `name`, waiting briefly for it to appear.
async fn link(netlink: &mut Netlink, name: &str) -> Result<Link, NetworkError> {
    wait_for_link(netlink, |link| link.name == name)
        .await?
        .ok_or_else(|| NetworkError::NoSuchInterface(name.to_owned()))
}

/// The first link by name that `pick` takes, waiting up to [`LINK_WAIT`] for one.
async fn wait_for_link(
    netlink: &mut Netlink,
    pick: impl Fn(&Link) -> bool,
) -> Result<Option<Link>, NetworkError> {
    let deadline = Instant::now() + LINK_WAIT;
    loop {
        let links = netlink.links().map_err(netlink_error("listing links"))?;
        if let Some(link) = links.into_iter().find(&pick) {
            return Ok(Some(link));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// MTU, link up and static addresses of one interface.
async fn apply_link(
    netlink: &mut Netlink,
    interface: &Interface,
    configured: &mut Configured,
) -> Result<Link, NetworkError> {
    let name = interface.name.as_str();
    let link = link(netlink, name).await?;
    if let Some(mtu) = interface.mtu {
        netlink
            .set_mtu(link.index, mtu)
            .map_err(step(name, &format!("setting MTU {mtu}")))?;
    }
    netlink
        .set_up(link.index)
        .map_err(step(name, "setting the link up"))?;
    for &address in &interface.addresses {
        netlink
            .add_address(link.index, address, None)
            .map_err(step(name, &format!("adding {address}")))?;
        configured.addresses.push(AppliedAddress {
            interface: name.to_owned(),
            address,
            dhcp: false,
        });
    }
    Ok(link)
}

/// Static routes of one interface.
fn apply_routes(
    netlink: &mut Netlink,
    interface: &Interface,
    link: &Link,
) -> Result<(), NetworkError> {
    for route in &interface.routes {
        let spec = RouteSpec {
            network: route.network,
            gateway: route.gateway,
            metric: route.metric,
            origin: Origin::Static,
        };
        add_route(netlink, link.index, &spec)
            .map_err(step(&interface.name, &describe_route(&spec)))?;
    }
    Ok(())
}

fn describe_route(route: &RouteSpec) -> String {
    match route.gateway {
        Some(gateway) => format!("adding route {} via {gateway}", route.network),
        None => format!("adding route {}", route.network),
    }
}

/// Adds a route; one that is already there is fine.
fn add_route(netlink: &mut Netlink, index: u32, route: &RouteSpec) -> io::Result<()> {
    match netlink.add_route(index, route) {
        Err(e) if e.raw_os_error() == Some(nix::libc::EEXIST) => Ok(()),
        other => other,
    }
}

fn netlink_error(step: &'static str) -> impl FnOnce(io::Error) -> NetworkError {
    move |source| NetworkError::Netlink { step, source }
}

fn step<'a>(interface: &'a str, step: &'a str) -> impl FnOnce(io::Error) -> NetworkError + 'a {
    move |source| NetworkError::Step {
        interface: interface.to_owned(),
        step: step.to_owned(),
        source,
    }
}

/// One interface's DHCP client, for as long as the node runs: obtain a lease, apply
/// it, extend it at T1/T2, and when it is lost remove it and start over. The first
/// lease (or the failure to apply it) goes to `first`.
async fn run_client(
    client: Client,
    name: String,
    index: u32,
    resolver: Arc<Resolver>,
    first: oneshot::Sender<Result<Lease, NetworkError>>,
) {
    let mut first = Some(first);
    let mut current: Option<Lease> = None;
    loop {
        let lease = match client.obtain().await {
            Ok(lease) => lease,
            Err(error) => {
                tracing::warn!(interface = %name, "DHCP: {}", describe(&error));
                tokio::time::sleep(RETRY_AFTER).await;
                continue;
            }
        };
        let mut granted = Instant::now();
        let mut lease = lease;
        loop {
            let applied = apply_lease(&name, index, &lease, current.as_ref(), &resolver);
            match (applied, first.take()) {
                (Ok(()), Some(first)) => {
                    let _ = first.send(Ok(lease.clone()));
                }
                (Ok(()), None) => {}
                (Err(error), Some(first)) => match first.send(Err(error)) {
                    // configure fails with the error, and drops this client.
                    Ok(()) => return,
                    // configure stopped waiting: keep the lease, try again at T1.
                    Err(Err(error)) => tracing::warn!("{error}"),
                    Err(Ok(_)) => {}
                },
                (Err(error), None) => tracing::warn!("{error}"),
            }
            if current.as_ref() != Some(&lease) {
                tracing::info!(interface = %name, address = %lease.network(), "DHCP lease");
            }
            current = Some(lease.clone());
            match client.extend(&lease, granted).await {
                Ok(Some(extended)) => {
                    lease = extended;
                    granted = Instant::now();
                }
                Ok(None) => break,
                Err(error) => {
                    tracing::warn!(interface = %name, "DHCP renewal: {}", describe(&error));
                    tokio::time::sleep(RETRY_AFTER).await;
                    if granted.elapsed() >= lease.duration() {
                        break;
                    }
                }
            }
        }
        tracing::warn!(interface = %name, address = %lease.network(), "DHCP lease lost");
        if let Err(error) = remove_lease(&name, index, &lease, &resolver) {
            tracing::warn!("{error}");
        }
        current = None;
    }
}

/// Puts a lease on the interface: its address (with the lease's lifetime, so that the
/// kernel drops it if renewal fails silently), its default route, and its DNS servers.
/// `previous` is the lease it replaces, whose address goes if it changed.
fn apply_lease(
    name: &str,
    index: u32,
    lease: &Lease,
    previous: Option<&Lease>,
    resolver: &Resolver,
) -> Result<(), NetworkError> {
    let mut netlink = Netlink::open().map_err(netlink_error("opening the socket"))?;
    if let Some(previous) = previous
        && previous.network() != lease.network()
    {
        remove_lease_with(&mut netlink, name, index, previous)?;
    }
    let address = IpNet::V4(lease.network());
    netlink
        .add_address(index, address, Some(lease.lease_secs))
        .map_err(step(name, &format!("adding {address}")))?;
    if let Some(route) = default_route(lease) {
        add_route(&mut netlink, index, &route).map_err(step(name, &describe_route(&route)))?;
    }
    resolver
        .update(name, &lease.dns)
        .map_err(NetworkError::ResolvConf)
}

fn remove_lease(
    name: &str,
    index: u32,
    lease: &Lease,
    resolver: &Resolver,
) -> Result<(), NetworkError> {
    let mut netlink = Netlink::open().map_err(netlink_error("opening the socket"))?;
    remove_lease_with(&mut netlink, name, index, lease)?;
    resolver.update(name, &[]).map_err(NetworkError::ResolvConf)
}

/// Removes a lease's route and address; either may already be gone.
fn remove_lease_with(
    netlink: &mut Netlink,
    name: &str,
    index: u32,
    lease: &Lease,
) -> Result<(), NetworkError> {
    let gone = |e: &io::Error| {
        matches!(
            e.raw_os_error(),
            Some(nix::libc::ESRCH | nix::libc::EADDRNOTAVAIL | nix::libc::ENODEV)
        )
    };
    if let Some(route) = default_route(lease) {
        match netlink.del_route(index, &route) {
            Err(e) if !gone(&e) => return Err(step(name, "removing the DHCP route")(e)),
            _ => {}
        }
    }
    let address = IpNet::V4(lease.network());
    match netlink.del_address(index, address) {
        Err(e) if !gone(&e) => Err(step(name, &format!("removing {address}"))(e)),
        _ => Ok(()),
    }
}

fn default_route(lease: &Lease) -> Option<RouteSpec> {
    lease.routers.first().map(|&router| RouteSpec {
        network: IpNet::V4(ipnet::Ipv4Net::default()),
        gateway: Some(IpAddr::V4(router)),
        metric: Some(DHCP_ROUTE_METRIC),
        origin: Origin::Dhcp,
    })
}

/// resolv.conf and what goes into it: the configuration's nameservers win; without
/// them, the DNS servers of every current lease, by interface name.
struct Resolver {
    path: PathBuf,
    configured: Vec<IpAddr>,
    leased: Mutex<BTreeMap<String, Vec<Ipv4Addr>>>,
}

impl Resolver {
    /// Records an interface's leased DNS servers and rewrites the file if they matter.
    fn update(&self, interface: &str, dns: &[Ipv4Addr]) -> Result<(), StoreError> {
        let mut leased = self.leased.lock().unwrap_or_else(|e| e.into_inner());
        let before = leased.insert(interface.to_owned(), dns.to_vec());
        if before.as_deref().unwrap_or_default() != dns && self.configured.is_empty() {
            self.write_with(&leased)?;
        }
        Ok(())
    }

    /// Writes the file atomically; returns the nameservers written.
    fn write(&self) -> Result<Vec<IpAddr>, StoreError> {
        let leased = self.leased.lock().unwrap_or_else(|e| e.into_inner());
        self.write_with(&leased)
    }

    /// Writes the file while the caller holds the lock, so that two writers never
    /// share the temporary file.
    fn write_with(
        &self,
        leased: &BTreeMap<String, Vec<Ipv4Addr>>,
    ) -> Result<Vec<IpAddr>, StoreError> {
        let nameservers = if self.configured.is_empty() {
            let mut all: Vec<IpAddr> = Vec::new();
            for server in leased.values().flatten().map(|&s| IpAddr::V4(s)) {
                if !all.contains(&server) {
                    all.push(server);
                }
            }
            all
        } else {
            self.configured.clone()
        };
        write_atomic(&self.path, render(&nameservers).as_bytes(), 0o644)?;
        Ok(nameservers)
    }
}

fn render(nameservers: &[IpAddr]) -> String {
    let mut text =
        String::from("# Written by node-agent from the machine configuration or DHCP.\n");
    for server in nameservers {
        text.push_str(&format!("nameserver {server}\n"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolver(dir: &Path, configured: &[&str]) -> Resolver {
        Resolver {
            path: dir.join("resolv.conf"),
            configured: configured.iter().map(|s| s.parse().unwrap()).collect(),
            leased: Mutex::default(),
        }
    }

    #[test]
    fn configured_nameservers_win_over_leased_ones() {
        let dir = tempfile::tempdir().unwrap();
        let resolver = resolver(dir.path(), &["192.0.2.53", "2001:db8::53"]);
        resolver
            .update("eth0", &[Ipv4Addr::new(10, 0, 2, 3)])
            .unwrap();
        resolver.write().unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("resolv.conf")).unwrap(),
            "# Written by node-agent from the machine configuration or DHCP.\n\
             nameserver 192.0.2.53\nnameserver 2001:db8::53\n"
        );
    }

    #[test]
    fn leased_nameservers_are_written_when_they_change_and_deduplicated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("resolv.conf");
        let resolver = resolver(dir.path(), &[]);
        resolver
            .update("eth0", &[Ipv4Addr::new(10, 0, 2, 3)])
            .unwrap();
        resolver
            .update(
                "eth1",
                &[Ipv4Addr::new(10, 0, 2, 3), Ipv4Addr::new(10, 0, 3, 3)],
            )
            .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.ends_with("nameserver 10.0.2.3\nnameserver 10.0.3.3\n"),
            "{text}"
        );
        resolver.update("eth0", &[]).unwrap();
        resolver.update("eth1", &[]).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("nameserver"), "{text}");
    }

    #[test]
    fn configure_can_run_in_a_spawned_task() {
        fn is_send<T: Send>(_: &T) {}
        let network = Network::default();
        let future = configure(&network, Path::new("/nonexistent"), Duration::ZERO);
        is_send(&future);
    }

    #[test]
    fn errors_name_the_interface_and_the_step_in_plain_words() {
        let error =
            step("eth1", "adding 10.5.0.2/24")(io::Error::from_raw_os_error(nix::libc::EEXIST));
        assert_eq!(error.to_string(), "eth1: adding 10.5.0.2/24: File exists");
    }
}
