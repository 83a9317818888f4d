//! Kernel modules from the initramfs, loaded with finit_module in the order
//! `/etc/modules.order` lists them (image-builder writes it from `modules.dep`, so
//! every module follows its dependencies).

use std::ffi::CString;
use std::fs::File;
use std::path::Path;

use nix::errno::Errno;
use nix::kmod::{ModuleInitFlags, finit_module};

use super::cmdline::BootParameters;
use crate::platform::PlatformError;

/// Loads every module listed in `order_file`; a module that is already loaded (or
/// built in) is fine, and so is one whose hardware is absent (efivarfs on a machine
/// booted without UEFI); any other failure names the module.
pub fn load_all(order_file: &Path, parameters: &BootParameters) -> Result<usize, PlatformError> {
    let list = std::fs::read_to_string(order_file).map_err(|source| PlatformError::Io {
        what: format!("reading {}", order_file.display()),
        source,
    })?;
    let mut loaded = 0;
    for path in list.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let name = module_name(path);
        let params = CString::new(parameters.parameters_of(&name)).map_err(|_| {
            PlatformError::Boot(format!(
                "the parameters of module {name} contain a NUL byte"
            ))
        })?;
        let file = File::open(path).map_err(|source| PlatformError::Io {
            what: format!("opening module {path}"),
            source,
        })?;
        match finit_module(&file, &params, ModuleInitFlags::empty()) {
            Ok(()) => loaded += 1,
            Err(Errno::EEXIST) => {}
            Err(Errno::ENODEV) => tracing::info!(module = %name, "not loaded: no such device"),
            Err(errno) => {
                return Err(PlatformError::Io {
                    what: format!("loading kernel module {name} ({path})"),
                    source: errno.into(),
                });
            }
        }
    }
    Ok(loaded)
}

/// `kernel/fs/ext4/ext4.ko` is `ext4`; `crc32c-intel.ko.xz` is `crc32c_intel`.
fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    file.split(".ko").next().unwrap_or(file).replace('-', "_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_paths() {
        assert_eq!(
            module_name("/lib/modules/6.1.0/kernel/fs/ext4/ext4.ko"),
            "ext4"
        );
        assert_eq!(module_name("crc32c-intel.ko.xz"), "crc32c_intel");
    }
}
