//! What goes into an image's layer (unpacked Debian packages, files of the build
//! machine, symbolic links), and `image-builder oci`, which writes the layout file.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use super::error::ParseError;
use super::reference::valid_tag;
use super::{Config, Image, Layout, Reference};
use crate::build::archive::{Archive, Kind, normal_permissions};
use crate::build::error::{BuildError, IoContext, Result};
use crate::build::inputs::{Cache, Package};
use crate::build::{TEMP_PREFIX, parent_dir};

/// A file or directory of the build machine and where it goes in the layer
/// (`SRC=DEST` on the command line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSpec {
    /// The file or directory to copy.
    pub source: PathBuf,
    /// Its path in the layer, relative (`usr/bin/etcd`).
    pub dest: String,
}

impl FromStr for FileSpec {
    type Err = ParseError;

    fn from_str(spec: &str) -> Result<Self, ParseError> {
        let (source, dest) = split_spec(spec, "SRC=DEST")?;
        Ok(Self {
            source: PathBuf::from(source),
            dest: layer_path(spec, dest)?,
        })
    }
}

/// A symbolic link in the layer (`PATH=TARGET` on the command line), e.g. a busybox
/// applet: `/bin/sh=busybox`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkSpec {
    /// The link's path in the layer, relative (`bin/sh`).
    pub path: String,
    /// What it points to, as given (relative to the link's directory, or absolute).
    pub target: String,
}

impl FromStr for LinkSpec {
    type Err = ParseError;

    fn from_str(spec: &str) -> Result<Self, ParseError> {
        let (path, target) = split_spec(spec, "PATH=TARGET")?;
        Ok(Self {
            path: layer_path(spec, path)?,
            target: target.to_owned(),
        })
    }
}

/// Splits `LEFT=RIGHT`, both non-empty.
fn split_spec<'a>(spec: &'a str, form: &str) -> Result<(&'a str, &'a str), ParseError> {
    match spec.split_once('=') {
        Some((left, right)) if !left.is_empty() && !right.is_empty() => Ok((left, right)),
        _ => Err(ParseError::InvalidSpec {
            spec: spec.to_owned(),
            reason: format!("expected {form}"),
        }),
    }
}

/// A path in the layer without the leading `/`; no `.` or `..` components, so nothing
/// points outside the container's root.
fn layer_path(spec: &str, path: &str) -> Result<String, ParseError> {
    let relative = path.trim_start_matches('/').trim_end_matches('/');
    if relative.is_empty() || relative.split('/').any(|c| matches!(c, "" | "." | "..")) {
        return Err(ParseError::InvalidSpec {
            spec: spec.to_owned(),
            reason: format!("{path:?} is not a plain path in the image (no '.', '..' or '//')"),
        });
    }
    Ok(relative.to_owned())
}

/// The files of a layer, added in this order; a later one replaces an earlier one at
/// the same path.
#[derive(Debug, Clone, Copy)]
pub struct Contents<'a> {
    /// Unpacked packages: every file, directory and link of each.
    pub packages: &'a [Package],
    /// Files and directories of the build machine.
    pub files: &'a [FileSpec],
    /// Symbolic links.
    pub links: &'a [LinkSpec],
}

impl Contents<'_> {
    /// Whether there is nothing to put in a layer.
    pub fn is_empty(&self) -> bool {
        self.packages.is_empty() && self.files.is_empty() && self.links.is_empty()
    }

    /// Reads everything into a layer. Permissions are normalised as
    /// [`normal_permissions`] says.
    pub fn layer(&self) -> Result<Archive> {
        let mut layer = Archive::new();
        for package in self.packages {
            layer.add_tree(&package.root, "")?;
        }
        for file in self.files {
            let meta = fs::metadata(&file.source).map_err(|err| BuildError::BadInput {
                path: file.source.clone(),
                reason: format!("cannot read it for /{}: {err}", file.dest),
            })?;
            if meta.is_dir() {
                layer.add(&file.dest, Kind::Directory, 0o755);
                layer.add_tree(&file.source, &file.dest)?;
            } else {
                let data = fs::read(&file.source).at(&file.source)?;
                layer.add(&file.dest, Kind::File(data), normal_permissions(&meta));
            }
        }
        for link in self.links {
            layer.add(&link.path, Kind::Symlink(link.target.clone()), 0o777);
        }
        Ok(layer)
    }
}

/// The upstream part of a Debian version as an image tag: without the epoch and the
/// Debian revision, up to the first character a tag cannot hold (`1:1.35.0-4+b1` →
/// `1.35.0`, `1.6.20~ds1-1` → `1.6.20`). `None` when nothing usable is left.
pub fn upstream_tag(version: &str) -> Option<String> {
    let without_epoch = match version.split_once(':') {
        Some((epoch, rest)) if epoch.bytes().all(|b| b.is_ascii_digit()) => rest,
        _ => version,
    };
    let upstream = without_epoch
        .rsplit_once('-')
        .map_or(without_epoch, |(upstream, _)| upstream);
    let end = upstream
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
        .unwrap_or(upstream.len());
    let tag = &upstream[..end];
    valid_tag(tag).then(|| tag.to_owned())
}

/// What `image-builder oci` builds.
#[derive(Debug, Clone)]
pub struct Options {
    /// The image's name.
    pub reference: Reference,
    /// Debian packages whose files go into the layer.
    pub packages: Vec<String>,
    /// Files of the build machine for the layer.
    pub files: Vec<FileSpec>,
    /// Symbolic links for the layer.
    pub links: Vec<LinkSpec>,
    /// What its containers run.
    pub config: Config,
    /// The layout tar file to write (replaced if it exists).
    pub out: PathBuf,
    /// The package cache, as for `image-builder build`.
    pub cache: PathBuf,
    /// The mtime of every file.
    pub source_date_epoch: u64,
}

/// Builds the image and writes its layout to `options.out` (a temporary file renamed
/// into place, so a failure leaves no partial file). Returns the layout and the
/// packages used.
pub fn build(options: &Options) -> Result<(Layout, Vec<Package>)> {
    let packages = if options.packages.is_empty() {
        Vec::new()
    } else {
        let cache = Cache::open(&options.cache)?;
        options
            .packages
            .iter()
            .map(|name| cache.fetch(name))
            .collect::<Result<Vec<_>>>()?
    };
    let contents = Contents {
        packages: &packages,
        files: &options.files,
        links: &options.links,
    };
    if contents.is_empty() {
        return Err(BuildError::InvalidOption(
            "the image would be empty: give --package, --file or --link".into(),
        ));
    }
    let image = Image {
        reference: options.reference.clone(),
        config: options.config.clone(),
        layer: contents.layer()?,
    };
    let layout = image.layout(options.source_date_epoch);
    write_atomically(&options.out, &layout.tar)?;
    Ok((layout, packages))
}

/// Writes `data` to a temporary file next to `path`, mode 0644, and renames it to
/// `path`.
fn write_atomically(path: &Path, data: &[u8]) -> Result<()> {
    let parent = parent_dir(path);
    let mut file = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .tempfile_in(parent)
        .at(parent)?;
    file.write_all(data).at(path)?;
    file.as_file()
        .set_permissions(fs::Permissions::from_mode(0o644))
        .at(path)?;
    file.persist(path).map_err(|err| err.error).at(path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::tar::read;

    #[test]
    fn specs_parse_into_plain_layer_paths() {
        let file: FileSpec = "./etcd=/usr/bin/etcd".parse().unwrap();
        assert_eq!(file.source, PathBuf::from("./etcd"));
        assert_eq!(file.dest, "usr/bin/etcd");
        let link: LinkSpec = "/bin/sh=busybox".parse().unwrap();
        assert_eq!(
            (link.path.as_str(), link.target.as_str()),
            ("bin/sh", "busybox")
        );
        for bad in ["etcd", "=/x", "x=", "x=/", "x=/a/../b", "x=a//b", "x=./a"] {
            let err = bad.parse::<FileSpec>().unwrap_err().to_string();
            assert!(err.starts_with(&format!("{bad:?}: ")), "{err}");
        }
    }

    #[test]
    fn upstream_versions_become_tags() {
        assert_eq!(
            upstream_tag("1:1.35.0-4+deb12u1+b1").as_deref(),
            Some("1.35.0")
        );
        assert_eq!(
            upstream_tag("1.6.20~ds1-1+deb12u3").as_deref(),
            Some("1.6.20")
        );
        assert_eq!(upstream_tag("3.4.30-1").as_deref(), Some("3.4.30"));
        assert_eq!(
            upstream_tag("20250419~deb12u2").as_deref(),
            Some("20250419")
        );
        assert_eq!(upstream_tag("1.2-rc1-3").as_deref(), Some("1.2-rc1"));
        assert_eq!(upstream_tag("~beta"), None);
    }

    #[test]
    fn packages_files_and_links_make_one_layer() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("tree");
        fs::create_dir_all(root.join("bin")).unwrap();
        fs::write(root.join("bin/busybox"), "elf").unwrap();
        fs::set_permissions(root.join("bin/busybox"), fs::Permissions::from_mode(0o755)).unwrap();
        let package = Package {
            name: "busybox-static".into(),
            version: "1:1.35.0-4".into(),
            sha256: "00".into(),
            root,
            depends: Vec::new(),
        };
        let extra = dir.path().join("motd");
        fs::write(&extra, "hello").unwrap();
        let files = [FileSpec {
            source: extra,
            dest: "etc/motd".into(),
        }];
        let links = ["/bin/sh=busybox".parse().unwrap()];
        let contents = Contents {
            packages: std::slice::from_ref(&package),
            files: &files,
            links: &links,
        };
        let tar = crate::build::tar::write(&contents.layer().unwrap(), 0);
        let entries = read::entries(&tar);
        let summary: Vec<_> = entries
            .iter()
            .map(|e| (e.path.as_str(), e.mode, e.link.as_str()))
            .collect();
        assert_eq!(
            summary,
            [
                ("bin/", 0o755, ""),
                ("bin/busybox", 0o755, ""),
                ("bin/sh", 0o777, "busybox"),
                ("etc/", 0o755, ""),
                ("etc/motd", 0o644, "")
            ]
        );
        let missing = [FileSpec {
            source: dir.path().join("missing"),
            dest: "x".into(),
        }];
        let err = Contents {
            packages: &[],
            files: &missing,
            links: &[],
        }
        .layer()
        .unwrap_err()
        .to_string();
        assert!(err.contains("missing: cannot read it for /x"), "{err}");
    }

    #[test]
    fn the_layout_file_is_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("image.tar");
        fs::write(&out, "old").unwrap();
        let source = dir.path().join("hello");
        fs::write(&source, "hi").unwrap();
        let options = Options {
            reference: "node-os.local/hello:1".parse().unwrap(),
            packages: Vec::new(),
            files: vec![FileSpec {
                source,
                dest: "hello".into(),
            }],
            links: Vec::new(),
            config: Config::default(),
            out: out.clone(),
            cache: dir.path().join("cache"),
            source_date_epoch: 0,
        };
        let (layout, packages) = build(&options).unwrap();
        assert!(packages.is_empty());
        assert!(!dir.path().join("cache").exists());
        assert!(fs::read(&out).unwrap() == layout.tar);
        let mode = fs::metadata(&out).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o644);
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "no temporary file left: {names:?}");
        let empty = Options {
            files: Vec::new(),
            ..options
        };
        assert!(
            build(&empty)
                .unwrap_err()
                .to_string()
                .contains("would be empty")
        );
    }
}
