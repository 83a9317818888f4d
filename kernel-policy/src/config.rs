//! Kernel configurations: `.config` files and fragments, their values and conditions.
//!
//! A `.config` holds `CONFIG_X=value` lines and `# CONFIG_X is not set` comments. An
//! option that does not appear at all is also not set: that is how Kconfig treats
//! options whose dependencies are unmet or that do not exist in that kernel.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use crate::error::Error;
use crate::target::{Compiler, KernelVersion, Target};

/// The value of a kconfig option, or the value a recommendation expects.
#[derive(Debug, Clone, Eq)]
pub enum Value {
    /// `y`: built in.
    Yes,
    /// `m`: built as a module.
    Module,
    /// `is not set` (or `n`, or absent).
    NotSet,
    /// A decimal or `0x` hexadecimal integer; equal numbers match however written.
    Number {
        /// The number.
        value: i64,
        /// How it was written, for display.
        written: String,
    },
    /// A quoted string, without its quotes, or any other word.
    Text(String),
}

impl Value {
    /// Reads a value as written after `=` in a .config, or in the data file (where
    /// `is not set` is also accepted).
    pub fn parse(text: &str) -> Self {
        let text = text.trim();
        match text {
            "y" => return Self::Yes,
            "m" => return Self::Module,
            "n" | "is not set" => return Self::NotSet,
            _ => {}
        }
        if let Some(inner) = text
            .strip_prefix('"')
            .and_then(|rest| rest.strip_suffix('"'))
        {
            return Self::Text(inner.replace("\\\"", "\"").replace("\\\\", "\\"));
        }
        match parse_integer(text) {
            Some(value) => Self::Number {
                value,
                written: text.to_owned(),
            },
            None => Self::Text(text.to_owned()),
        }
    }

    fn number(&self) -> Option<i64> {
        match self {
            Self::Number { value, .. } => Some(*value),
            _ => None,
        }
    }
}

fn parse_integer(text: &str) -> Option<i64> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let magnitude = match digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        Some(hex) => i64::from_str_radix(hex, 16).ok()?,
        None if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => {
            digits.parse().ok()?
        }
        None => return None,
    };
    Some(if negative { -magnitude } else { magnitude })
}

impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Yes, Self::Yes)
            | (Self::Module, Self::Module)
            | (Self::NotSet, Self::NotSet) => true,
            (Self::Text(a), Self::Text(b)) => a == b,
            _ => matches!((self.number(), other.number()), (Some(a), Some(b)) if a == b),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Yes => f.write_str("y"),
            Self::Module => f.write_str("m"),
            Self::NotSet => f.write_str("is not set"),
            Self::Number { written, .. } => f.write_str(written),
            Self::Text(text) => write!(f, "\"{text}\""),
        }
    }
}

/// One option having one value, written like a .config line: `CONFIG_X=y` or
/// `CONFIG_X is not set`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    /// The option, with its `CONFIG_` prefix.
    pub option: String,
    /// The value it must have.
    pub value: Value,
}

impl FromStr for Condition {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self, Error> {
        let invalid = |reason| Error::InvalidCondition {
            text: text.to_owned(),
            reason,
        };
        let (option, value) = if let Some(option) = text.strip_suffix(" is not set") {
            (option, Value::NotSet)
        } else {
            let (option, value) = text
                .split_once('=')
                .ok_or_else(|| invalid("expected CONFIG_X=VALUE or CONFIG_X is not set"))?;
            (option, Value::parse(value))
        };
        if !is_option_name(option) {
            return Err(invalid("the option must be a CONFIG_ name"));
        }
        Ok(Self {
            option: option.to_owned(),
            value,
        })
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.value {
            Value::NotSet => write!(f, "{} is not set", self.option),
            ref value => write!(f, "{}={value}", self.option),
        }
    }
}

/// Whether `name` looks like a kconfig option: `CONFIG_` and then letters, digits and
/// underscores (a few symbols have lower-case letters, e.g. `CONFIG_MTD_NETtel`).
pub fn is_option_name(name: &str) -> bool {
    name.strip_prefix("CONFIG_").is_some_and(|rest| {
        !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    })
}

/// A parsed kernel configuration: a full `.config` or a fragment.
#[derive(Debug, Clone, Default)]
pub struct KernelConfig {
    values: HashMap<String, Value>,
    duplicates: Vec<String>,
    target: Target,
}

impl KernelConfig {
    /// Parses a .config or fragment. The kernel version comes from the
    /// `# Linux/x86 6.1.192 Kernel Configuration` header, the compiler from
    /// `CONFIG_CC_IS_GCC` / `CONFIG_CC_IS_CLANG`. A later line for the same option wins,
    /// as in Kconfig; the repeated names are kept (see [`duplicates`](Self::duplicates)).
    pub fn parse(text: &str) -> Result<Self, Error> {
        let mut config = Self::default();
        for (index, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() {
                continue;
            }
            if let Some(comment) = line.strip_prefix('#') {
                let comment = comment.trim();
                if let Some(option) = comment.strip_suffix(" is not set")
                    && is_option_name(option)
                {
                    config.insert(option, Value::NotSet);
                } else if config.target.version.is_none() {
                    config.target.version = header_version(comment);
                }
                continue;
            }
            match line.split_once('=') {
                Some((option, value)) if is_option_name(option) => {
                    config.insert(option, Value::parse(value));
                }
                _ => {
                    return Err(Error::ConfigSyntax {
                        line: index + 1,
                        text: raw.to_owned(),
                    });
                }
            }
        }
        config.target.compiler = if config.value_of("CONFIG_CC_IS_CLANG") == &Value::Yes {
            Some(Compiler::Clang)
        } else if config.value_of("CONFIG_CC_IS_GCC") == &Value::Yes {
            Some(Compiler::Gcc)
        } else {
            None
        };
        Ok(config)
    }

    fn insert(&mut self, option: &str, value: Value) {
        if self.values.insert(option.to_owned(), value).is_some() {
            self.duplicates.push(option.to_owned());
        }
    }

    /// The value written for `option`, or `None` when the config does not mention it.
    pub fn get(&self, option: &str) -> Option<&Value> {
        self.values.get(option)
    }

    /// The effective value of `option`: an option the config does not mention is not set.
    pub fn value_of(&self, option: &str) -> &Value {
        self.values.get(option).unwrap_or(&Value::NotSet)
    }

    /// Whether the config satisfies `condition` (absent counts as not set).
    pub fn holds(&self, condition: &Condition) -> bool {
        self.value_of(&condition.option) == &condition.value
    }

    /// The options that appear more than once, in order of their repetition.
    pub fn duplicates(&self) -> &[String] {
        &self.duplicates
    }

    /// The kernel this config is for, as far as it says.
    pub fn target(&self) -> Target {
        self.target
    }

    /// The same config, declared to be for `target` (fragments name their target in a
    /// comment rather than in a Kconfig header).
    pub fn with_target(mut self, target: Target) -> Self {
        self.target = target;
        self
    }

    /// The number of options the config mentions.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether the config mentions no option at all.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

/// The version in a header comment such as `Linux/x86 6.1.192 Kernel Configuration`.
fn header_version(comment: &str) -> Option<KernelVersion> {
    let rest = comment.strip_prefix("Linux/")?;
    let mut words = rest
        .strip_suffix("Kernel Configuration")?
        .split_whitespace();
    let _arch = words.next()?;
    KernelVersion::parse_release(words.next()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "#\n# Automatically generated file; DO NOT EDIT.\n# Linux/x86 6.1.192 Kernel Configuration\n#\n";

    #[test]
    fn reads_values_comments_and_header() {
        let text = format!(
            "{HEADER}CONFIG_CC_IS_GCC=y\nCONFIG_BUG=y\nCONFIG_INET_DIAG=m\n# CONFIG_DEVMEM is not set\n\
             CONFIG_PANIC_TIMEOUT=-1\nCONFIG_MAGIC_SYSRQ_DEFAULT_ENABLE=0x01b6\n\
             CONFIG_MODULE_SIG_HASH=\"sha256\"\n\n# General setup\n"
        );
        let config = KernelConfig::parse(&text).unwrap();
        assert_eq!(
            config.target(),
            Target {
                version: Some(KernelVersion::new(6, 1, 192)),
                compiler: Some(Compiler::Gcc),
            }
        );
        assert_eq!(config.get("CONFIG_BUG"), Some(&Value::Yes));
        assert_eq!(config.get("CONFIG_INET_DIAG"), Some(&Value::Module));
        assert_eq!(config.get("CONFIG_DEVMEM"), Some(&Value::NotSet));
        assert_eq!(config.get("CONFIG_MISSING"), None);
        assert_eq!(config.value_of("CONFIG_MISSING"), &Value::NotSet);
        assert_eq!(config.value_of("CONFIG_PANIC_TIMEOUT"), &Value::parse("-1"));
        assert_eq!(
            config.value_of("CONFIG_MAGIC_SYSRQ_DEFAULT_ENABLE"),
            &Value::parse("438")
        );
        assert_eq!(
            config.value_of("CONFIG_MODULE_SIG_HASH"),
            &Value::Text("sha256".into())
        );
        assert_eq!(config.len(), 7);
    }

    #[test]
    fn numbers_match_across_bases_but_not_strings() {
        assert_eq!(Value::parse("176"), Value::parse("0xb0"));
        assert_eq!(Value::parse("0xB0"), Value::parse("176"));
        assert_ne!(Value::parse("176"), Value::parse("\"176\""));
        assert_ne!(Value::parse("y"), Value::parse("m"));
        assert_eq!(Value::parse("n"), Value::NotSet);
        assert_eq!(Value::parse("0xb0").to_string(), "0xb0");
    }

    #[test]
    fn clang_wins_over_unknown_and_missing_header_leaves_version_unknown() {
        let config = KernelConfig::parse("CONFIG_CC_IS_CLANG=y\n").unwrap();
        assert_eq!(config.target().compiler, Some(Compiler::Clang));
        assert_eq!(config.target().version, None);
        assert_eq!(KernelConfig::parse("").unwrap().target(), Target::default());
    }

    #[test]
    fn later_lines_win_and_repeats_are_recorded() {
        let config =
            KernelConfig::parse("CONFIG_A=y\n# CONFIG_A is not set\nCONFIG_B=m\n").unwrap();
        assert_eq!(config.value_of("CONFIG_A"), &Value::NotSet);
        assert_eq!(config.duplicates(), ["CONFIG_A"]);
    }

    #[test]
    fn garbage_lines_are_refused_with_their_number() {
        let err = KernelConfig::parse("CONFIG_A=y\nhello\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "kernel config line 2: not an option, comment or blank line: \"hello\""
        );
        assert!(KernelConfig::parse("config_a=y\n").is_err());
    }

    #[test]
    fn conditions_round_trip() {
        for text in [
            "CONFIG_DEBUG_LIST=y",
            "CONFIG_DEVMEM is not set",
            "CONFIG_X=0",
            "CONFIG_S=\"a b\"",
        ] {
            let condition: Condition = text.parse().unwrap();
            assert_eq!(condition.to_string(), text);
        }
        assert!("DEBUG_LIST=y".parse::<Condition>().is_err());
        assert!("CONFIG_X".parse::<Condition>().is_err());
    }
}
