//! The node's parameters on the kernel command line (`/proc/cmdline`), written by the
//! boot entry (systemd-boot) or the provisioner (direct boots).

use std::collections::BTreeMap;

/// The parameters the agent reads as PID 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootParameters {
    /// Where the root image is: `PARTLABEL=BOOT-A`.
    pub root_partition: String,
    /// The root image's sha256 (hex); the image is refused when it does not match.
    pub root_sha256: Option<String>,
    /// The slot booted (`a` or `b`).
    pub slot: Option<String>,
    /// `module.param=value` words, by module, for the modules PID 1 loads itself
    /// (the kernel applies them only to built-in modules and to modprobe's loads).
    pub module_parameters: BTreeMap<String, Vec<String>>,
}

/// Parameters the agent owns (`node.`); every other dotted word is a module parameter.
const OWN_PREFIX: &str = "node.";

impl BootParameters {
    /// Parses the command line; `node.root=` is required.
    pub fn parse(cmdline: &str) -> Result<Self, String> {
        let mut root_partition = None;
        let mut root_sha256 = None;
        let mut slot = None;
        let mut module_parameters: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for word in cmdline.split_whitespace() {
            let (key, value) = word.split_once('=').unwrap_or((word, ""));
            match key {
                "node.root" => root_partition = Some(value.to_owned()),
                "node.root.sha256" => root_sha256 = Some(value.to_ascii_lowercase()),
                "node.slot" => slot = Some(value.to_owned()),
                _ if key.starts_with(OWN_PREFIX) => {}
                _ => {
                    if let Some((module, param)) = key.split_once('.') {
                        let param = if value.is_empty() {
                            param.to_owned()
                        } else {
                            format!("{param}={value}")
                        };
                        module_parameters
                            .entry(module.replace('-', "_"))
                            .or_default()
                            .push(param);
                    }
                }
            }
        }
        let root_partition = root_partition.ok_or_else(|| {
            "the kernel command line has no node.root= (expected node.root=PARTLABEL=BOOT-A)"
                .to_owned()
        })?;
        if let Some(hash) = &root_sha256
            && (hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(format!(
                "node.root.sha256={hash} is not a sha256 in hex (64 characters)"
            ));
        }
        Ok(Self {
            root_partition,
            root_sha256,
            slot,
            module_parameters,
        })
    }

    /// The GPT partition name of the root image.
    pub fn root_label(&self) -> Result<&str, String> {
        self.root_partition
            .strip_prefix("PARTLABEL=")
            .ok_or_else(|| {
                format!(
                    "node.root={} is not supported: name the partition as PARTLABEL=<name>",
                    self.root_partition
                )
            })
    }

    /// The parameters for `module`, space-separated, as finit_module takes them.
    pub fn parameters_of(&self, module: &str) -> String {
        self.module_parameters
            .get(&module.replace('-', "_"))
            .map(|p| p.join(" "))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    #[test]
    fn parses_the_boot_entry() {
        let line = format!(
            "console=ttyS0 node.slot=a node.root=PARTLABEL=BOOT-A node.root.sha256={} \
             virtio_net.napi_tx=1 quiet",
            HASH.to_uppercase()
        );
        let p = BootParameters::parse(&line).unwrap();
        assert_eq!(p.root_label().unwrap(), "BOOT-A");
        assert_eq!(p.root_sha256.as_deref(), Some(HASH));
        assert_eq!(p.slot.as_deref(), Some("a"));
        assert_eq!(p.parameters_of("virtio-net"), "napi_tx=1");
        assert_eq!(p.parameters_of("ext4"), "");
    }

    #[test]
    fn names_what_is_wrong() {
        let err = BootParameters::parse("console=ttyS0").unwrap_err();
        assert!(err.contains("node.root="), "{err}");
        let err = BootParameters::parse("node.root=PARTLABEL=X node.root.sha256=abc").unwrap_err();
        assert!(err.contains("not a sha256"), "{err}");
        let p = BootParameters::parse("node.root=/dev/vda2").unwrap();
        assert!(p.root_label().unwrap_err().contains("PARTLABEL="));
    }
}
