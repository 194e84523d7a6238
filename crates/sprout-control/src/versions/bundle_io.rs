//! Unpacking an uploaded bundle, entry by entry, under the domain's rules
//! (`sprout_core::bundle`). Synchronous: callers run it on a blocking thread.

use sprout_core::bundle::{
    check_entry, sniff_format, ArchiveFormat, BundleError, BundleLimits, EntryKind, UnpackBudget,
};
use sprout_core::manifest::BundleManifest;
use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// What unpacking learned.
#[derive(Debug, Clone)]
pub struct UnpackedBundle {
    pub format: ArchiveFormat,
    pub manifest: BundleManifest,
    pub entries: u64,
}

fn corrupt(e: impl std::fmt::Display) -> BundleError {
    BundleError::Corrupt(e.to_string())
}

/// Writes entries into `dest` (which must exist and be empty), refusing anything the rules
/// refuse. On error the caller removes `dest`.
struct Writer<'a> {
    dest: &'a Path,
    budget: UnpackBudget,
    /// Links written so far: nothing may be written or read through one.
    links: HashSet<String>,
    /// Symlinks as written (clean path, target), checked once the tree is complete.
    symlinks: Vec<(String, String)>,
    /// Regular files written so far and their sizes: a hard link to one is a copy and
    /// counts against the unpacked limit as what it writes.
    files: HashMap<String, u64>,
}

impl Writer<'_> {
    /// Where `clean` goes in `dest`. Neither a directory above it nor the path itself may be
    /// a link already written: a file written onto a link, or a hard link copied from one,
    /// would go through it.
    fn target(&self, clean: &str, original: &str) -> Result<PathBuf, BundleError> {
        let mut prefix = String::new();
        for part in clean.split('/') {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(part);
            if self.links.contains(&prefix) {
                return Err(BundleError::LinkEscapes {
                    path: original.to_string(),
                    target: prefix,
                });
            }
        }
        Ok(self.dest.join(clean))
    }

    /// Every symlink, followed through the finished tree the way the kernel would (links
    /// through links), must stay inside: each may be harmless alone and climb out in a chain.
    fn check_symlinks(&self) -> Result<(), BundleError> {
        for (path, target) in &self.symlinks {
            if !resolves_inside(self.dest, path) {
                return Err(BundleError::LinkEscapes {
                    path: path.clone(),
                    target: target.clone(),
                });
            }
        }
        Ok(())
    }

    fn parent(&self, path: &Path) -> Result<(), BundleError> {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(corrupt)?;
        }
        Ok(())
    }

    fn file(
        &mut self,
        path: &str,
        size: u64,
        mode: u32,
        body: &mut dyn Read,
    ) -> Result<(), BundleError> {
        self.budget.take_entry(size)?;
        let Some(clean) = check_entry(path, EntryKind::File, None)? else {
            return Err(BundleError::BadName {
                path: path.to_string(),
            });
        };
        let target = self.target(&clean, path)?;
        self.parent(&target)?;
        let mut out = File::create(&target).map_err(corrupt)?;
        // The declared size was charged to the budget before writing; what is written may not
        // pass it (a tar header or a zip directory may lie): one byte over is enough to know.
        let written =
            io::copy(&mut body.take(size.saturating_add(1)), &mut out).map_err(corrupt)?;
        if written > size {
            return Err(BundleError::Corrupt(format!(
                "entry '{path}' is longer than its header says"
            )));
        }
        let perm = if mode & 0o111 != 0 { 0o755 } else { 0o644 };
        fs::set_permissions(&target, fs::Permissions::from_mode(perm)).map_err(corrupt)?;
        self.files.insert(clean, written);
        Ok(())
    }

    fn dir(&mut self, path: &str) -> Result<(), BundleError> {
        self.budget.take_entry(0)?;
        if let Some(clean) = check_entry(path, EntryKind::Directory, None)? {
            let target = self.target(&clean, path)?;
            fs::create_dir_all(&target).map_err(corrupt)?;
        }
        Ok(())
    }

    fn symlink(&mut self, path: &str, link_target: &str) -> Result<(), BundleError> {
        self.budget.take_entry(0)?;
        let Some(clean) = check_entry(path, EntryKind::Symlink, Some(link_target))? else {
            return Err(BundleError::BadName {
                path: path.to_string(),
            });
        };
        let target = self.target(&clean, path)?;
        self.parent(&target)?;
        std::os::unix::fs::symlink(link_target, &target).map_err(corrupt)?;
        self.links.insert(clean.clone());
        self.symlinks.push((clean, link_target.to_string()));
        Ok(())
    }

    fn hardlink(&mut self, path: &str, link_target: &str) -> Result<(), BundleError> {
        let Some(clean) = check_entry(path, EntryKind::Hardlink, Some(link_target))? else {
            return Err(BundleError::BadName {
                path: path.to_string(),
            });
        };
        let target = self.target(&clean, path)?;
        let Some(source_clean) = check_entry(link_target, EntryKind::File, None)? else {
            return Err(BundleError::BadName {
                path: path.to_string(),
            });
        };
        let source = self.target(&source_clean, path)?;
        // Only to a regular file written earlier, whose size is known: a copy of it costs
        // its full size, or ten links to one big file would write ten times the limit.
        let Some(&size) = self.files.get(&source_clean) else {
            return Err(BundleError::Corrupt(format!(
                "entry '{path}' links to '{link_target}', which is not a file earlier in the bundle"
            )));
        };
        self.budget.take_entry(size)?;
        self.parent(&target)?;
        // A copy, not a link: the unpacked tree must not share inodes with anything.
        let mut from = File::open(&source).map_err(corrupt)?;
        let mut out = File::create(&target).map_err(corrupt)?;
        io::copy(&mut (&mut from).take(size), &mut out).map_err(corrupt)?;
        let perm = fs::metadata(&source).map_err(corrupt)?.permissions();
        fs::set_permissions(&target, perm).map_err(corrupt)?;
        self.files.insert(clean, size);
        Ok(())
    }
}

/// Whether the path `link` (clean, relative to `dest`) resolves inside `dest`, following
/// every symlink on the way. A component that does not exist ends the walk lexically.
fn resolves_inside(dest: &Path, link: &str) -> bool {
    const MAX_HOPS: usize = 40; // the kernel's own limit
    let mut pending: std::collections::VecDeque<String> =
        link.split('/').map(str::to_string).collect();
    let mut current: Vec<String> = Vec::new();
    let mut hops = 0;
    while let Some(part) = pending.pop_front() {
        match part.as_str() {
            "" | "." => continue,
            ".." => {
                if current.pop().is_none() {
                    return false;
                }
                continue;
            }
            _ => current.push(part),
        }
        let here = dest.join(current.join("/"));
        let is_link = fs::symlink_metadata(&here).is_ok_and(|m| m.file_type().is_symlink());
        if !is_link {
            continue;
        }
        hops += 1;
        let Ok(target) = fs::read_link(&here) else {
            return false;
        };
        let target = target.to_string_lossy().into_owned();
        if hops > MAX_HOPS || target.starts_with('/') {
            return false;
        }
        current.pop();
        for part in target.split('/').rev() {
            pending.push_front(part.to_string());
        }
    }
    true
}

fn entry_kind(kind: tar::EntryType) -> EntryKind {
    use tar::EntryType::*;
    match kind {
        Regular | Continuous | GNUSparse => EntryKind::File,
        Directory => EntryKind::Directory,
        Symlink => EntryKind::Symlink,
        Link => EntryKind::Hardlink,
        Char => EntryKind::Other("character device"),
        Block => EntryKind::Other("block device"),
        Fifo => EntryKind::Other("FIFO"),
        _ => EntryKind::Other("special entry"),
    }
}

fn unpack_tar_gz(file: File, writer: &mut Writer<'_>) -> Result<(), BundleError> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    for entry in archive.entries().map_err(corrupt)? {
        let mut entry = entry.map_err(corrupt)?;
        let header_kind = entry.header().entry_type();
        // Metadata entries (pax headers, GNU long names) are consumed by the reader itself.
        if matches!(
            header_kind,
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader
        ) {
            continue;
        }
        let path = entry
            .path()
            .map_err(corrupt)?
            .to_string_lossy()
            .into_owned();
        match entry_kind(header_kind) {
            EntryKind::File => {
                let size = entry.size();
                let mode = entry.header().mode().unwrap_or(0o644);
                writer.file(&path, size, mode, &mut entry)?;
            }
            EntryKind::Directory => writer.dir(&path)?,
            kind @ (EntryKind::Symlink | EntryKind::Hardlink) => {
                let target = entry
                    .link_name()
                    .map_err(corrupt)?
                    .map(|t| t.to_string_lossy().into_owned());
                let target = target.unwrap_or_default();
                if kind == EntryKind::Symlink {
                    writer.symlink(&path, &target)?;
                } else {
                    writer.hardlink(&path, &target)?;
                }
            }
            other => {
                check_entry(&path, other, None)?;
            }
        }
    }
    Ok(())
}

fn unpack_zip(file: File, writer: &mut Writer<'_>) -> Result<(), BundleError> {
    let mut archive = zip::ZipArchive::new(file).map_err(corrupt)?;
    for index in 0..archive.len() {
        let mut entry = archive.by_index(index).map_err(corrupt)?;
        let path = entry.name().to_string();
        let mode = entry.unix_mode().unwrap_or(0o644);
        const S_IFMT: u32 = 0o170000;
        match mode & S_IFMT {
            0o120000 => {
                let mut target = String::new();
                entry
                    .by_ref()
                    .take(4096)
                    .read_to_string(&mut target)
                    .map_err(corrupt)?;
                writer.symlink(&path, &target)?;
            }
            0o020000 | 0o060000 | 0o010000 | 0o140000 => {
                check_entry(&path, EntryKind::Other("device or special file"), None)?;
            }
            _ if entry.is_dir() => writer.dir(&path)?,
            _ => {
                let size = entry.size();
                writer.file(&path, size, mode, &mut entry)?;
            }
        }
    }
    Ok(())
}

/// Reads `path` (a tar.gz or zip), unpacks it into `dest` and parses its manifest.
pub fn unpack_bundle(
    path: &Path,
    dest: &Path,
    limits: BundleLimits,
) -> Result<UnpackedBundle, BundleError> {
    let mut head = [0u8; 4];
    let mut file = File::open(path).map_err(corrupt)?;
    let n = file.read(&mut head).map_err(corrupt)?;
    let format = sniff_format(&head[..n])?;
    let file = File::open(path).map_err(corrupt)?;
    fs::create_dir_all(dest).map_err(corrupt)?;
    let mut writer = Writer {
        dest,
        budget: UnpackBudget::new(limits),
        links: HashSet::new(),
        symlinks: Vec::new(),
        files: HashMap::new(),
    };
    match format {
        ArchiveFormat::TarGz => unpack_tar_gz(file, &mut writer)?,
        ArchiveFormat::Zip => unpack_zip(file, &mut writer)?,
    }
    writer.check_symlinks()?;
    let entries = writer.budget.entries();
    if entries == 0 {
        return Err(BundleError::Empty);
    }
    let read_text = |name: &str| -> Result<Option<String>, BundleError> {
        let p = dest.join(name);
        match fs::symlink_metadata(&p) {
            Ok(meta) if meta.is_file() => fs::read_to_string(&p)
                .map(Some)
                .map_err(|e| BundleError::Corrupt(format!("{name}: {e}"))),
            _ => Ok(None),
        }
    };
    let manifest = BundleManifest::parse(
        read_text("Procfile")?.as_deref(),
        read_text("sprout.yaml")?.as_deref(),
    )?
    .with_cron(read_text("cron.yaml")?.as_deref())?;
    Ok(UnpackedBundle {
        format,
        manifest,
        entries,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn tar_gz(build: impl FnOnce(&mut tar::Builder<flate2::write::GzEncoder<Vec<u8>>>)) -> Vec<u8> {
        let mut b = tar::Builder::new(flate2::write::GzEncoder::new(
            Vec::new(),
            flate2::Compression::fast(),
        ));
        build(&mut b);
        b.into_inner()
            .and_then(|gz| gz.finish())
            .unwrap_or_default()
    }

    fn file_entry(
        b: &mut tar::Builder<flate2::write::GzEncoder<Vec<u8>>>,
        path: &str,
        body: &[u8],
    ) {
        let mut h = tar::Header::new_gnu();
        h.set_size(body.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        // Bypass the builder's path checks to craft hostile names.
        let name = &mut h.as_old_mut().name;
        name[..path.len()].copy_from_slice(path.as_bytes());
        h.set_cksum();
        b.append(&h, body).unwrap();
    }

    fn link_entry(
        b: &mut tar::Builder<flate2::write::GzEncoder<Vec<u8>>>,
        path: &str,
        target: &str,
        kind: tar::EntryType,
    ) {
        let mut h = tar::Header::new_gnu();
        h.set_size(0);
        h.set_entry_type(kind);
        let name = &mut h.as_old_mut().name;
        name[..path.len()].copy_from_slice(path.as_bytes());
        let link = &mut h.as_old_mut().linkname;
        link[..target.len()].copy_from_slice(target.as_bytes());
        h.set_cksum();
        b.append(&h, &[][..]).unwrap();
    }

    fn unpack(bytes: &[u8]) -> (tempfile::TempDir, Result<UnpackedBundle, BundleError>) {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("bundle");
        File::create(&archive).unwrap().write_all(bytes).unwrap();
        let dest = dir.path().join("out");
        let result = unpack_bundle(&archive, &dest, BundleLimits::default());
        (dir, result)
    }

    #[test]
    fn good_tar_gz() {
        let bytes = tar_gz(|b| {
            file_entry(b, "Procfile", b"web: python3 app.py\n");
            file_entry(b, "app.py", b"print(1)\n");
            link_entry(b, "current", "app.py", tar::EntryType::Symlink);
        });
        let (dir, result) = unpack(&bytes);
        let unpacked = result.unwrap();
        assert_eq!(
            unpacked.manifest.procfile.command("web"),
            Some("python3 app.py")
        );
        assert!(dir.path().join("out/app.py").is_file());
    }

    #[test]
    fn hostile_tar_entries() {
        let cases: Vec<Vec<u8>> = vec![
            tar_gz(|b| file_entry(b, "/etc/evil", b"x")),
            tar_gz(|b| file_entry(b, "../evil", b"x")),
            tar_gz(|b| link_entry(b, "l", "/etc/passwd", tar::EntryType::Symlink)),
            tar_gz(|b| link_entry(b, "a/l", "../../x", tar::EntryType::Symlink)),
            tar_gz(|b| {
                link_entry(b, "d", ".", tar::EntryType::Symlink);
                link_entry(b, "d/e", "..", tar::EntryType::Symlink);
            }),
            tar_gz(|b| link_entry(b, "null", "", tar::EntryType::Char)),
        ];
        for (i, bytes) in cases.iter().enumerate() {
            let (_dir, result) = unpack(bytes);
            assert!(result.is_err(), "case {i} should be refused");
        }
    }

    #[test]
    fn link_chains_refused() {
        // `a/b` → `..` is the root, harmless alone; chained, links climb out of `out/`.
        let chain = |b: &mut tar::Builder<flate2::write::GzEncoder<Vec<u8>>>, target: &str| {
            link_entry(b, "a/b", "..", tar::EntryType::Symlink);
            link_entry(b, "c", target, tar::EntryType::Symlink);
        };
        let cases: Vec<Vec<u8>> = vec![
            tar_gz(|b| chain(b, "a/b/a/b/../../bundle")),
            // Read through the chain with a hard link, write through it with a file.
            tar_gz(|b| {
                chain(b, "a/b/a/b/../bundle");
                link_entry(b, "h", "c", tar::EntryType::Link);
            }),
            tar_gz(|b| {
                link_entry(b, "c", "inside", tar::EntryType::Symlink);
                file_entry(b, "c", b"onto the link");
            }),
            tar_gz(|b| link_entry(b, "loop", "loop", tar::EntryType::Symlink)),
        ];
        for (i, bytes) in cases.iter().enumerate() {
            let (dir, result) = unpack(bytes);
            assert!(
                matches!(result, Err(BundleError::LinkEscapes { .. })),
                "case {i} should be refused: {result:?}"
            );
            assert_eq!(
                std::fs::read_dir(dir.path()).unwrap().count(),
                2,
                "case {i}"
            );
        }
        // Links to links that stay inside are fine.
        let bytes = tar_gz(|b| {
            file_entry(b, "v1/index.html", b"hi");
            link_entry(b, "current", "v1", tar::EntryType::Symlink);
            link_entry(b, "latest", "current/index.html", tar::EntryType::Symlink);
            link_entry(b, "a/b", "..", tar::EntryType::Symlink);
            link_entry(b, "up", "a/b/a/b/v1", tar::EntryType::Symlink);
        });
        let (_dir, result) = unpack(&bytes);
        assert!(result.is_ok(), "{result:?}");
    }

    #[test]
    fn not_an_archive() {
        let (_d, result) = unpack(b"just text");
        assert!(matches!(result, Err(BundleError::UnknownFormat)));
    }

    #[test]
    fn zip_bundle() {
        let mut buf = io::Cursor::new(Vec::new());
        {
            let mut z = zip::ZipWriter::new(&mut buf);
            let opts = zip::write::SimpleFileOptions::default();
            z.start_file("Procfile", opts).unwrap();
            z.write_all(b"web: ./server\n").unwrap();
            z.finish().unwrap();
        }
        let (_d, result) = unpack(buf.get_ref());
        assert_eq!(result.unwrap().format, ArchiveFormat::Zip);
    }

    fn limited(bytes: &[u8], max_unpacked_bytes: u64) -> Result<UnpackedBundle, BundleError> {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("bundle");
        File::create(&archive).unwrap().write_all(bytes).unwrap();
        let limits = BundleLimits {
            max_unpacked_bytes,
            ..BundleLimits::default()
        };
        unpack_bundle(&archive, &dir.path().join("out"), limits)
    }

    #[test]
    fn hard_links_count_what_they_write() {
        // One 40 kB file and ten links to it: 440 kB written, whatever the archive says.
        let bomb = tar_gz(|b| {
            file_entry(b, "Procfile", b"web: x\n");
            file_entry(b, "big", &[0u8; 40_000]);
            for i in 0..10 {
                link_entry(b, &format!("l{i}"), "big", tar::EntryType::Link);
            }
        });
        assert!(matches!(
            limited(&bomb, 100_000),
            Err(BundleError::ExpandsTooFar { limit: 100_000 })
        ));
        let copies = limited(&bomb, 500_000).unwrap();
        assert_eq!(copies.entries, 12);
        // A link to something that is not an earlier file is refused, not guessed at.
        let dangling = tar_gz(|b| link_entry(b, "h", "later", tar::EntryType::Link));
        assert!(matches!(
            limited(&dangling, 100_000),
            Err(BundleError::Corrupt(e)) if e.contains("'h'")
        ));
    }

    fn zip_of(build: impl FnOnce(&mut zip::ZipWriter<&mut io::Cursor<Vec<u8>>>)) -> Vec<u8> {
        let mut buf = io::Cursor::new(Vec::new());
        {
            let mut z = zip::ZipWriter::new(&mut buf);
            build(&mut z);
            z.finish().unwrap();
        }
        buf.into_inner()
    }

    /// Sets the uncompressed size of the first entry in its local header and in the
    /// central directory, as a hostile zip would.
    fn lie_about_size(zip: &mut [u8], size: u32) {
        let le = size.to_le_bytes();
        zip[22..26].copy_from_slice(&le);
        let central = zip.windows(4).position(|w| w == b"PK\x01\x02").unwrap();
        zip[central + 24..central + 28].copy_from_slice(&le);
    }

    #[test]
    fn zip_sizes_are_what_is_written() {
        let opts = zip::write::SimpleFileOptions::default();
        let zeros = |z: &mut zip::ZipWriter<&mut io::Cursor<Vec<u8>>>| {
            z.start_file("zeros", opts).unwrap();
            z.write_all(&[0u8; 300_000]).unwrap();
        };
        // An honest bomb: over the limit.
        assert!(matches!(
            limited(&zip_of(zeros), 100_000),
            Err(BundleError::ExpandsTooFar { .. })
        ));
        // A lying one: it says 1000 bytes and writes 300 000; refused once past 1000.
        let mut liar = zip_of(zeros);
        lie_about_size(&mut liar, 1000);
        let refused = limited(&liar, 100_000);
        assert!(
            matches!(refused, Err(BundleError::Corrupt(_))),
            "{refused:?}"
        );
        // Many entries of one name: each counts.
        // (The writer refuses duplicate names: write distinct ones, then rename them.)
        let mut dupes = zip_of(|z| {
            for i in 0..5 {
                z.start_file(format!("dup{i}"), opts).unwrap();
                z.write_all(&[0u8; 30_000]).unwrap();
            }
        });
        for i in 0..dupes.len().saturating_sub(4) {
            if dupes[i..i + 3] == *b"dup" && dupes[i + 3].is_ascii_digit() {
                dupes[i + 3] = b'0';
            }
        }
        // The zip reader keeps one entry per name, so repeats cannot multiply what is written.
        let result = limited(&dupes, 100_000).unwrap();
        assert_eq!(result.entries, 1);
    }

    #[test]
    fn repeated_tar_entries_each_count() {
        // Each overwrites the last, but each was written: five 30 kB writes pass 100 kB.
        let dupes = tar_gz(|b| {
            for _ in 0..5 {
                file_entry(b, "same", &[0u8; 30_000]);
            }
        });
        assert!(matches!(
            limited(&dupes, 100_000),
            Err(BundleError::ExpandsTooFar { .. })
        ));
    }

    #[test]
    fn zip_symlinks_checked() {
        let escaping = zip_of(|z| {
            z.add_symlink(
                "l",
                "../../etc/passwd",
                zip::write::SimpleFileOptions::default(),
            )
            .unwrap();
        });
        assert!(matches!(
            limited(&escaping, 100_000),
            Err(BundleError::LinkEscapes { .. })
        ));
        let inside = zip_of(|z| {
            let opts = zip::write::SimpleFileOptions::default();
            z.start_file("app.py", opts).unwrap();
            z.write_all(b"x").unwrap();
            z.add_symlink("current", "app.py", opts).unwrap();
        });
        assert!(limited(&inside, 100_000).is_ok());
    }

    #[test]
    fn zip_slip_refused() {
        let mut buf = io::Cursor::new(Vec::new());
        {
            let mut z = zip::ZipWriter::new(&mut buf);
            let opts = zip::write::SimpleFileOptions::default();
            z.start_file("../../evil", opts).unwrap();
            z.write_all(b"x").unwrap();
            z.finish().unwrap();
        }
        let (_d, result) = unpack(buf.get_ref());
        assert!(matches!(result, Err(BundleError::ParentTraversal { .. })));
    }
}
