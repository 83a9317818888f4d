//! The kernel a configuration describes: its version and the compiler that builds it.
//!
//! Recommendations name the versions and compilers they apply to; a [`Target`] says which
//! of them a given configuration is for. Either half may be unknown, in which case every
//! recommendation counts as applicable.

use std::fmt;
use std::str::FromStr;

use crate::error::Error;

/// A kernel release, `major.minor[.patch]`; a missing patch level counts as 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KernelVersion {
    /// The major number (6 in 6.1.192).
    pub major: u32,
    /// The minor number (1 in 6.1.192).
    pub minor: u32,
    /// The stable patch level (192 in 6.1.192).
    pub patch: u32,
}

impl KernelVersion {
    /// A version from its three numbers.
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        Self {
            major,
            minor,
            patch,
        }
    }

    /// Reads the leading release of a kernel version string such as `6.1.192`,
    /// `6.18.0-rc1` or `6.1.0-56-amd64`, ignoring everything after the numbers.
    pub fn parse_release(text: &str) -> Option<Self> {
        let end = text
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(text.len());
        text[..end].trim_end_matches('.').parse().ok()
    }
}

impl FromStr for KernelVersion {
    type Err = Error;

    /// Parses exactly `major.minor` or `major.minor.patch`.
    fn from_str(text: &str) -> Result<Self, Error> {
        let invalid = || Error::InvalidVersion(text.to_owned());
        let parts = text
            .split('.')
            .map(|part| part.parse::<u32>().map_err(|_| invalid()))
            .collect::<Result<Vec<_>, _>>()?;
        match parts[..] {
            [major, minor] => Ok(Self::new(major, minor, 0)),
            [major, minor, patch] => Ok(Self::new(major, minor, patch)),
            _ => Err(invalid()),
        }
    }
}

impl fmt::Display for KernelVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)?;
        if self.patch != 0 {
            write!(f, ".{}", self.patch)?;
        }
        Ok(())
    }
}

/// The compiler family a kernel is built with; some hardening exists for only one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compiler {
    /// GCC (`CONFIG_CC_IS_GCC=y`).
    Gcc,
    /// Clang/LLVM (`CONFIG_CC_IS_CLANG=y`).
    Clang,
}

impl Compiler {
    /// The lowercase name used in the data file and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Gcc => "gcc",
            Self::Clang => "clang",
        }
    }
}

impl FromStr for Compiler {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self, Error> {
        match text {
            "gcc" => Ok(Self::Gcc),
            "clang" => Ok(Self::Clang),
            other => Err(Error::InvalidCompiler(other.to_owned())),
        }
    }
}

impl fmt::Display for Compiler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What is known about the kernel a configuration is for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Target {
    /// The kernel release, if the configuration names it.
    pub version: Option<KernelVersion>,
    /// The compiler, if the configuration names it.
    pub compiler: Option<Compiler>,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.version {
            Some(version) => write!(f, "Linux {version}")?,
            None => f.write_str("Linux (version unknown)")?,
        }
        match self.compiler {
            Some(compiler) => write!(f, ", {compiler}"),
            None => f.write_str(", compiler unknown"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_and_order() {
        let v: KernelVersion = "6.1.192".parse().unwrap();
        assert_eq!(v, KernelVersion::new(6, 1, 192));
        assert!(v < "6.2".parse().unwrap());
        assert!(v > "6.1".parse().unwrap());
        assert!("6.6.8".parse::<KernelVersion>().unwrap() > "6.6".parse().unwrap());
        assert_eq!(v.to_string(), "6.1.192");
        assert_eq!(KernelVersion::new(6, 9, 0).to_string(), "6.9");
    }

    #[test]
    fn malformed_versions_are_refused() {
        for bad in ["6", "6.x", "6.1.2.3", "", "v6.1"] {
            assert!(bad.parse::<KernelVersion>().is_err(), "{bad}");
        }
    }

    #[test]
    fn releases_ignore_suffixes() {
        assert_eq!(
            KernelVersion::parse_release("6.18.0-rc1"),
            Some(KernelVersion::new(6, 18, 0))
        );
        assert_eq!(
            KernelVersion::parse_release("6.1.0-56-amd64"),
            Some(KernelVersion::new(6, 1, 0))
        );
        assert_eq!(KernelVersion::parse_release("unknown"), None);
    }
}
