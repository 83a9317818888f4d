//! Image names: `HOST[:PORT]/PATH[:TAG]`, the subset of the distribution reference
//! grammar that names one tagged image (no digests).
//!
//! The host is required. Docker and `nerdctl` expand a short name (`busybox`) to a
//! default registry, containerd's `ctr` does not: an image imported under a short name
//! would be found by one client and not by the other, so we never write one.

use std::fmt;
use std::str::FromStr;

use super::error::ParseError;

/// The tag of a name that gives none.
pub const DEFAULT_TAG: &str = "latest";

/// A fully qualified, tagged image name, e.g. `node-os.local/busybox:1.35.0`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Reference {
    repository: String,
    tag: String,
}

impl Reference {
    /// The repository: the host and path, without the tag.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag: what an OCI layout's `org.opencontainers.image.ref.name` holds.
    pub fn tag(&self) -> &str {
        &self.tag
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.repository, self.tag)
    }
}

impl FromStr for Reference {
    type Err = ParseError;

    fn from_str(reference: &str) -> Result<Self, ParseError> {
        let invalid = |reason: &str| ParseError::InvalidReference {
            reference: reference.to_owned(),
            reason: reason.to_owned(),
        };
        if reference.contains('@') {
            return Err(invalid("digests are not supported; give a tag"));
        }
        // A `:` after the last `/` starts the tag; one before it is the host's port.
        let last = reference.rsplit('/').next().unwrap_or_default();
        let (repository, tag) = match last.rsplit_once(':') {
            Some((_, tag)) => (&reference[..reference.len() - tag.len() - 1], tag),
            None => (reference, DEFAULT_TAG),
        };
        let Some((host, path)) = repository.split_once('/') else {
            return Err(invalid(
                "no registry host; name one, e.g. node-os.local/busybox:1.35.0",
            ));
        };
        if !(host.contains(['.', ':']) || host == "localhost") {
            return Err(invalid(&format!(
                "{host:?} is not a registry host (a host has a '.' or a port, or is localhost)"
            )));
        }
        let (hostname, port) = host.split_once(':').unwrap_or((host, ""));
        let port_ok = port.is_empty() && !host.ends_with(':')
            || !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit());
        let hostname_ok = !hostname.is_empty()
            && hostname.split('.').all(|label| {
                !label.is_empty()
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if !(hostname_ok && port_ok) {
            return Err(invalid(&format!("{host:?} is not a valid registry host")));
        }
        if let Some(bad) = path.split('/').find(|c| !path_component(c)) {
            return Err(invalid(&format!(
                "path component {bad:?} must be lowercase letters and digits, separated by '.', '_', '__' or '-'"
            )));
        }
        if !valid_tag(tag) {
            return Err(invalid(&format!(
                "tag {tag:?} must be 1 to 128 letters, digits, '_', '.' or '-', not starting with '.' or '-'"
            )));
        }
        Ok(Self {
            repository: repository.to_owned(),
            tag: tag.to_owned(),
        })
    }
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn path_component(component: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = component.as_bytes();
    let (Some(&first), Some(&last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    if !alnum(first) || !alnum(last) {
        return false;
    }
    component
        .split(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        .all(|separator| {
            matches!(separator, "" | "." | "_" | "__") || separator.bytes().all(|b| b == b'-')
        })
}

/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`
pub fn valid_tag(tag: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    tag.len() <= 128
        && tag.as_bytes().first().is_some_and(|&b| word(b))
        && tag.bytes().all(|b| word(b) || b == b'.' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Reference, String> {
        text.parse().map_err(|e: ParseError| e.to_string())
    }

    #[test]
    fn qualified_names_parse_with_their_tag() {
        let reference = parse("node-os.local/busybox:1.35.0").unwrap();
        assert_eq!(reference.repository(), "node-os.local/busybox");
        assert_eq!(reference.tag(), "1.35.0");
        assert_eq!(reference.to_string(), "node-os.local/busybox:1.35.0");
        let port = parse("localhost:5000/system/etcd").unwrap();
        assert_eq!(port.repository(), "localhost:5000/system/etcd");
        assert_eq!(port.tag(), "latest");
        assert!(parse("registry.example:443/a__b/c-d.e_f:V1_x.y-z").is_ok());
    }

    #[test]
    fn short_names_and_bad_parts_are_refused_with_the_reason() {
        assert!(
            parse("busybox:1.35")
                .unwrap_err()
                .contains("no registry host")
        );
        assert!(
            parse("library/busybox")
                .unwrap_err()
                .contains("\"library\" is not a registry host")
        );
        assert!(
            parse("x.local/BusyBox")
                .unwrap_err()
                .contains("\"BusyBox\"")
        );
        assert!(
            parse("x.local/a//b")
                .unwrap_err()
                .contains("path component \"\"")
        );
        assert!(parse("x.local/-a").is_err());
        assert!(parse("x.local/a:").unwrap_err().contains("tag \"\""));
        assert!(parse("x.local/a:.hidden").is_err());
        assert!(parse("x.local/a:1+b1").is_err());
        assert!(parse(&format!("x.local/a:{}", "1".repeat(129))).is_err());
        assert!(
            parse("x.local/a@sha256:00")
                .unwrap_err()
                .contains("digests")
        );
        assert!(
            parse("bad_host.local/a")
                .unwrap_err()
                .contains("not a valid registry host")
        );
        assert!(parse("host:port/a").is_err());
    }
}
