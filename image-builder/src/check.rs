//! Checking a kernel config against the kconfig recommendations, and the score.
//!
//! Each recommendation is decided in this order:
//! 1. **not applicable** if the option does not exist for this kernel's version or
//!    compiler ([`Applicability`](crate::data::Applicability));
//! 2. **met** if the option (under its own name or an alias) has the expected value, or
//!    if every condition of one alternative holds;
//! 3. otherwise **exception** if our stance is an exception, else **not met**.
//!
//! An option the config does not mention counts as not set, and `m` meets neither `y`
//! nor `is not set`.

use crate::config::{Condition, KernelConfig, Value};
use crate::data::{KconfigRule, Recommendations, Stance};
use crate::target::Target;

/// The outcome for one recommendation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// The config has the recommended value, or an accepted alternative.
    Met,
    /// The config has another value and we require this one.
    NotMet,
    /// The config has another value, as our stance allows.
    Exception,
    /// The option does not exist for this kernel.
    NotApplicable,
}

impl Status {
    /// The word used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Met => "met",
            Self::NotMet => "not met",
            Self::Exception => "exception",
            Self::NotApplicable => "n/a",
        }
    }
}

/// How a met recommendation was met.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    /// The option itself, under this name (its own or an alias).
    Option(String),
    /// All of these alternative conditions hold.
    Alternative(Vec<Condition>),
}

/// The result for one recommendation.
#[derive(Debug, Clone)]
pub struct RuleResult<'a> {
    /// The recommendation.
    pub rule: &'a KconfigRule,
    /// The outcome.
    pub status: Status,
    /// The name the option was found under (the rule's own name if absent).
    pub found_as: &'a str,
    /// The effective value found (`is not set` if absent).
    pub found: Value,
    /// For a met recommendation: how.
    pub via: Option<Via>,
    /// For an inapplicable one: why.
    pub not_applicable: Option<String>,
}

impl RuleResult<'_> {
    /// The one-line explanation a report shows under the row, if any: the alternative
    /// that met it, the exception's reason, why it does not apply, or why KSPP wants it.
    pub fn detail(&self) -> Option<String> {
        match self.status {
            Status::Met => match &self.via {
                Some(Via::Alternative(conditions)) => Some(format!(
                    "met by alternative: {}",
                    conditions
                        .iter()
                        .map(Condition::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
                Some(Via::Option(name)) if name != &self.rule.option => {
                    Some(format!("found as {name}"))
                }
                _ => None,
            },
            Status::Exception => match &self.rule.stance {
                Stance::Exception { reason } => Some(format!("exception: {reason}")),
                Stance::Require => None,
            },
            Status::NotApplicable => self.not_applicable.clone(),
            Status::NotMet => Some(format!("why: {}", self.rule.reason)),
        }
    }
}

/// The counts behind the score line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Score {
    /// All recommendations.
    pub total: usize,
    /// Those that apply to this kernel.
    pub applicable: usize,
    /// Those met.
    pub met: usize,
    /// Those not met, as our stance allows.
    pub exceptions: usize,
    /// Those not met that we require.
    pub not_met: usize,
    /// Those that do not apply.
    pub not_applicable: usize,
}

/// A checked config: one result per recommendation, in data order.
#[derive(Debug, Clone)]
pub struct Report<'a> {
    /// The kernel the config is for, as far as it says.
    pub target: Target,
    /// The results.
    pub results: Vec<RuleResult<'a>>,
}

impl Report<'_> {
    /// Counts the results.
    pub fn score(&self) -> Score {
        let count = |status| self.results.iter().filter(|r| r.status == status).count();
        let not_applicable = count(Status::NotApplicable);
        Score {
            total: self.results.len(),
            applicable: self.results.len() - not_applicable,
            met: count(Status::Met),
            exceptions: count(Status::Exception),
            not_met: count(Status::NotMet),
            not_applicable,
        }
    }
}

/// Checks `config` against every kconfig recommendation.
pub fn check<'a>(recommendations: &'a Recommendations, config: &KernelConfig) -> Report<'a> {
    let target = config.target();
    Report {
        target,
        results: recommendations
            .kconfig
            .iter()
            .map(|rule| check_rule(rule, config, &target))
            .collect(),
    }
}

/// Checks one recommendation.
pub fn check_rule<'a>(
    rule: &'a KconfigRule,
    config: &KernelConfig,
    target: &Target,
) -> RuleResult<'a> {
    // The first name under which the option is set decides; if none is, it is not set.
    let found_as = rule
        .names()
        .find(|name| config.value_of(name) != &Value::NotSet)
        .unwrap_or(&rule.option);
    let found = config.value_of(found_as).clone();
    let mut result = RuleResult {
        rule,
        status: Status::Met,
        found_as,
        found,
        via: None,
        not_applicable: rule.applies.not_applicable(target),
    };
    if result.not_applicable.is_some() {
        result.status = Status::NotApplicable;
    } else if result.found == rule.expected {
        result.via = Some(Via::Option(found_as.to_owned()));
    } else if let Some(alternative) = rule
        .alternatives
        .iter()
        .find(|conditions| conditions.iter().all(|c| config.holds(c)))
    {
        result.via = Some(Via::Alternative(alternative.clone()));
    } else {
        result.status = match rule.stance {
            Stance::Require => Status::NotMet,
            Stance::Exception { .. } => Status::Exception,
        };
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    const DATA: &str = r#"
[[kconfig]]
option = "CONFIG_BUG"
value = "y"
category = "crash-handling"
reason = "stop on bugs"
stance = "require"

[[kconfig]]
option = "CONFIG_DEVMEM"
value = "is not set"
category = "attack-surface"
reason = "no /dev/mem"
stance = "require"

[[kconfig]]
option = "CONFIG_LIST_HARDENED"
value = "y"
category = "data-integrity"
reason = "list checks"
stance = "require"
since = "6.6"
alternatives = [["CONFIG_DEBUG_LIST=y"]]

[[kconfig]]
option = "CONFIG_MAGIC_SYSRQ_DEFAULT_ENABLE"
value = "176"
category = "attack-surface"
reason = "limited sysrq"
stance = "require"
alternatives = [["CONFIG_MAGIC_SYSRQ is not set"]]

[[kconfig]]
option = "CONFIG_INET_DIAG"
value = "is not set"
category = "attack-surface"
reason = "no sock_diag"
stance = "exception"
stance_reason = "cilium needs it"

[[kconfig]]
option = "CONFIG_MITIGATION_SLS"
value = "y"
category = "side-channels"
reason = "sls"
stance = "require"
aliases = ["CONFIG_SLS"]

[[kconfig]]
option = "CONFIG_CFI_CLANG"
value = "y"
category = "cfi"
reason = "kcfi"
stance = "require"
compiler = "clang"

[[kconfig]]
option = "CONFIG_MODULE_SIG_HASH"
value = '"sha512"'
category = "modules"
reason = "sha512"
stance = "require"
"#;

    fn status_of(config: &str, option: &str) -> Status {
        let data = Recommendations::parse(DATA).unwrap();
        let config = KernelConfig::parse(config).unwrap();
        check(&data, &config)
            .results
            .iter()
            .find(|r| r.rule.option == option)
            .map(|r| r.status)
            .unwrap()
    }

    #[test]
    fn y_is_met_and_m_or_absent_is_not() {
        assert_eq!(status_of("CONFIG_BUG=y", "CONFIG_BUG"), Status::Met);
        assert_eq!(status_of("CONFIG_BUG=m", "CONFIG_BUG"), Status::NotMet);
        assert_eq!(status_of("", "CONFIG_BUG"), Status::NotMet);
        assert_eq!(
            status_of("# CONFIG_BUG is not set", "CONFIG_BUG"),
            Status::NotMet
        );
    }

    #[test]
    fn not_set_is_met_by_comment_or_absence_but_not_by_m() {
        assert_eq!(
            status_of("# CONFIG_DEVMEM is not set", "CONFIG_DEVMEM"),
            Status::Met
        );
        assert_eq!(status_of("", "CONFIG_DEVMEM"), Status::Met);
        assert_eq!(
            status_of("CONFIG_DEVMEM=y", "CONFIG_DEVMEM"),
            Status::NotMet
        );
        assert_eq!(
            status_of("CONFIG_DEVMEM=m", "CONFIG_DEVMEM"),
            Status::NotMet
        );
    }

    #[test]
    fn numbers_compare_as_numbers() {
        let option = "CONFIG_MAGIC_SYSRQ_DEFAULT_ENABLE";
        let with = |value: &str| format!("CONFIG_MAGIC_SYSRQ=y\n{option}={value}");
        assert_eq!(status_of(&with("0xb0"), option), Status::Met);
        assert_eq!(status_of(&with("176"), option), Status::Met);
        assert_eq!(status_of(&with("0x01b6"), option), Status::NotMet);
    }

    #[test]
    fn strings_compare_without_quotes() {
        let option = "CONFIG_MODULE_SIG_HASH";
        assert_eq!(
            status_of("CONFIG_MODULE_SIG_HASH=\"sha512\"", option),
            Status::Met
        );
        assert_eq!(
            status_of("CONFIG_MODULE_SIG_HASH=\"sha256\"", option),
            Status::NotMet
        );
    }

    #[test]
    fn alternatives_meet_a_rule_and_report_how() {
        let data = Recommendations::parse(DATA).unwrap();
        let config =
            KernelConfig::parse("# Linux/x86 6.6.30 Kernel Configuration\nCONFIG_DEBUG_LIST=y\n")
                .unwrap();
        let report = check(&data, &config);
        let list = &report.results[2];
        assert_eq!(list.status, Status::Met);
        assert_eq!(
            list.detail().unwrap(),
            "met by alternative: CONFIG_DEBUG_LIST=y"
        );
        // MAGIC_SYSRQ absent: the whole SysRq facility is off, which is stricter.
        assert_eq!(report.results[3].status, Status::Met);
        assert_eq!(
            status_of(
                "CONFIG_LIST_HARDENED=y\n# Linux/x86 6.6.1 Kernel Configuration",
                "CONFIG_LIST_HARDENED"
            ),
            Status::Met
        );
        assert_eq!(
            status_of(
                "# Linux/x86 6.6.1 Kernel Configuration",
                "CONFIG_LIST_HARDENED"
            ),
            Status::NotMet
        );
    }

    #[test]
    fn versions_and_compilers_make_rules_inapplicable() {
        let config = "# Linux/x86 6.1.192 Kernel Configuration\nCONFIG_CC_IS_GCC=y\n";
        assert_eq!(
            status_of(config, "CONFIG_LIST_HARDENED"),
            Status::NotApplicable
        );
        assert_eq!(status_of(config, "CONFIG_CFI_CLANG"), Status::NotApplicable);
        // Unknown version and compiler: everything applies.
        assert_eq!(status_of("", "CONFIG_LIST_HARDENED"), Status::NotMet);
        assert_eq!(status_of("", "CONFIG_CFI_CLANG"), Status::NotMet);
    }

    #[test]
    fn exceptions_are_reported_with_their_reason_unless_met_anyway() {
        let data = Recommendations::parse(DATA).unwrap();
        let config = KernelConfig::parse("CONFIG_INET_DIAG=m").unwrap();
        let report = check(&data, &config);
        assert_eq!(report.results[4].status, Status::Exception);
        assert_eq!(
            report.results[4].detail().unwrap(),
            "exception: cilium needs it"
        );
        assert_eq!(status_of("", "CONFIG_INET_DIAG"), Status::Met);
    }

    #[test]
    fn aliases_are_checked_under_the_name_the_kernel_uses() {
        let data = Recommendations::parse(DATA).unwrap();
        let config = KernelConfig::parse("CONFIG_SLS=y").unwrap();
        let sls = check(&data, &config).results.remove(5);
        assert_eq!(sls.status, Status::Met);
        assert_eq!(sls.found_as, "CONFIG_SLS");
        assert_eq!(sls.detail().unwrap(), "found as CONFIG_SLS");
        assert_eq!(status_of("", "CONFIG_MITIGATION_SLS"), Status::NotMet);
    }

    #[test]
    fn the_score_counts_every_status() {
        let data = Recommendations::parse(DATA).unwrap();
        let config = KernelConfig::parse(
            "# Linux/x86 6.1.192 Kernel Configuration\nCONFIG_CC_IS_GCC=y\nCONFIG_BUG=y\n\
             CONFIG_DEVMEM=y\nCONFIG_MAGIC_SYSRQ=y\nCONFIG_MAGIC_SYSRQ_DEFAULT_ENABLE=0xb0\n\
             CONFIG_INET_DIAG=y\nCONFIG_SLS=y\n",
        )
        .unwrap();
        assert_eq!(
            check(&data, &config).score(),
            Score {
                total: 8,
                applicable: 6,
                met: 3,
                exceptions: 1,
                not_met: 2,
                not_applicable: 2,
            }
        );
    }
}
