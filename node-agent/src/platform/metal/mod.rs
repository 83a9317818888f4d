//! The `metal` platform: the agent as PID 1 of a machine (a VM or bare metal), where
//! nothing else sets the machine up.
//!
//! - [`network`]: links, addresses, routes, DHCP and resolv.conf over rtnetlink.

pub mod network;
