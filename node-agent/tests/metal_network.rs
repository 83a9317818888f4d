//! The metal platform's network module against a real kernel: each test makes a pair of
//! network namespaces joined by a veth pair, runs `configure` on a thread that has
//! entered the client namespace, and reads the result back with `ip -j`. The DHCP
//! server is a real dnsmasq in the other namespace.
//!
//! Needs root (network namespaces), iproute2 and dnsmasq (Debian's `dnsmasq-base`).
//! Addresses are from the documentation ranges and never leave the namespaces.

use std::fs::File;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use machine_config::{Interface, Network, Route};
use nix::sched::{CloneFlags, setns};
use node_agent::platform::metal::network::{Configured, NetworkError, configure};
use serde_json::Value;

/// A network namespace, deleted (with its links) on drop.
struct Namespace(String);

impl Namespace {
    fn new(tag: &str) -> Self {
        let name = format!("na-{}-{tag}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).status();
        ip(&["netns", "add", &name]);
        Self(name)
    }

    /// Runs `ip -n <ns> args` and returns its output; panics on failure.
    fn ip(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", self.0.as_str()];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// Parses `ip -n <ns> -j args`.
    fn ip_json(&self, args: &[&str]) -> Vec<Value> {
        let mut all = vec!["-j"];
        all.extend_from_slice(args);
        serde_json::from_str(&self.ip(&all)).expect("ip -j prints JSON")
    }

    /// Runs `f` on a thread inside this namespace with a current-thread runtime of its
    /// own, so that the sockets `configure` opens (and its DHCP tasks) live there.
    fn run<T: Send>(&self, f: impl AsyncFnOnce() -> T + Send) -> T {
        let path = format!("/run/netns/{}", self.0);
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let file = File::open(&path).expect("namespace file");
                    setns(&file, CloneFlags::CLONE_NEWNET).expect("setns");
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("runtime")
                        .block_on(f())
                })
                .join()
                .expect("namespace thread")
        })
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn ip(args: &[&str]) -> String {
    let output = Command::new("ip")
        .args(args)
        .output()
        .expect("iproute2 is installed");
    assert!(
        output.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8")
}

/// A client namespace holding `link`, joined to a server namespace holding `peer`
/// with 192.0.2.1/24 and 2001:db8:1::1/64.
fn pair(tag: &str, link: &str, peer: &str) -> (Namespace, Namespace) {
    let client = Namespace::new(&format!("{tag}c"));
    let server = Namespace::new(&format!("{tag}s"));
    client.ip(&[
        "link", "add", link, "type", "veth", "peer", "name", peer, "netns", &server.0,
    ]);
    server.ip(&["addr", "add", "192.0.2.1/24", "dev", peer]);
    server.ip(&["addr", "add", "2001:db8:1::1/64", "dev", peer, "nodad"]);
    server.ip(&["link", "set", peer, "up"]);
    (client, server)
}

fn interface(name: &str) -> Interface {
    Interface {
        name: name.to_owned(),
        addresses: Vec::new(),
        routes: Vec::new(),
        dhcp: false,
        mtu: None,
    }
}

fn route(network: &str, gateway: Option<&str>, metric: Option<u32>) -> Route {
    Route {
        network: network.parse().unwrap(),
        gateway: gateway.map(|g| g.parse().unwrap()),
        metric,
    }
}

/// `(local/prefixlen, dynamic)` of every global address on `dev`.
fn addresses(ns: &Namespace, dev: &str) -> Vec<(String, bool)> {
    let links = ns.ip_json(&["addr", "show", "dev", dev]);
    links[0]["addr_info"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["scope"] == "global")
        .map(|a| {
            (
                format!("{}/{}", a["local"].as_str().unwrap(), a["prefixlen"]),
                a["dynamic"].as_bool().unwrap_or(false),
            )
        })
        .collect()
}

/// `dst via gateway metric N proto P` of every route of the family.
fn routes(ns: &Namespace, family: &str) -> Vec<String> {
    ns.ip_json(&[family, "route", "show", "table", "main"])
        .iter()
        .map(|r| {
            format!(
                "{} via {} metric {} proto {}",
                r["dst"].as_str().unwrap(),
                r["gateway"].as_str().unwrap_or("-"),
                r["metric"].as_u64().unwrap_or(0),
                r["protocol"].as_str().unwrap_or("-"),
            )
        })
        .collect()
}

fn link_field(ns: &Namespace, dev: &str, field: &str) -> Value {
    ns.ip_json(&["link", "show", "dev", dev])[0][field].clone()
}

#[test]
fn static_addresses_routes_mtu_and_nameservers_are_applied_and_reapplying_changes_nothing() {
    let (client, _server) = pair("st", "st0", "st0p");
    let dir = tempfile::tempdir().unwrap();
    let resolv = dir.path().join("resolv.conf");
    let network = Network {
        interfaces: vec![Interface {
            addresses: vec![
                "192.0.2.10/24".parse().unwrap(),
                "2001:db8:1::10/64".parse().unwrap(),
            ],
            routes: vec![
                route("198.51.100.0/24", Some("192.0.2.1"), Some(50)),
                route("0.0.0.0/0", Some("192.0.2.1"), None),
                route("203.0.113.0/24", None, None),
                route("2001:db8:2::/48", Some("2001:db8:1::1"), Some(100)),
            ],
            mtu: Some(1400),
            ..interface("st0")
        }],
        nameservers: vec![
            "192.0.2.53".parse().unwrap(),
            "2001:db8::53".parse().unwrap(),
        ],
    };

    for round in ["first", "second"] {
        let configured = client
            .run(async || configure(&network, &resolv, Duration::from_secs(1)).await)
            .unwrap_or_else(|e| panic!("{round} configure: {e}"));
        assert!(configured.notes.is_empty(), "{:?}", configured.notes);
        assert_eq!(
            configured
                .addresses
                .iter()
                .map(|a| (a.interface.as_str(), a.address.to_string(), a.dhcp))
                .collect::<Vec<_>>(),
            [
                ("st0", "192.0.2.10/24".to_owned(), false),
                ("st0", "2001:db8:1::10/64".to_owned(), false)
            ]
        );
        let nameservers: Vec<IpAddr> = configured.nameservers.clone();
        assert_eq!(nameservers, network.nameservers);

        let mut found = addresses(&client, "st0");
        found.sort();
        assert_eq!(
            found,
            [
                ("192.0.2.10/24".to_owned(), false),
                ("2001:db8:1::10/64".to_owned(), false)
            ],
            "{round} round"
        );
        assert_eq!(link_field(&client, "st0", "mtu"), 1400);
        assert_eq!(link_field(&client, "st0", "operstate"), "UP");
        let lo_flags = link_field(&client, "lo", "flags");
        assert!(
            lo_flags.as_array().unwrap().contains(&"UP".into()),
            "lo is up: {lo_flags}"
        );

        let v4 = routes(&client, "-4");
        for expected in [
            "default via 192.0.2.1 metric 0 proto static",
            "198.51.100.0/24 via 192.0.2.1 metric 50 proto static",
            "203.0.113.0/24 via - metric 0 proto static",
        ] {
            assert_eq!(
                v4.iter().filter(|r| *r == expected).count(),
                1,
                "{round} round: {expected} once in {v4:#?}"
            );
        }
        let v6 = routes(&client, "-6");
        assert!(
            v6.contains(&"2001:db8:2::/48 via 2001:db8:1::1 metric 100 proto static".to_owned()),
            "{v6:#?}"
        );
        assert_eq!(
            std::fs::read_to_string(&resolv).unwrap(),
            "# Written by node-agent from the machine configuration or DHCP.\n\
             nameserver 192.0.2.53\nnameserver 2001:db8::53\n"
        );
    }
}

#[test]
fn failures_name_the_interface_and_the_step() {
    let (client, _server) = pair("er", "er0", "er0p");
    let dir = tempfile::tempdir().unwrap();
    let resolv = dir.path().join("resolv.conf");
    let apply = |network: Network| -> NetworkError {
        client
            .run(async || configure(&network, &resolv, Duration::from_secs(1)).await)
            .expect_err("configure must fail")
    };

    let missing = apply(Network {
        interfaces: vec![interface("nope0")],
        nameservers: vec![],
    });
    assert_eq!(missing.to_string(), "nope0: no such interface");

    let huge_mtu = apply(Network {
        interfaces: vec![Interface {
            mtu: Some(70000),
            ..interface("er0")
        }],
        nameservers: vec![],
    });
    assert_eq!(
        huge_mtu.to_string(),
        "er0: setting MTU 70000: Invalid argument"
    );

    let unreachable = apply(Network {
        interfaces: vec![Interface {
            routes: vec![route("198.51.100.0/24", Some("203.0.113.1"), None)],
            ..interface("er0")
        }],
        nameservers: vec![],
    });
    assert_eq!(
        unreachable.to_string(),
        "er0: adding route 198.51.100.0/24 via 203.0.113.1: Network is unreachable"
    );
    assert!(!resolv.exists(), "nothing written after a failure");
}

/// dnsmasq in `ns`, serving `range` (`first,last`) of 192.0.2.0/24 on `dev` with
/// T1 = `t1` seconds, keeping its leases and its log of every DHCP exchange in `dir`.
/// Killed on drop.
struct Dnsmasq(Child);

impl Dnsmasq {
    fn start(ns: &Namespace, dev: &str, dir: &Path, range: &str, t1: u32) -> Self {
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &ns.0,
                "dnsmasq",
                "--no-daemon",
                "--conf-file=/dev/null",
            ])
            .args([
                "--port=0",
                "--user=root",
                "--bind-interfaces",
                "--dhcp-authoritative",
            ])
            .arg(format!("--interface={dev}"))
            .arg(format!("--dhcp-range={range},255.255.255.0,2m"))
            .arg("--dhcp-option=option:dns-server,192.0.2.53,192.0.2.54")
            .arg(format!("--dhcp-option=option:T1,{t1}"))
            .arg(format!("--dhcp-leasefile={}", dir.join("leases").display()))
            .arg(format!(
                "--log-facility={}",
                dir.join("dnsmasq.log").display()
            ))
            .arg("--log-dhcp")
            .stdin(Stdio::null())
            .spawn()
            .expect("dnsmasq is installed (Debian: dnsmasq-base)");
        Self(child)
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn acks(log: &Path) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("DHCPACK("))
        .count()
}

#[test]
fn dhcp_on_the_first_ethernet_interface_configures_the_lease_and_renews_it() {
    let (client, server) = pair("dh", "eth0", "srv0");
    // Strict reverse-path filtering must not stop the offers, which come from an
    // address the client has no route to yet.
    ip(&[
        "netns",
        "exec",
        &client.0,
        "sysctl",
        "-qw",
        "net.ipv4.conf.all.rp_filter=1",
    ]);
    let dir = tempfile::tempdir().unwrap();
    let _dnsmasq = Dnsmasq::start(&server, "srv0", dir.path(), "192.0.2.50,192.0.2.60", 3);
    let resolv = dir.path().join("resolv.conf");
    let log: PathBuf = dir.path().join("dnsmasq.log");

    let (configured, renewed) = client.run(async || {
        let configured: Configured =
            configure(&Network::default(), &resolv, Duration::from_secs(20))
                .await
                .unwrap_or_else(|e| panic!("configure: {e}"));
        // T1 is 3 s: within 10 s the client has renewed at least once.
        let mut renewed = false;
        for _ in 0..100 {
            if acks(&log) >= 2 {
                renewed = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        (configured, renewed)
    });

    let [lease] = configured.addresses.as_slice() else {
        panic!("one address: {configured:?}");
    };
    assert_eq!(lease.interface, "eth0");
    assert!(lease.dhcp);
    let address = lease.address.to_string();
    assert!(
        address.starts_with("192.0.2.5") || address.starts_with("192.0.2.60"),
        "{address}"
    );
    assert!(address.ends_with("/24"), "{address}");
    assert!(
        configured.notes[0].starts_with(&format!("eth0: DHCP lease {address} from 192.0.2.1")),
        "{:?}",
        configured.notes
    );
    assert_eq!(
        addresses(&client, "eth0"),
        [(address, true)],
        "a dynamic address"
    );
    assert!(
        routes(&client, "-4").contains(&"default via 192.0.2.1 metric 1024 proto dhcp".to_owned()),
        "{:#?}",
        routes(&client, "-4")
    );
    assert_eq!(
        std::fs::read_to_string(&resolv).unwrap(),
        "# Written by node-agent from the machine configuration or DHCP.\n\
         nameserver 192.0.2.53\nnameserver 192.0.2.54\n"
    );
    assert!(
        renewed,
        "no renewal at T1: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
}

#[test]
fn a_refused_renewal_removes_the_lease_and_the_client_starts_over() {
    let (client, server) = pair("nk", "eth0", "srv0");
    let first_dir = tempfile::tempdir().unwrap();
    let second_dir = tempfile::tempdir().unwrap();
    let resolv = first_dir.path().join("resolv.conf");
    let network = Network {
        interfaces: vec![Interface {
            dhcp: true,
            ..interface("eth0")
        }],
        nameservers: vec![],
    };
    let mut dnsmasq = Some(Dnsmasq::start(
        &server,
        "srv0",
        first_dir.path(),
        "192.0.2.50,192.0.2.60",
        3,
    ));

    let (first, second) = client.run(async || {
        let configured = configure(&network, &resolv, Duration::from_secs(20))
            .await
            .unwrap_or_else(|e| panic!("configure: {e}"));
        let first = addresses(&client, "eth0");
        // A server that knows nothing of the lease: it refuses the renewal at T1.
        drop(dnsmasq.take());
        let _replacement = Dnsmasq::start(
            &server,
            "srv0",
            second_dir.path(),
            "192.0.2.70,192.0.2.80",
            30,
        );
        let mut second = first.clone();
        for _ in 0..150 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            second = addresses(&client, "eth0");
            if second != first && !second.is_empty() {
                break;
            }
        }
        drop(configured);
        (first, second)
    });

    let [(first, true)] = first.as_slice() else {
        panic!("one leased address first: {first:?}");
    };
    assert!(
        first.starts_with("192.0.2.5") || first.starts_with("192.0.2.60"),
        "{first}"
    );
    let [(second, true)] = second.as_slice() else {
        panic!("only the new lease once the old one was refused: {second:?}");
    };
    assert!(
        second.starts_with("192.0.2.7") || second.starts_with("192.0.2.80"),
        "{second}"
    );
    let log = std::fs::read_to_string(second_dir.path().join("dnsmasq.log")).unwrap();
    assert!(log.contains("DHCPNAK("), "the renewal was refused: {log}");
    assert!(
        routes(&client, "-4").contains(&"default via 192.0.2.1 metric 1024 proto dhcp".to_owned()),
        "{:#?}",
        routes(&client, "-4")
    );
}
