//! `image-builder`: builds node images. Subcommands: `build`, `oci`, `keygen`,
//! `bundle`, `kernel-check`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use image_builder::build::{self, DiskFormat, KernelSource};
use image_builder::bundle::{self, Source};
use image_builder::oci::contents::{self, FileSpec, LinkSpec};
use image_builder::oci::{Config, Reference};
use image_builder::{Format, KernelConfig, Recommendations, check, render};

#[derive(Parser)]
#[command(name = "image-builder", version, about = "Builds node images")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Builds a node image: kernel, initramfs, root image, disk and manifest.
    ///
    /// Downloads the Debian packages (kernel, containerd, runc, their libraries,
    /// ca-certificates, systemd-boot-efi, busybox-static for the shipped OCI image)
    /// with apt-get into the cache; needs dpkg-deb, depmod, zstd, mksquashfs, sgdisk,
    /// mkfs.fat, mcopy, mkfs.ext4 and, for qcow2, qemu-img. See docs/image.md.
    Build {
        /// The kernel image package (default: the one linux-image-amd64 depends on).
        #[arg(long, value_name = "PKG", conflicts_with = "kernel")]
        kernel_package: Option<String>,
        /// A local kernel image .deb instead of a package of the archive.
        #[arg(long, value_name = "PATH")]
        kernel: Option<PathBuf>,
        /// The statically linked node agent, installed as /init.
        #[arg(long, value_name = "PATH")]
        agent: PathBuf,
        /// The output directory (must not exist, or be empty).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Disk image formats.
        #[arg(long, value_enum, value_delimiter = ',', default_value = "raw")]
        format: Vec<DiskFormatArg>,
        /// The package cache.
        #[arg(long, value_name = "DIR", env = "IMAGE_BUILDER_CACHE", default_value = build::DEFAULT_CACHE)]
        cache: PathBuf,
        /// The timestamp of every file of the image.
        #[arg(long, env = "SOURCE_DATE_EPOCH", default_value_t = build::DEFAULT_SOURCE_DATE_EPOCH)]
        source_date_epoch: u64,
        /// The OS version of /etc/os-release, the boot entry and the manifest (and of
        /// bundles made from the image).
        #[arg(long, value_name = "V", default_value = build::OS_VERSION)]
        os_version: String,
    },
    /// Builds an OCI image from Debian packages and files, as an OCI layout tar file.
    ///
    /// The file is what `ctr image import`, `docker load` and skopeo's `oci-archive:`
    /// read; one uncompressed layer, every file owned by root with one mtime, so the
    /// same inputs give the same bytes. Prints NAME@DIGEST (the manifest's digest).
    /// Arguments after `--` are the default command (the image's Cmd). See
    /// docs/image.md.
    #[command(
        after_help = "Example: image-builder oci --name node-os.local/busybox:1.35.0 \\\n  --package busybox-static --link /bin/sh=busybox --out busybox.tar -- sh"
    )]
    Oci {
        /// The image's name, with a registry host: HOST[:PORT]/PATH[:TAG] (tag: latest).
        #[arg(long, value_name = "NAME[:TAG]")]
        name: Reference,
        /// A Debian package whose files go into the image (repeatable).
        #[arg(long = "package", value_name = "PKG")]
        packages: Vec<String>,
        /// A file or directory of this machine, and its path in the image
        /// (repeatable).
        #[arg(long = "file", value_name = "SRC=DEST")]
        files: Vec<FileSpec>,
        /// A symbolic link in the image, e.g. /bin/sh=busybox (repeatable).
        #[arg(long = "link", value_name = "PATH=TARGET")]
        links: Vec<LinkSpec>,
        /// The entrypoint, one word per use: --entrypoint /bin/busybox.
        #[arg(long, value_name = "ARG", allow_hyphen_values = true)]
        entrypoint: Vec<String>,
        /// An environment variable (repeatable; PATH has Docker's default unless set).
        #[arg(long = "env", value_name = "KEY=VALUE")]
        env: Vec<String>,
        /// The working directory of its containers.
        #[arg(long, value_name = "DIR")]
        workdir: Option<String>,
        /// The OCI layout tar file to write (replaced if it exists).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// The package cache.
        #[arg(long, value_name = "DIR", env = "IMAGE_BUILDER_CACHE", default_value = build::DEFAULT_CACHE)]
        cache: PathBuf,
        /// The timestamp of every file.
        #[arg(long, env = "SOURCE_DATE_EPOCH", default_value_t = build::DEFAULT_SOURCE_DATE_EPOCH)]
        source_date_epoch: u64,
        /// The default command (Cmd).
        #[arg(last = true, value_name = "CMD")]
        cmd: Vec<String>,
    },
    /// Generates the ed25519 key that signs upgrade bundles.
    ///
    /// Writes the private key (PKCS#8 PEM) with mode 0600 and never over an existing
    /// file; prints the public key (base64), which machine configs list as trusted.
    Keygen {
        /// The private key file to create.
        #[arg(long, value_name = "KEY")]
        out: PathBuf,
    },
    /// Makes a signed upgrade bundle: a metal one from a `build` output directory, or
    /// a process one from an agent binary.
    ///
    /// Prints the bundle's path, version, size and each part's sha256. See
    /// docs/image.md.
    Bundle {
        /// The private key from `keygen`.
        #[arg(long, value_name = "KEY")]
        key: PathBuf,
        /// The bundle file to write (replaced if it exists).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// A `build` output directory: kernel, initramfs and root image (metal).
        #[arg(long, value_name = "DIR", conflicts_with_all = ["agent", "version"], required_unless_present = "agent")]
        image: Option<PathBuf>,
        /// An agent binary (process platform).
        #[arg(long, value_name = "BIN", requires = "version")]
        agent: Option<PathBuf>,
        /// The OS version of the agent's bundle (a metal bundle takes the image's).
        #[arg(long, value_name = "V", requires = "agent")]
        version: Option<String>,
    },
    /// Checks a kernel .config against the KSPP hardening recommendations.
    ///
    /// Prints every recommendation as met, not met, exception (with our reason) or n/a
    /// (not in this kernel's version or compiler), then the score. Exits 0 when every
    /// applicable requirement is met, 1 when some are not, 2 on errors.
    KernelCheck {
        /// The kernel configuration (.config, /boot/config-*, or a decompressed
        /// /proc/config.gz).
        config: PathBuf,
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = OutputFormat::Table)]
        output: OutputFormat,
        /// Recommendations file to use instead of the built-in kernel/kspp.toml.
        #[arg(long, value_name = "FILE")]
        data: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum DiskFormatArg {
    Raw,
    Qcow2,
}

#[derive(Clone, Copy, ValueEnum)]
enum OutputFormat {
    Table,
    Json,
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("image-builder: {err:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Build {
            kernel_package,
            kernel,
            agent,
            out,
            format,
            cache,
            source_date_epoch,
            os_version,
        } => {
            let kernel = match (kernel_package, kernel) {
                (Some(name), _) => KernelSource::Package(name),
                (None, Some(path)) => KernelSource::Deb(path),
                (None, None) => KernelSource::Default,
            };
            let formats = format
                .into_iter()
                .map(|f| match f {
                    DiskFormatArg::Raw => DiskFormat::Raw,
                    DiskFormatArg::Qcow2 => DiskFormat::Qcow2,
                })
                .collect();
            build::build(&build::Options {
                kernel,
                agent,
                os_version,
                out,
                formats,
                cache,
                source_date_epoch,
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Oci {
            name,
            packages,
            files,
            links,
            entrypoint,
            env,
            workdir,
            out,
            cache,
            source_date_epoch,
            cmd,
        } => {
            let mut config = Config {
                entrypoint,
                cmd,
                working_dir: workdir.unwrap_or_default(),
                ..Config::default()
            };
            for variable in &env {
                config.set_env(variable)?;
            }
            let options = contents::Options {
                reference: name,
                packages,
                files,
                links,
                config,
                out,
                cache,
                source_date_epoch,
            };
            let (layout, packages) = contents::build(&options)?;
            for package in &packages {
                eprintln!("image-builder: {} {}", package.name, package.version);
            }
            println!("{}@{}", options.reference, layout.manifest.digest);
            Ok(ExitCode::SUCCESS)
        }
        Command::Keygen { out } => {
            let public = bundle::keygen(&out)?;
            eprintln!("image-builder: wrote the signing key {}", out.display());
            println!("{public}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Bundle {
            key,
            out,
            image,
            agent,
            version,
        } => {
            let source = match (image, agent, version) {
                (Some(dir), _, _) => Source::Image(dir),
                (None, Some(binary), Some(version)) => Source::Agent { binary, version },
                _ => unreachable!("clap requires --image or --agent and --version"),
            };
            let started = Instant::now();
            eprintln!("image-builder: bundle: hashing, signing and writing the parts");
            let manifest = bundle::bundle(&source, &key, &out)?;
            let size = fs::metadata(&out)
                .with_context(|| format!("cannot read {}", out.display()))?
                .len();
            println!("bundle {}", out.display());
            println!("version {} ({})", manifest.version, manifest.kind);
            println!("size {size}");
            for part in &manifest.parts {
                println!("part {} {} {}", part.name, part.size, part.sha256);
            }
            eprintln!(
                "image-builder: done in {:.1}s: {}",
                started.elapsed().as_secs_f64(),
                out.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::KernelCheck {
            config,
            output,
            data,
        } => {
            let recommendations = match &data {
                Some(path) => Recommendations::parse(&read(path)?),
                None => Recommendations::embedded(),
            }
            .context("reading the recommendations")?;
            let kernel_config = KernelConfig::parse(&read(&config)?)
                .with_context(|| format!("reading {}", config.display()))?;
            let report = check(&recommendations, &kernel_config);
            let format = match output {
                OutputFormat::Table => Format::Table,
                OutputFormat::Json => Format::Json,
            };
            print!("{}", render(&report, format));
            Ok(if report.score().not_met == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

fn read(path: &Path) -> anyhow::Result<String> {
    fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}
