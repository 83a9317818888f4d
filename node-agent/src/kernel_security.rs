//! The kernel hardening policy at run time: the KSPP command-line parameters and
//! sysctls of `kernel-policy`, checked against the running kernel, and the sysctl
//! values a node boots with (the policy's, overridden by the machine config).
//!
//! The check reads only /proc, so it runs on every platform: on `process` it reports
//! on the host's kernel, which the agent does not own; on `metal` the agent has
//! applied the sysctls itself at boot.

use std::collections::{BTreeMap, HashMap};

use kernel_policy::{KernelVersion, Recommendations, Stance, Target};

/// What a check looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A parameter the command line should carry.
    Cmdline,
    /// A parameter the command line must not carry.
    CmdlineForbidden,
    /// A sysctl.
    Sysctl,
}

impl Kind {
    /// The name used in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Cmdline => "cmdline",
            Kind::CmdlineForbidden => "cmdline-forbidden",
            Kind::Sysctl => "sysctl",
        }
    }
}

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// The kernel is as the policy wants.
    Met,
    /// It is not.
    Unmet,
    /// The policy makes a documented exception here.
    Exception,
    /// This kernel does not have the setting.
    NotApplicable,
}

impl Status {
    /// The name used in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Met => "met",
            Status::Unmet => "unmet",
            Status::Exception => "exception",
            Status::NotApplicable => "n/a",
        }
    }
}

/// One check of the running kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// What was checked.
    pub kind: Kind,
    /// Parameter or sysctl name.
    pub name: String,
    /// The value the policy wants (empty for a flag or a forbidden parameter).
    pub want: String,
    /// What the kernel has; `None` when absent.
    pub got: Option<String>,
    /// The outcome.
    pub status: Status,
    /// Why the policy asks for it, or why we make an exception.
    pub reason: String,
}

/// The policy built into this agent, parsed once.
pub fn policy() -> &'static Recommendations {
    static POLICY: std::sync::OnceLock<Recommendations> = std::sync::OnceLock::new();
    POLICY.get_or_init(|| {
        // The embedded file is constant, and kernel-policy's and image-builder's tests
        // parse and validate it, so a failure here cannot reach a release.
        Recommendations::embedded().expect("the built-in kernel policy is valid")
    })
}

/// Splits a kernel command line into `(name, value)` pairs; double quotes group
/// spaces, and a later occurrence of a name wins.
pub fn parse_cmdline(cmdline: &str) -> HashMap<String, Option<String>> {
    let mut params = HashMap::new();
    let mut word = String::new();
    let mut quoted = false;
    for c in cmdline.chars().chain(std::iter::once(' ')) {
        match c {
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => {
                if !word.is_empty() {
                    let (name, value) = match word.split_once('=') {
                        Some((name, value)) => (name.to_owned(), Some(value.to_owned())),
                        None => (word.clone(), None),
                    };
                    params.insert(name, value);
                    word.clear();
                }
            }
            c => word.push(c),
        }
    }
    params
}

/// Checks a running kernel (its release, command line and sysctls, read through
/// `sysctl`) against `policy`.
pub fn check(
    policy: &Recommendations,
    release: &str,
    cmdline: &str,
    sysctl: impl Fn(&str) -> Option<String>,
) -> Vec<Finding> {
    let target = Target {
        version: KernelVersion::parse_release(release),
        compiler: None,
    };
    let params = parse_cmdline(cmdline);
    let mut findings = Vec::new();
    for param in &policy.cmdline {
        let got = params
            .get(&param.param)
            .map(|value| value.clone().unwrap_or_default());
        let want = param.value.clone().unwrap_or_default();
        let status = if param.applies.not_applicable(&target).is_some() {
            Status::NotApplicable
        } else if matches!(param.stance, Stance::Exception { .. }) {
            Status::Exception
        } else if got.as_deref() == Some(want.as_str()) {
            Status::Met
        } else {
            Status::Unmet
        };
        findings.push(Finding {
            kind: Kind::Cmdline,
            name: param.param.clone(),
            want,
            got,
            status,
            reason: reason(&param.stance, &param.reason),
        });
    }
    for forbidden in &policy.cmdline_forbidden {
        let (name, value) = match forbidden.param.split_once('=') {
            Some((name, value)) => (name, Some(value.to_owned())),
            None => (forbidden.param.as_str(), None),
        };
        let present = params
            .get(name)
            .is_some_and(|got| value.is_none() || *got == value);
        findings.push(Finding {
            kind: Kind::CmdlineForbidden,
            name: forbidden.param.clone(),
            want: String::new(),
            got: present.then(|| forbidden.param.clone()),
            status: if present { Status::Unmet } else { Status::Met },
            reason: forbidden.reason.clone(),
        });
    }
    for setting in &policy.sysctls {
        let got = sysctl(&setting.name);
        let status = match (setting.wanted(), &got) {
            _ if setting.applies.not_applicable(&target).is_some() => Status::NotApplicable,
            (_, None) => Status::NotApplicable,
            (None, Some(_)) => Status::Exception,
            (Some(want), Some(got)) if want == got => Status::Met,
            (Some(_), Some(_)) if matches!(setting.stance, Stance::Exception { .. }) => {
                Status::Exception
            }
            (Some(_), Some(_)) => Status::Unmet,
        };
        findings.push(Finding {
            kind: Kind::Sysctl,
            name: setting.name.clone(),
            want: setting.wanted().unwrap_or_default().to_owned(),
            got,
            status,
            reason: reason(&setting.stance, &setting.reason),
        });
    }
    findings
}

fn reason(stance: &Stance, why: &str) -> String {
    match stance {
        Stance::Require => why.to_owned(),
        Stance::Exception { reason } => format!("exception: {reason}"),
    }
}

/// The sysctls a node boots with: the policy's wanted values, then the machine
/// config's, which win (a weaker value there is logged).
pub fn boot_sysctls(
    policy: &Recommendations,
    configured: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut values: BTreeMap<String, String> = policy
        .sysctls
        .iter()
        .filter_map(|s| Some((s.name.clone(), s.wanted()?.to_owned())))
        .collect();
    for (name, value) in configured {
        if let Some(hardened) = values.get(name).filter(|hardened| *hardened != value) {
            tracing::warn!(%name, %value, %hardened, "machine config overrides a hardened sysctl");
        }
        values.insert(name.clone(), value.clone());
    }
    values
}

/// Reads a sysctl from /proc/sys; `None` when this kernel has no such setting.
pub fn read_sysctl(name: &str) -> Option<String> {
    let path = format!("/proc/sys/{}", name.replace('.', "/"));
    std::fs::read_to_string(path)
        .ok()
        .map(|value| value.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding<'a>(findings: &'a [Finding], name: &str) -> &'a Finding {
        findings
            .iter()
            .find(|f| f.name == name)
            .unwrap_or_else(|| panic!("{name} not checked"))
    }

    #[test]
    fn command_lines_parse_with_quotes_and_last_wins() {
        let params =
            parse_cmdline(r#"root=/dev/vda quiet init_on_alloc=0 msg="a b" init_on_alloc=1"#);
        assert_eq!(params["init_on_alloc"].as_deref(), Some("1"));
        assert_eq!(params["quiet"], None);
        assert_eq!(params["msg"].as_deref(), Some("a b"));
    }

    #[test]
    fn parameters_and_sysctls_are_judged_against_the_policy() {
        let policy = policy();
        let sysctls: HashMap<&str, &str> = [
            ("kernel.kptr_restrict", "2"),
            ("kernel.dmesg_restrict", "0"),
        ]
        .into();
        let findings = check(
            policy,
            "6.1.0-56-amd64",
            "init_on_alloc=1 slab_nomerge nokaslr",
            |name| sysctls.get(name).map(|v| (*v).to_owned()),
        );
        assert_eq!(finding(&findings, "init_on_alloc").status, Status::Met);
        assert_eq!(finding(&findings, "slab_nomerge").status, Status::Met);
        assert_eq!(finding(&findings, "pti").status, Status::Unmet);
        assert_eq!(finding(&findings, "nokaslr").status, Status::Unmet);
        assert_eq!(finding(&findings, "nopti").status, Status::Met);
        assert_eq!(
            finding(&findings, "kernel.kptr_restrict").status,
            Status::Met
        );
        let dmesg = finding(&findings, "kernel.dmesg_restrict");
        assert_eq!(
            (dmesg.status, dmesg.got.as_deref()),
            (Status::Unmet, Some("0"))
        );
        assert_eq!(
            finding(&findings, "kernel.modules_disabled").status,
            Status::NotApplicable
        );
    }

    #[test]
    fn the_machine_config_wins_over_hardened_sysctls() {
        let policy = policy();
        let configured = [
            ("kernel.kptr_restrict".to_owned(), "1".to_owned()),
            ("vm.swappiness".to_owned(), "10".to_owned()),
        ]
        .into();
        let values = boot_sysctls(policy, &configured);
        assert_eq!(values["kernel.kptr_restrict"], "1");
        assert_eq!(values["vm.swappiness"], "10");
        assert_eq!(values["kernel.dmesg_restrict"], "1");
        assert!(
            !values.contains_key("kernel.modules_disabled"),
            "an exception leaves the default"
        );
    }
}
