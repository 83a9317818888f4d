//! The kernel hardening policy at run time: the KSPP command-line parameters and
//! sysctls of `kernel-policy`, checked against the running kernel, and the sysctl
//! values a node boots with (the policy's, overridden by the machine config).
//!
//! The check reads only /proc, so it runs on every platform: on `process` it reports
//! on the host's kernel, which the agent does not own; on `metal` the agent has
//! applied the sysctls itself at boot. Where the kernel's configuration is known
//! (`/proc/config.gz`, or `/boot/config-<release>`, which the image ships), it gives
//! the compiler (clang-only parameters do not apply to a GCC kernel), and a parameter
//! that configuration makes moot (its `not_needed_if`, e.g. `vsyscall=none` without
//! vsyscall emulation) counts as met.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;

use kernel_policy::{KernelConfig, KernelVersion, Recommendations, Stance, Target};

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

/// Checks a running kernel (its release, command line, configuration when known, and
/// sysctls, read through `sysctl`) against `policy`.
pub fn check(
    policy: &Recommendations,
    release: &str,
    cmdline: &str,
    config: Option<&KernelConfig>,
    sysctl: impl Fn(&str) -> Option<String>,
) -> Vec<Finding> {
    let target = Target {
        version: KernelVersion::parse_release(release),
        compiler: config.and_then(|config| config.target().compiler),
    };
    let params = parse_cmdline(cmdline);
    let mut findings = Vec::new();
    for param in &policy.cmdline {
        let got = params
            .get(&param.param)
            .map(|value| value.clone().unwrap_or_default());
        let want = param.value.clone().unwrap_or_default();
        let moot = config.filter(|config| {
            !param.not_needed_if.is_empty() && param.not_needed_if.iter().all(|c| config.holds(c))
        });
        let status = if param.applies.not_applicable(&target).is_some() {
            Status::NotApplicable
        } else if matches!(param.stance, Stance::Exception { .. }) {
            Status::Exception
        } else if got.as_deref() == Some(want.as_str()) || moot.is_some() {
            Status::Met
        } else {
            Status::Unmet
        };
        let mut why = reason(&param.stance, &param.reason);
        if moot.is_some() && status == Status::Met {
            let conditions: Vec<String> = param
                .not_needed_if
                .iter()
                .map(ToString::to_string)
                .collect();
            why = format!("not needed: {} ({why})", conditions.join(", "));
        }
        findings.push(Finding {
            kind: Kind::Cmdline,
            name: param.param.clone(),
            want,
            got,
            status,
            reason: why,
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

/// The running kernel's configuration: `/proc/config.gz` (`CONFIG_IKCONFIG_PROC`),
/// else `/boot/config-<release>`; `None` when neither can be read.
pub fn running_config(release: &str) -> Option<KernelConfig> {
    let from_proc = || {
        let file = std::fs::File::open("/proc/config.gz").ok()?;
        let mut text = String::new();
        flate2::read::GzDecoder::new(file)
            .read_to_string(&mut text)
            .ok()?;
        Some(text)
    };
    let text =
        from_proc().or_else(|| std::fs::read_to_string(format!("/boot/config-{release}")).ok())?;
    KernelConfig::parse(&text).ok()
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
            None,
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
    fn a_parameter_the_running_config_makes_moot_is_met() {
        let policy = policy();
        let without_emulation =
            KernelConfig::parse("# CONFIG_X86_VSYSCALL_EMULATION is not set\nCONFIG_COMPAT=y\n")
                .unwrap();
        let findings = check(policy, "6.1.192", "", Some(&without_emulation), |_| None);
        let vsyscall = finding(&findings, "vsyscall");
        assert_eq!(
            (vsyscall.status, vsyscall.got.as_deref()),
            (Status::Met, None)
        );
        assert!(
            vsyscall
                .reason
                .starts_with("not needed: CONFIG_X86_VSYSCALL_EMULATION is not set"),
            "{}",
            vsyscall.reason
        );
        assert_eq!(finding(&findings, "vdso32").status, Status::Unmet);
        // Without the configuration nothing is moot, and clang-only parameters apply.
        let findings = check(policy, "6.1.192", "", None, |_| None);
        assert_eq!(finding(&findings, "vsyscall").status, Status::Unmet);
        assert_eq!(finding(&findings, "cfi").status, Status::Unmet);
        let gcc = KernelConfig::parse("CONFIG_CC_IS_GCC=y\n").unwrap();
        let findings = check(policy, "6.1.192", "", Some(&gcc), |_| None);
        assert_eq!(finding(&findings, "cfi").status, Status::NotApplicable);
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
