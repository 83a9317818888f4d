//! Our kconfig fragment (`kernel/config-fragment`) and its agreement with the data.
//!
//! The fragment is merged over Debian's stock config, so it must state every setting we
//! rely on: a requirement counts as covered only if the fragment itself names the
//! deciding options, never because it happens not to mention them. The fragment names
//! the kernel it is for in a comment, `# target: linux 6.1 gcc`, which `kernel/build`
//! also reads to pick the source package.

use std::fmt;

use crate::check::{Status, Via, check_rule};
use crate::config::KernelConfig;
use crate::data::{Recommendations, Stance};
use crate::error::Error;
use crate::target::{KernelVersion, Target};

/// Parses a fragment, taking its target from the `# target:` line.
pub fn parse(text: &str) -> Result<KernelConfig, Error> {
    let target = text
        .lines()
        .find_map(|line| line.trim().strip_prefix("# target:"))
        .ok_or(Error::MissingTarget)?;
    let mut words = target.split_whitespace();
    if words.next() != Some("linux") {
        return Err(Error::MissingTarget);
    }
    let version: KernelVersion = words.next().ok_or(Error::MissingTarget)?.parse()?;
    let compiler = words.next().ok_or(Error::MissingTarget)?.parse()?;
    Ok(KernelConfig::parse(text)?.with_target(Target {
        version: Some(version),
        compiler: Some(compiler),
    }))
}

/// Something in the fragment that disagrees with the data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The recommendation's (or the repeated line's) option.
    pub option: String,
    /// What is wrong.
    pub problem: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.option, self.problem)
    }
}

/// Everything in `fragment` that disagrees with `recommendations`: options set twice,
/// requirements it does not state explicitly, and exceptions it meets anyway (whose
/// stance should then be `require`).
pub fn problems(recommendations: &Recommendations, fragment: &KernelConfig) -> Vec<Problem> {
    let target = fragment.target();
    let mut problems: Vec<Problem> = fragment
        .duplicates()
        .iter()
        .map(|option| Problem {
            option: option.clone(),
            problem: "set more than once".into(),
        })
        .collect();
    for rule in &recommendations.kconfig {
        let result = check_rule(rule, fragment, &target);
        let explicit = |name: &str| fragment.get(name).is_some();
        let problem = match (&rule.stance, result.status, &result.via) {
            (_, Status::NotApplicable, _) => None,
            (Stance::Require, Status::NotMet, _) => Some(match fragment.get(result.found_as) {
                Some(value) => format!("required {}, the fragment sets {value}", rule.expected),
                None => format!("required {}, the fragment does not set it", rule.expected),
            }),
            (Stance::Require, Status::Met, Some(Via::Option(_))) if !rule.names().any(explicit) => {
                Some(format!(
                    "met only because the fragment does not mention it; add `# {} is not set`",
                    rule.option
                ))
            }
            (Stance::Require, Status::Met, Some(Via::Alternative(conditions)))
                if !conditions.iter().all(|c| explicit(&c.option)) =>
            {
                Some("met by an alternative whose options the fragment does not all set".into())
            }
            (Stance::Exception { .. }, Status::Met, _) => Some(
                "the fragment meets it, but the data lists an exception; make it `require`".into(),
            ),
            _ => None,
        };
        problems.extend(problem.map(|problem| Problem {
            option: rule.option.clone(),
            problem,
        }));
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    const DATA: &str = r#"
[[kconfig]]
option = "CONFIG_BUG"
value = "y"
category = "crash-handling"
reason = "r"
stance = "require"

[[kconfig]]
option = "CONFIG_DEVMEM"
value = "is not set"
category = "attack-surface"
reason = "r"
stance = "require"

[[kconfig]]
option = "CONFIG_STRICT_DEVMEM"
value = "y"
category = "attack-surface"
reason = "r"
stance = "require"
alternatives = [["CONFIG_DEVMEM is not set"]]

[[kconfig]]
option = "CONFIG_MODULES"
value = "is not set"
category = "modules"
reason = "r"
stance = "exception"
stance_reason = "needed"

[[kconfig]]
option = "CONFIG_LIST_HARDENED"
value = "y"
category = "data-integrity"
reason = "r"
stance = "require"
since = "6.6"
"#;

    fn problems_of(fragment: &str) -> Vec<String> {
        let data = Recommendations::parse(DATA).unwrap();
        let fragment = parse(&format!("# target: linux 6.1 gcc\n{fragment}")).unwrap();
        problems(&data, &fragment)
            .iter()
            .map(Problem::to_string)
            .collect()
    }

    #[test]
    fn a_complete_fragment_has_no_problems() {
        let fragment = "CONFIG_BUG=y\n# CONFIG_DEVMEM is not set\nCONFIG_MODULES=y\n";
        assert_eq!(problems_of(fragment), Vec::<String>::new());
    }

    #[test]
    fn requirements_must_be_stated_not_implied() {
        assert_eq!(
            problems_of("CONFIG_MODULES=y\n"),
            [
                "CONFIG_BUG: required y, the fragment does not set it",
                "CONFIG_DEVMEM: met only because the fragment does not mention it; \
                 add `# CONFIG_DEVMEM is not set`",
                "CONFIG_STRICT_DEVMEM: met by an alternative whose options the fragment \
                 does not all set",
            ]
        );
    }

    #[test]
    fn contradictions_repeats_and_stale_exceptions_are_reported() {
        assert_eq!(
            problems_of("CONFIG_BUG=m\nCONFIG_DEVMEM=y\nCONFIG_DEVMEM=y\nCONFIG_STRICT_DEVMEM=y\n"),
            [
                "CONFIG_DEVMEM: set more than once",
                "CONFIG_BUG: required y, the fragment sets m",
                "CONFIG_DEVMEM: required is not set, the fragment sets y",
                "CONFIG_MODULES: the fragment meets it, but the data lists an exception; \
                 make it `require`",
            ]
        );
    }

    #[test]
    fn the_target_line_is_required() {
        assert!(matches!(parse("CONFIG_BUG=y\n"), Err(Error::MissingTarget)));
        let fragment = parse("# target: linux 6.1 gcc\nCONFIG_BUG=y\n").unwrap();
        assert_eq!(fragment.target().to_string(), "Linux 6.1, gcc");
        assert!(parse("# target: linux 6.1 icc\n").is_err());
    }
}
