//! Read-only views of the running system, from /proc and /dev/kmsg: what the Memory,
//! Processes, Mounts and Dmesg RPCs report. Parsing is separated from reading so it is
//! unit-tested on sample text.

pub mod kmsg;
pub mod meminfo;
pub mod mounts;
pub mod processes;
