//! Stage 3: the initramfs. `/init` is the node agent, which must be statically linked
//! since nothing else is there; `/dev/console` exists before devtmpfs is mounted so
//! the kernel can open it for PID 1; the early kernel modules sit under
//! `/lib/modules/<release>/` with `/etc/modules.order` listing their paths in load
//! order. The archive is written by [`super::cpio`] and compressed with `zstd -19`.

use std::fs;
use std::path::Path;

use super::archive::{Archive, Kind};
use super::cpio;
use super::elf;
use super::error::{BuildError, IoContext, Result};
use super::kernel::Kernel;
use super::modules::{EARLY_MODULES, ModulesDep, parse_builtin};
use super::tool::{command, run};

/// The file name of the initramfs in the outputs.
pub const FILE_NAME: &str = "initramfs.cpio.zst";

/// How to build an agent that passes [`check_agent`].
pub const STATIC_AGENT_HINT: &str = "build it with RUSTFLAGS=\"-C target-feature=+crt-static\" \
cargo build --release -p node-agent --target x86_64-unknown-linux-gnu";

/// Reads the agent binary and checks it is a static x86_64 executable.
pub fn check_agent(path: &Path) -> Result<Vec<u8>> {
    let data = fs::read(path).map_err(|err| BuildError::BadInput {
        path: path.to_owned(),
        reason: format!("cannot read the agent: {err}"),
    })?;
    let bad = |reason: String| BuildError::BadInput {
        path: path.to_owned(),
        reason,
    };
    let linkage = elf::linkage(&data).map_err(|reason| {
        bad(format!(
            "{reason}; the agent must be a static x86_64 executable"
        ))
    })?;
    if !linkage.is_static() {
        let what = match &linkage.interpreter {
            Some(interp) => format!("uses the loader {interp}"),
            None => format!("needs {}", linkage.needed.join(", ")),
        };
        return Err(bad(format!(
            "the agent is dynamically linked ({what}); {STATIC_AGENT_HINT}"
        )));
    }
    Ok(data)
}

/// The early modules' paths (relative to the modules directory) in load order.
pub fn module_order(kernel: &Kernel, root: &Path) -> Result<Vec<String>> {
    let dep = ModulesDep::parse(&kernel.modules_dep(root)?).map_err(BuildError::Missing)?;
    let builtin_path = kernel.modules.join("modules.builtin");
    let builtin = parse_builtin(&fs::read_to_string(&builtin_path).at(builtin_path)?);
    dep.load_order(EARLY_MODULES, &builtin)
        .map_err(BuildError::Missing)
}

/// Assembles the archive: the agent, `/dev/console`, mount points, the modules and
/// `/etc/modules.order`.
pub fn assemble(agent: Vec<u8>, kernel: &Kernel, order: &[String]) -> Result<Archive> {
    let mut archive = Archive::new();
    archive.add("init", Kind::File(agent), 0o755);
    archive.add(
        "dev/console",
        Kind::CharDevice { major: 5, minor: 1 },
        0o600,
    );
    for dir in ["proc", "sys", "run", "tmp", "etc"] {
        archive.add(dir, Kind::Directory, 0o755);
    }
    let mut listed = String::new();
    for module in order {
        let source = kernel.modules.join(module);
        let target = format!("lib/modules/{}/{module}", kernel.release);
        archive.add(&target, Kind::File(fs::read(&source).at(&source)?), 0o644);
        listed.push('/');
        listed.push_str(&target);
        listed.push('\n');
    }
    archive.add("etc/modules.order", Kind::File(listed.into_bytes()), 0o644);
    Ok(archive)
}

/// Writes the archive with every mtime `epoch` to `out`, compressed; `work` is a
/// scratch directory.
pub fn write(archive: &Archive, epoch: u32, work: &Path, out: &Path) -> Result<()> {
    let uncompressed = work.join("initramfs.cpio");
    fs::write(&uncompressed, cpio::write(archive, epoch)).at(&uncompressed)?;
    // One thread: the frame layout must not depend on the machine.
    run(command("zstd")
        .args(["-19", "-T1", "-q", "-f", "--no-progress"])
        .arg(&uncompressed)
        .arg("-o")
        .arg(out))?;
    fs::remove_file(&uncompressed).at(uncompressed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_agents_pass() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent");
        fs::write(&path, elf::tests::crafted(None, &[])).unwrap();
        assert!(check_agent(&path).is_ok());
    }

    #[test]
    fn dynamic_agents_fail_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent");
        fs::write(
            &path,
            elf::tests::crafted(Some("/lib64/ld-linux-x86-64.so.2"), &["libc.so.6"]),
        )
        .unwrap();
        let err = check_agent(&path).unwrap_err().to_string();
        assert!(
            err.contains("dynamically linked (uses the loader /lib64/ld-linux-x86-64.so.2)"),
            "{err}"
        );
        assert!(err.contains("crt-static"), "{err}");
        assert!(!err.contains('\n'));
        fs::write(&path, "#!/bin/sh\n").unwrap();
        assert!(
            check_agent(&path)
                .unwrap_err()
                .to_string()
                .contains("not an ELF file")
        );
        assert!(check_agent(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn modules_are_listed_in_order_under_their_release() {
        let dir = tempfile::tempdir().unwrap();
        let modules = dir.path().join("lib/modules/6.1.0-9-amd64");
        fs::create_dir_all(modules.join("kernel/fs")).unwrap();
        fs::write(modules.join("kernel/fs/mbcache.ko"), "m").unwrap();
        fs::write(modules.join("kernel/fs/ext4.ko"), "e").unwrap();
        let kernel = Kernel {
            release: "6.1.0-9-amd64".into(),
            vmlinuz: dir.path().join("vmlinuz"),
            modules,
            config: dir.path().join("config"),
        };
        let order = [
            "kernel/fs/mbcache.ko".to_owned(),
            "kernel/fs/ext4.ko".to_owned(),
        ];
        let archive = assemble(b"agent".to_vec(), &kernel, &order).unwrap();
        let paths: Vec<_> = archive.paths().collect();
        assert!(paths.contains(&"init"));
        assert!(paths.contains(&"dev/console"));
        assert!(paths.contains(&"lib/modules/6.1.0-9-amd64/kernel/fs/ext4.ko"));
        let bytes = cpio::write(&archive, 0);
        let listing = "/lib/modules/6.1.0-9-amd64/kernel/fs/mbcache.ko\n/lib/modules/6.1.0-9-amd64/kernel/fs/ext4.ko\n";
        assert!(
            bytes
                .windows(listing.len())
                .any(|w| w == listing.as_bytes())
        );
    }
}
