//! The rules a bundle's entries must follow. The archive readers (tar.gz, zip) live at the
//! edge and ask these functions about every entry before writing anything.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    #[error("the bundle is not a tar.gz or zip archive")]
    UnknownFormat,
    #[error("the bundle is corrupt: {0}")]
    Corrupt(String),
    #[error("the bundle is {size} bytes, over the {limit}-byte limit")]
    TooLarge { size: u64, limit: u64 },
    #[error("the bundle would expand past the {limit}-byte unpacked limit")]
    ExpandsTooFar { limit: u64 },
    #[error("the bundle has more than {limit} entries")]
    TooManyEntries { limit: u64 },
    #[error("entry '{path}' has an absolute path")]
    AbsolutePath { path: String },
    #[error("entry '{path}' climbs out of the bundle with '..'")]
    ParentTraversal { path: String },
    #[error("entry '{path}' is a link to '{target}', outside the bundle")]
    LinkEscapes { path: String, target: String },
    #[error("entry '{path}' is a {kind}; bundles may hold only files, directories and links")]
    ForbiddenKind { path: String, kind: String },
    #[error("entry '{path}' has an unusable name")]
    BadName { path: String },
    #[error("the bundle is empty")]
    Empty,
    #[error(transparent)]
    Manifest(#[from] crate::manifest::ManifestError),
}

/// Size limits, configurable by the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleLimits {
    pub max_archive_bytes: u64,
    pub max_unpacked_bytes: u64,
    pub max_entries: u64,
}

impl Default for BundleLimits {
    fn default() -> Self {
        Self {
            max_archive_bytes: 256 << 20,
            max_unpacked_bytes: 1 << 30,
            max_entries: 50_000,
        }
    }
}

/// The kind of an archive entry, as the reader saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Directory,
    Symlink,
    Hardlink,
    /// Character/block devices, FIFOs, sockets and anything unknown.
    Other(&'static str),
}

/// Turns an archive path into a clean relative path (`a/b/c`), or says why it is refused.
/// Returns `None` for the archive root itself (`.`, `./`).
pub fn normalize_entry(path: &str) -> Result<Option<String>, BundleError> {
    if path.contains('\0') || path.contains('\\') {
        return Err(BundleError::BadName {
            path: path.to_string(),
        });
    }
    if path.starts_with('/') {
        return Err(BundleError::AbsolutePath {
            path: path.to_string(),
        });
    }
    let mut parts = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => continue,
            ".." => {
                return Err(BundleError::ParentTraversal {
                    path: path.to_string(),
                })
            }
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        return Ok(None);
    }
    Ok(Some(parts.join("/")))
}

/// Checks one entry: its path, its kind, and for links where they point.
/// Returns the clean path to write, or `None` for the root directory entry.
pub fn check_entry(
    path: &str,
    kind: EntryKind,
    link_target: Option<&str>,
) -> Result<Option<String>, BundleError> {
    let clean = normalize_entry(path)?;
    match kind {
        EntryKind::File | EntryKind::Directory => Ok(clean),
        EntryKind::Other(what) => Err(BundleError::ForbiddenKind {
            path: path.to_string(),
            kind: what.to_string(),
        }),
        EntryKind::Symlink | EntryKind::Hardlink => {
            let Some(clean_path) = clean else {
                return Err(BundleError::BadName {
                    path: path.to_string(),
                });
            };
            let target = link_target.unwrap_or("");
            let escapes = || BundleError::LinkEscapes {
                path: path.to_string(),
                target: target.to_string(),
            };
            if target.is_empty() || target.starts_with('/') {
                return Err(escapes());
            }
            // A symlink resolves from its own directory; a hard link names an archive path.
            let mut depth: Vec<&str> = if kind == EntryKind::Symlink {
                let mut dirs: Vec<&str> = clean_path.split('/').collect();
                dirs.pop();
                dirs
            } else {
                Vec::new()
            };
            for part in target.split('/') {
                match part {
                    "" | "." => {}
                    ".." => {
                        if depth.pop().is_none() {
                            return Err(escapes());
                        }
                    }
                    p => depth.push(p),
                }
            }
            if kind == EntryKind::Hardlink && depth.is_empty() {
                return Err(escapes());
            }
            Ok(Some(clean_path))
        }
    }
}

/// Counts bytes as entries are unpacked and refuses to pass the limits.
#[derive(Debug, Clone)]
pub struct UnpackBudget {
    limits: BundleLimits,
    bytes: u64,
    entries: u64,
}

impl UnpackBudget {
    pub fn new(limits: BundleLimits) -> Self {
        Self {
            limits,
            bytes: 0,
            entries: 0,
        }
    }

    pub fn take_entry(&mut self, size: u64) -> Result<(), BundleError> {
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(BundleError::TooManyEntries {
                limit: self.limits.max_entries,
            });
        }
        self.bytes = self.bytes.saturating_add(size);
        if self.bytes > self.limits.max_unpacked_bytes {
            return Err(BundleError::ExpandsTooFar {
                limit: self.limits.max_unpacked_bytes,
            });
        }
        Ok(())
    }

    pub fn entries(&self) -> u64 {
        self.entries
    }
}

/// Recognises an archive by its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ArchiveFormat {
    TarGz,
    Zip,
}

pub fn sniff_format(head: &[u8]) -> Result<ArchiveFormat, BundleError> {
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(ArchiveFormat::TarGz)
    } else if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
        Ok(ArchiveFormat::Zip)
    } else {
        Err(BundleError::UnknownFormat)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_paths() {
        assert_eq!(
            normalize_entry("./app.py").unwrap().as_deref(),
            Some("app.py")
        );
        assert_eq!(
            normalize_entry("a//b/./c").unwrap().as_deref(),
            Some("a/b/c")
        );
        assert_eq!(normalize_entry("./").unwrap(), None);
    }

    #[test]
    fn refused_paths() {
        assert!(matches!(
            normalize_entry("/etc/passwd"),
            Err(BundleError::AbsolutePath { .. })
        ));
        assert!(matches!(
            normalize_entry("a/../../x"),
            Err(BundleError::ParentTraversal { .. })
        ));
        assert!(matches!(
            normalize_entry("../x"),
            Err(BundleError::ParentTraversal { .. })
        ));
        assert!(matches!(
            normalize_entry("a\\b"),
            Err(BundleError::BadName { .. })
        ));
    }

    #[test]
    fn links() {
        assert!(check_entry("static/current", EntryKind::Symlink, Some("v1/index.html")).is_ok());
        assert!(check_entry("a/b/link", EntryKind::Symlink, Some("../c")).is_ok());
        assert!(check_entry("a/link", EntryKind::Symlink, Some("../x")).is_ok());
        assert!(matches!(
            check_entry("a/link", EntryKind::Symlink, Some("../../etc/passwd")),
            Err(BundleError::LinkEscapes { .. })
        ));
        assert!(matches!(
            check_entry("link", EntryKind::Symlink, Some("/etc/passwd")),
            Err(BundleError::LinkEscapes { .. })
        ));
        assert!(check_entry("h", EntryKind::Hardlink, Some("app.py")).is_ok());
        assert!(check_entry("h", EntryKind::Hardlink, Some("../app.py")).is_err());
    }

    #[test]
    fn devices_refused() {
        assert!(matches!(
            check_entry("dev/null", EntryKind::Other("character device"), None),
            Err(BundleError::ForbiddenKind { .. })
        ));
    }

    #[test]
    fn budget() {
        let mut b = UnpackBudget::new(BundleLimits {
            max_archive_bytes: 10,
            max_unpacked_bytes: 100,
            max_entries: 3,
        });
        assert!(b.take_entry(60).is_ok());
        assert!(matches!(
            b.take_entry(41),
            Err(BundleError::ExpandsTooFar { limit: 100 })
        ));
        let mut b = UnpackBudget::new(BundleLimits {
            max_archive_bytes: 10,
            max_unpacked_bytes: 100,
            max_entries: 1,
        });
        assert!(b.take_entry(0).is_ok());
        assert!(matches!(
            b.take_entry(0),
            Err(BundleError::TooManyEntries { .. })
        ));
    }

    #[test]
    fn sniffing() {
        assert_eq!(
            sniff_format(&[0x1f, 0x8b, 8]).ok(),
            Some(ArchiveFormat::TarGz)
        );
        assert_eq!(
            sniff_format(b"PK\x03\x04rest").ok(),
            Some(ArchiveFormat::Zip)
        );
        assert!(sniff_format(b"hello").is_err());
    }
}
