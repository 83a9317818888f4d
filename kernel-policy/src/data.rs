//! The recommendations: KSPP's kconfig options, command-line parameters and sysctls,
//! each with our stance, read from `kernel/kspp.toml`.
//!
//! The file's own header documents its fields. [`Recommendations::parse`] reads it
//! strictly (unknown fields are errors) and checks the rules serde cannot express: a
//! stance reason exactly for exceptions, valid option names, versions and conditions,
//! no entry twice.

use std::collections::HashSet;
use std::fmt;

use serde::Deserialize;

use crate::config::{Condition, KernelConfig, Value, is_option_name};
use crate::error::Error;
use crate::target::{Compiler, KernelVersion, Target};

/// The data file shipped in the repository, embedded at build time.
pub const EMBEDDED: &str = include_str!("../../kernel/kspp.toml");

/// Everything in the data file.
#[derive(Debug, Clone)]
pub struct Recommendations {
    /// Kconfig options, in file order.
    pub kconfig: Vec<KconfigRule>,
    /// Kernel command-line parameters to set.
    pub cmdline: Vec<CmdlineParam>,
    /// Command-line parameters that must not appear.
    pub cmdline_forbidden: Vec<ForbiddenParam>,
    /// Sysctls.
    pub sysctls: Vec<Sysctl>,
}

/// Our position on one recommendation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stance {
    /// Our kernel (or node) must meet it.
    Require,
    /// We knowingly do not meet it, for the given reason.
    Exception {
        /// Why a Kubernetes node needs something else.
        reason: String,
    },
}

/// The kernels a recommendation exists for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applicability {
    /// The first release that has it.
    pub since: Option<KernelVersion>,
    /// The first release that no longer has it.
    pub until: Option<KernelVersion>,
    /// The only compiler that can build it.
    pub compiler: Option<Compiler>,
}

impl Applicability {
    /// Why the recommendation does not apply to `target`, or `None` if it does. An
    /// unknown version or compiler never makes a recommendation inapplicable.
    pub fn not_applicable(&self, target: &Target) -> Option<String> {
        if let (Some(since), Some(version)) = (self.since, target.version)
            && version < since
        {
            return Some(format!("added in {since}; this kernel is {version}"));
        }
        if let (Some(until), Some(version)) = (self.until, target.version)
            && version >= until
        {
            return Some(format!("removed by {until}; this kernel is {version}"));
        }
        match (self.compiler, target.compiler) {
            (Some(only), Some(actual)) if only != actual => {
                Some(format!("{only} only; this kernel is built with {actual}"))
            }
            _ => None,
        }
    }
}

/// A topic that groups related recommendations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "String")]
pub enum Category {
    /// What happens on BUG, oops and panic.
    CrashHandling,
    /// Write-xor-execute for kernel and module memory.
    MemoryPermissions,
    /// Stack overflow and stack content protection.
    Stack,
    /// Slab and page allocator hardening.
    Heap,
    /// Zeroing memory on allocation, free or function entry.
    MemoryInit,
    /// Detection of use-after-free and similar bugs.
    MemorySafety,
    /// Bounds checks on copies and array accesses.
    Bounds,
    /// Consistency checks of kernel data structures.
    DataIntegrity,
    /// Interfaces removed because attackers use them.
    AttackSurface,
    /// Kernel addresses and memory contents kept from users.
    InfoLeak,
    /// Linux Security Modules.
    Lsm,
    /// Keeping root from changing the running kernel.
    KernelIntegrity,
    /// Loadable module policy.
    Modules,
    /// Confining device DMA with the IOMMU.
    Dma,
    /// CPU side-channel mitigations.
    SideChannels,
    /// Control-flow integrity.
    Cfi,
    /// Kernel address-space layout randomisation.
    Kaslr,
    /// Entropy sources.
    Entropy,
    /// Other measures that make exploits harder.
    ExploitMitigation,
    /// Protections the kernel gives user programs.
    Userspace,
    /// How the kernel is built.
    Build,
    /// Network stack defences.
    Network,
}

impl Category {
    const NAMES: [(Self, &'static str); 22] = [
        (Self::CrashHandling, "crash-handling"),
        (Self::MemoryPermissions, "memory-permissions"),
        (Self::Stack, "stack"),
        (Self::Heap, "heap"),
        (Self::MemoryInit, "memory-init"),
        (Self::MemorySafety, "memory-safety"),
        (Self::Bounds, "bounds"),
        (Self::DataIntegrity, "data-integrity"),
        (Self::AttackSurface, "attack-surface"),
        (Self::InfoLeak, "info-leak"),
        (Self::Lsm, "lsm"),
        (Self::KernelIntegrity, "kernel-integrity"),
        (Self::Modules, "modules"),
        (Self::Dma, "dma"),
        (Self::SideChannels, "side-channels"),
        (Self::Cfi, "cfi"),
        (Self::Kaslr, "kaslr"),
        (Self::Entropy, "entropy"),
        (Self::ExploitMitigation, "exploit-mitigation"),
        (Self::Userspace, "userspace"),
        (Self::Build, "build"),
        (Self::Network, "network"),
    ];

    /// The name used in the data file and in reports.
    pub fn name(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(category, _)| *category == self)
            .map(|(_, name)| *name)
            .expect("every category has a name")
    }
}

impl TryFrom<String> for Category {
    type Error = String;

    fn try_from(name: String) -> Result<Self, String> {
        Self::NAMES
            .iter()
            .find(|(_, known)| *known == name)
            .map(|(category, _)| *category)
            .ok_or_else(|| format!("unknown category {name:?}"))
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One recommended kconfig setting.
#[derive(Debug, Clone)]
pub struct KconfigRule {
    /// The option, with its `CONFIG_` prefix.
    pub option: String,
    /// The value KSPP recommends.
    pub expected: Value,
    /// The topic.
    pub category: Category,
    /// Why KSPP recommends it.
    pub reason: String,
    /// Whether we require it.
    pub stance: Stance,
    /// Other names of the option in other kernel versions.
    pub aliases: Vec<String>,
    /// Sets of conditions that also meet the recommendation; one whole set suffices.
    pub alternatives: Vec<Vec<Condition>>,
    /// Which kernels have the option.
    pub applies: Applicability,
    /// Anything else worth knowing.
    pub note: Option<String>,
}

impl KconfigRule {
    /// The option's names: its own first, then its aliases.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.option.as_str()).chain(self.aliases.iter().map(String::as_str))
    }
}

/// One recommended kernel command-line parameter.
#[derive(Debug, Clone)]
pub struct CmdlineParam {
    /// The parameter name, e.g. `init_on_alloc` or `slab_nomerge`.
    pub param: String,
    /// Its value, or `None` for a flag.
    pub value: Option<String>,
    /// Why KSPP recommends it.
    pub reason: String,
    /// Whether we set it.
    pub stance: Stance,
    /// Which kernels have it.
    pub applies: Applicability,
    /// If all of these hold in the kernel config, the parameter changes nothing.
    pub not_needed_if: Vec<Condition>,
    /// Anything else worth knowing.
    pub note: Option<String>,
}

impl CmdlineParam {
    /// The parameter as written on the command line: `name` or `name=value`.
    pub fn as_arg(&self) -> String {
        match &self.value {
            Some(value) => format!("{}={value}", self.param),
            None => self.param.clone(),
        }
    }
}

/// A command-line parameter that weakens the kernel and must not be present.
#[derive(Debug, Clone)]
pub struct ForbiddenParam {
    /// The parameter as written, `name` or `name=value`.
    pub param: String,
    /// What it turns off.
    pub reason: String,
}

/// One recommended sysctl.
#[derive(Debug, Clone)]
pub struct Sysctl {
    /// The dotted name, e.g. `kernel.kptr_restrict`.
    pub name: String,
    /// The value KSPP recommends.
    pub value: String,
    /// Why KSPP recommends it.
    pub reason: String,
    /// Whether we require it.
    pub stance: Stance,
    /// For an exception: the value we set instead, if any.
    pub ours: Option<String>,
    /// Which kernels have it.
    pub applies: Applicability,
    /// Anything else worth knowing.
    pub note: Option<String>,
}

impl Sysctl {
    /// The value a node should have: ours for an exception that names one, else KSPP's.
    /// `None` for an exception that leaves the kernel default.
    pub fn wanted(&self) -> Option<&str> {
        match self.stance {
            Stance::Require => Some(&self.value),
            Stance::Exception { .. } => self.ours.as_deref(),
        }
    }

    /// The file under `/proc/sys` that holds it.
    pub fn proc_path(&self) -> String {
        format!("/proc/sys/{}", self.name.replace('.', "/"))
    }
}

impl Recommendations {
    /// Parses and validates a data file.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let file: RawFile = toml::from_str(text)?;
        let recommendations = Self {
            kconfig: convert_all(file.kconfig)?,
            cmdline: convert_all(file.cmdline)?,
            cmdline_forbidden: convert_all(file.cmdline_forbidden)?,
            sysctls: convert_all(file.sysctl)?,
        };
        recommendations.check_unique()?;
        Ok(recommendations)
    }

    /// The data file embedded in this build ([`EMBEDDED`]).
    pub fn embedded() -> Result<Self, Error> {
        Self::parse(EMBEDDED)
    }

    fn check_unique(&self) -> Result<(), Error> {
        let keys = self
            .kconfig
            .iter()
            .flat_map(|rule| rule.names().map(|name| format!("kconfig {name}")))
            .chain(
                self.cmdline
                    .iter()
                    .map(|p| format!("cmdline {}", p.as_arg())),
            )
            .chain(
                self.cmdline_forbidden
                    .iter()
                    .map(|p| format!("cmdline_forbidden {}", p.param)),
            )
            .chain(self.sysctls.iter().map(|s| format!("sysctl {}", s.name)));
        let mut seen = HashSet::new();
        for key in keys {
            if !seen.insert(key.clone()) {
                return Err(Error::InvalidEntry {
                    entry: key,
                    reason: "appears more than once".into(),
                });
            }
        }
        Ok(())
    }

    /// The command-line parameters a kernel built from `config` should boot with: the
    /// required ones that apply to it and are not made moot by its configuration.
    pub fn cmdline_for(&self, config: &KernelConfig) -> Vec<&CmdlineParam> {
        let target = config.target();
        self.cmdline
            .iter()
            .filter(|p| p.stance == Stance::Require)
            .filter(|p| p.applies.not_applicable(&target).is_none())
            .filter(|p| {
                p.not_needed_if.is_empty() || !p.not_needed_if.iter().all(|c| config.holds(c))
            })
            .collect()
    }
}

// --- the file format --------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    kconfig: Vec<RawKconfig>,
    #[serde(default)]
    cmdline: Vec<RawCmdline>,
    #[serde(default)]
    cmdline_forbidden: Vec<RawForbidden>,
    #[serde(default)]
    sysctl: Vec<RawSysctl>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
enum RawStance {
    Require,
    Exception,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKconfig {
    option: String,
    value: String,
    category: Category,
    reason: String,
    stance: RawStance,
    stance_reason: Option<String>,
    #[serde(default)]
    aliases: Vec<String>,
    #[serde(default)]
    alternatives: Vec<Vec<String>>,
    since: Option<String>,
    until: Option<String>,
    compiler: Option<String>,
    note: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCmdline {
    param: String,
    value: Option<String>,
    reason: String,
    stance: RawStance,
    stance_reason: Option<String>,
    #[serde(default)]
    not_needed_if: Vec<String>,
    since: Option<String>,
    until: Option<String>,
    compiler: Option<String>,
    note: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawForbidden {
    param: String,
    reason: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSysctl {
    name: String,
    value: String,
    reason: String,
    stance: RawStance,
    stance_reason: Option<String>,
    ours: Option<String>,
    since: Option<String>,
    until: Option<String>,
    note: Option<String>,
}

/// A raw entry that knows its name and how to become its validated form.
trait Entry {
    type Valid;
    fn label(&self) -> String;
    fn convert(self) -> Result<Self::Valid, String>;
}

fn convert_all<E: Entry>(entries: Vec<E>) -> Result<Vec<E::Valid>, Error> {
    entries
        .into_iter()
        .map(|entry| {
            let label = entry.label();
            entry.convert().map_err(|reason| Error::InvalidEntry {
                entry: label,
                reason,
            })
        })
        .collect()
}

fn stance(kind: RawStance, reason: Option<String>) -> Result<Stance, String> {
    match (kind, reason) {
        (RawStance::Require, None) => Ok(Stance::Require),
        (RawStance::Require, Some(_)) => Err("stance_reason is only for exceptions".into()),
        (RawStance::Exception, Some(reason)) if !reason.trim().is_empty() => {
            Ok(Stance::Exception { reason })
        }
        (RawStance::Exception, _) => Err("an exception needs a stance_reason".into()),
    }
}

fn applicability(
    since: Option<String>,
    until: Option<String>,
    compiler: Option<String>,
) -> Result<Applicability, String> {
    let version = |text: Option<String>| {
        text.map(|t| t.parse::<KernelVersion>())
            .transpose()
            .map_err(|e| e.to_string())
    };
    let applies = Applicability {
        since: version(since)?,
        until: version(until)?,
        compiler: compiler
            .map(|c| c.parse::<Compiler>())
            .transpose()
            .map_err(|e| e.to_string())?,
    };
    if let (Some(since), Some(until)) = (applies.since, applies.until)
        && since >= until
    {
        return Err(format!("since ({since}) must be before until ({until})"));
    }
    Ok(applies)
}

fn conditions(texts: Vec<String>) -> Result<Vec<Condition>, String> {
    texts
        .iter()
        .map(|text| text.parse::<Condition>().map_err(|e| e.to_string()))
        .collect()
}

fn non_empty(field: &str, text: &str) -> Result<(), String> {
    if text.trim().is_empty() {
        Err(format!("{field} must not be empty"))
    } else {
        Ok(())
    }
}

impl Entry for RawKconfig {
    type Valid = KconfigRule;

    fn label(&self) -> String {
        format!("kconfig {}", self.option)
    }

    fn convert(self) -> Result<KconfigRule, String> {
        if let Some(bad) = std::iter::once(&self.option)
            .chain(&self.aliases)
            .find(|name| !is_option_name(name))
        {
            return Err(format!("{bad:?} is not a CONFIG_ option name"));
        }
        non_empty("reason", &self.reason)?;
        let alternatives = self
            .alternatives
            .into_iter()
            .map(|set| {
                if set.is_empty() {
                    Err("an alternative needs at least one condition".to_owned())
                } else {
                    conditions(set)
                }
            })
            .collect::<Result<_, _>>()?;
        Ok(KconfigRule {
            expected: Value::parse(&self.value),
            stance: stance(self.stance, self.stance_reason)?,
            applies: applicability(self.since, self.until, self.compiler)?,
            option: self.option,
            category: self.category,
            reason: self.reason,
            aliases: self.aliases,
            alternatives,
            note: self.note,
        })
    }
}

impl Entry for RawCmdline {
    type Valid = CmdlineParam;

    fn label(&self) -> String {
        match &self.value {
            Some(value) => format!("cmdline {}={value}", self.param),
            None => format!("cmdline {}", self.param),
        }
    }

    fn convert(self) -> Result<CmdlineParam, String> {
        non_empty("param", &self.param)?;
        non_empty("reason", &self.reason)?;
        if self.param.contains(['=', ' ']) {
            return Err("param is the name only; put the value in `value`".into());
        }
        Ok(CmdlineParam {
            stance: stance(self.stance, self.stance_reason)?,
            applies: applicability(self.since, self.until, self.compiler)?,
            not_needed_if: conditions(self.not_needed_if)?,
            param: self.param,
            value: self.value,
            reason: self.reason,
            note: self.note,
        })
    }
}

impl Entry for RawForbidden {
    type Valid = ForbiddenParam;

    fn label(&self) -> String {
        format!("cmdline_forbidden {}", self.param)
    }

    fn convert(self) -> Result<ForbiddenParam, String> {
        non_empty("param", &self.param)?;
        non_empty("reason", &self.reason)?;
        Ok(ForbiddenParam {
            param: self.param,
            reason: self.reason,
        })
    }
}

impl Entry for RawSysctl {
    type Valid = Sysctl;

    fn label(&self) -> String {
        format!("sysctl {}", self.name)
    }

    fn convert(self) -> Result<Sysctl, String> {
        non_empty("reason", &self.reason)?;
        if self.name.contains('/') || !self.name.contains('.') {
            return Err("name must be dotted, like kernel.kptr_restrict".into());
        }
        let stance = stance(self.stance, self.stance_reason)?;
        if self.ours.is_some() && stance == Stance::Require {
            return Err("ours is only for exceptions".into());
        }
        Ok(Sysctl {
            stance,
            applies: applicability(self.since, self.until, None)?,
            name: self.name,
            value: self.value,
            reason: self.reason,
            ours: self.ours,
            note: self.note,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kconfig_entry(extra: &str) -> String {
        format!(
            "[[kconfig]]\noption = \"CONFIG_A\"\nvalue = \"y\"\ncategory = \"heap\"\n\
             reason = \"r\"\n{extra}\n"
        )
    }

    fn error_of(text: &str) -> String {
        Recommendations::parse(text).unwrap_err().to_string()
    }

    #[test]
    fn the_embedded_file_is_valid_and_complete() {
        let data = Recommendations::embedded().unwrap();
        assert_eq!(
            data.kconfig.len(),
            131,
            "KSPP lists 131 x86_64 kconfig entries"
        );
        assert_eq!(data.sysctls.len(), 21);
        let exceptions: Vec<_> = data
            .kconfig
            .iter()
            .filter(|rule| matches!(rule.stance, Stance::Exception { .. }))
            .map(|rule| rule.option.as_str())
            .collect();
        assert_eq!(
            exceptions,
            [
                "CONFIG_LOCK_DOWN_KERNEL_FORCE_CONFIDENTIALITY",
                "CONFIG_WERROR",
                "CONFIG_RANDSTRUCT_FULL",
                "CONFIG_INET_DIAG",
                "CONFIG_MODULES"
            ]
        );
    }

    #[test]
    fn stances_need_reasons_exactly_for_exceptions() {
        let ok = kconfig_entry("stance = \"exception\"\nstance_reason = \"needed\"");
        let data = Recommendations::parse(&ok).unwrap();
        assert_eq!(
            data.kconfig[0].stance,
            Stance::Exception {
                reason: "needed".into()
            }
        );
        assert_eq!(
            error_of(&kconfig_entry("stance = \"exception\"")),
            "recommendations data: kconfig CONFIG_A: an exception needs a stance_reason"
        );
        assert_eq!(
            error_of(&kconfig_entry(
                "stance = \"require\"\nstance_reason = \"x\""
            )),
            "recommendations data: kconfig CONFIG_A: stance_reason is only for exceptions"
        );
    }

    #[test]
    fn schema_mistakes_are_refused() {
        let unknown_field = kconfig_entry("stance = \"require\"\nstnce = \"x\"");
        assert!(error_of(&unknown_field).contains("unknown field `stnce`"));
        let bad_category = kconfig_entry("stance = \"require\"").replace("heap", "heaps");
        assert!(error_of(&bad_category).contains("unknown category \"heaps\""));
        let bad_version = kconfig_entry("stance = \"require\"\nsince = \"6\"");
        assert!(error_of(&bad_version).contains("invalid kernel version \"6\""));
        let bad_range = kconfig_entry("stance = \"require\"\nsince = \"6.6\"\nuntil = \"6.1\"");
        assert!(error_of(&bad_range).contains("since (6.6) must be before until (6.1)"));
        let bad_alternative =
            kconfig_entry("stance = \"require\"\nalternatives = [[\"DEBUG_LIST=y\"]]");
        assert!(error_of(&bad_alternative).contains("invalid condition \"DEBUG_LIST=y\""));
        let twice = format!(
            "{}{}",
            kconfig_entry("stance = \"require\""),
            kconfig_entry("stance = \"require\"")
        );
        assert_eq!(
            error_of(&twice),
            "recommendations data: kconfig CONFIG_A: appears more than once"
        );
    }

    #[test]
    fn applicability_follows_version_and_compiler() {
        let applies = Applicability {
            since: Some(KernelVersion::new(6, 6, 0)),
            until: Some(KernelVersion::new(6, 9, 0)),
            compiler: Some(Compiler::Clang),
        };
        let target = |version: Option<(u32, u32)>, compiler| Target {
            version: version.map(|(a, b)| KernelVersion::new(a, b, 0)),
            compiler,
        };
        assert_eq!(
            applies.not_applicable(&target(Some((6, 1)), None)).unwrap(),
            "added in 6.6; this kernel is 6.1"
        );
        assert_eq!(
            applies.not_applicable(&target(Some((6, 9)), None)).unwrap(),
            "removed by 6.9; this kernel is 6.9"
        );
        assert_eq!(
            applies
                .not_applicable(&target(Some((6, 6)), Some(Compiler::Gcc)))
                .unwrap(),
            "clang only; this kernel is built with gcc"
        );
        assert_eq!(
            applies.not_applicable(&target(Some((6, 8)), Some(Compiler::Clang))),
            None
        );
        assert_eq!(applies.not_applicable(&Target::default()), None);
    }

    #[test]
    fn command_line_leaves_out_exceptions_moot_and_inapplicable_parameters() {
        let data = Recommendations::embedded().unwrap();
        let config = KernelConfig::parse(
            "# Linux/x86 6.1.192 Kernel Configuration\nCONFIG_CC_IS_GCC=y\n\
             # CONFIG_X86_VSYSCALL_EMULATION is not set\nCONFIG_COMPAT=y\n",
        )
        .unwrap();
        let args: Vec<_> = data
            .cmdline_for(&config)
            .iter()
            .map(|p| p.as_arg())
            .collect();
        assert_eq!(
            args,
            [
                "hardened_usercopy=1",
                "init_on_alloc=1",
                "init_on_free=1",
                "randomize_kstack_offset=on",
                "page_alloc.shuffle=1",
                "slab_nomerge",
                "pti=on",
                "iommu.passthrough=0",
                "iommu.strict=1",
                "mitigations=auto,nosmt",
                "kfence.sample_interval=100",
                "vdso32=0",
            ]
        );
    }

    #[test]
    fn sysctls_know_their_wanted_value_and_path() {
        let data = Recommendations::embedded().unwrap();
        let find = |name: &str| data.sysctls.iter().find(|s| s.name == name).unwrap();
        assert_eq!(find("kernel.kptr_restrict").wanted(), Some("2"));
        assert_eq!(find("kernel.yama.ptrace_scope").wanted(), Some("2"));
        assert_eq!(find("kernel.modules_disabled").wanted(), None);
        assert_eq!(
            find("kernel.yama.ptrace_scope").proc_path(),
            "/proc/sys/kernel/yama/ptrace_scope"
        );
    }
}
