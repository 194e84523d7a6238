//! Turning what the user points `push` at into an archive to upload.

use crate::error::CliError;
use flate2::write::GzEncoder;
use flate2::Compression;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The ignore file honoured when a directory is archived (gitignore syntax).
pub const IGNORE_FILE: &str = ".sproutignore";

/// The kinds of archive the server accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveKind {
    TarGz,
    Zip,
}

impl ArchiveKind {
    /// The archive kind named by a file's extension (`.tar.gz`, `.tgz`, `.zip`), case-insensitive.
    pub fn from_path(path: &Path) -> Option<ArchiveKind> {
        let name = path.file_name()?.to_string_lossy().to_ascii_lowercase();
        if name.ends_with(".tar.gz") || name.ends_with(".tgz") {
            Some(ArchiveKind::TarGz)
        } else if name.ends_with(".zip") {
            Some(ArchiveKind::Zip)
        } else {
            None
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            ArchiveKind::TarGz => "application/gzip",
            ArchiveKind::Zip => "application/zip",
        }
    }
}

/// A bundle ready to upload: a path plus, for an archived directory, the temp file that
/// holds it (deleted on drop).
#[derive(Debug)]
pub struct Bundle {
    pub path: PathBuf,
    pub kind: ArchiveKind,
    /// Files archived, when the CLI built the archive from a directory.
    pub files: Option<usize>,
    _temp: Option<tempfile::TempPath>,
}

/// Prepares `source` for upload: archives a directory to a temp `.tar.gz`; passes a
/// `.tar.gz`/`.tgz`/`.zip` file through as is.
pub fn prepare_bundle(source: &Path) -> Result<Bundle, CliError> {
    let meta = std::fs::metadata(source).map_err(|e| CliError::file(source, e))?;
    if meta.is_dir() {
        let temp = tempfile::Builder::new()
            .prefix("sprout-bundle-")
            .suffix(".tar.gz")
            .tempfile()
            .map_err(|e| CliError::Usage(format!("cannot create a temporary file: {e}")))?;
        let (file, temp_path) = temp.into_parts();
        let files = archive_dir(source, std::io::BufWriter::new(file))?;
        if files == 0 {
            return Err(CliError::Usage(format!(
                "{}: nothing to push (the directory is empty or everything is ignored)",
                source.display()
            )));
        }
        return Ok(Bundle {
            path: temp_path.to_path_buf(),
            kind: ArchiveKind::TarGz,
            files: Some(files),
            _temp: Some(temp_path),
        });
    }
    if !meta.is_file() {
        return Err(CliError::Usage(format!(
            "{}: not a directory or an archive",
            source.display()
        )));
    }
    match ArchiveKind::from_path(source) {
        Some(kind) => Ok(Bundle {
            path: source.to_path_buf(),
            kind,
            files: None,
            _temp: None,
        }),
        None => Err(CliError::Usage(format!(
            "{}: expected a directory or a .tar.gz, .tgz or .zip archive",
            source.display()
        ))),
    }
}

/// Writes `dir` as a gzipped tar to `out`, honouring `.sproutignore` files (gitignore syntax,
/// in any subdirectory) and skipping `.git/`. Paths are relative to `dir`; file modes are
/// kept; symbolic links are stored as links. Returns the number of entries that are not
/// directories.
pub fn archive_dir<W: Write>(dir: &Path, out: W) -> Result<usize, CliError> {
    let gz = GzEncoder::new(out, Compression::default());
    let mut tar = tar::Builder::new(gz);
    tar.follow_symlinks(false);
    tar.mode(tar::HeaderMode::Complete);

    let walker = ignore::WalkBuilder::new(dir)
        .standard_filters(false)
        .hidden(false)
        .parents(false)
        .follow_links(false)
        .require_git(false)
        .add_custom_ignore_filename(IGNORE_FILE)
        .filter_entry(|entry| entry.depth() == 0 || entry.file_name() != ".git")
        .sort_by_file_name(|a, b| a.cmp(b))
        .build();

    let mut files = 0usize;
    for entry in walker {
        let entry =
            entry.map_err(|e| CliError::Usage(format!("cannot read {}: {e}", dir.display())))?;
        if entry.depth() == 0 {
            continue;
        }
        let path = entry.path();
        let rel = path.strip_prefix(dir).map_err(|_| {
            CliError::Usage(format!("{}: outside of {}", path.display(), dir.display()))
        })?;
        let Some(file_type) = entry.file_type() else {
            continue;
        };
        if !(file_type.is_dir() || file_type.is_file() || file_type.is_symlink()) {
            eprintln!(
                "warning: skipping {} (not a file, directory or link)",
                rel.display()
            );
            continue;
        }
        tar.append_path_with_name(path, rel)
            .map_err(|e| CliError::file(path, e))?;
        if !file_type.is_dir() {
            files += 1;
        }
    }
    let gz = tar
        .into_inner()
        .map_err(|e| CliError::Usage(format!("cannot write the archive: {e}")))?;
    let mut out = gz
        .finish()
        .map_err(|e| CliError::Usage(format!("cannot write the archive: {e}")))?;
    out.flush()
        .map_err(|e| CliError::Usage(format!("cannot write the archive: {e}")))?;
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::read::GzDecoder;
    use std::collections::BTreeMap;

    #[test]
    fn detects_archives_by_extension() {
        assert_eq!(
            ArchiveKind::from_path(Path::new("a/app.tar.gz")),
            Some(ArchiveKind::TarGz)
        );
        assert_eq!(
            ArchiveKind::from_path(Path::new("APP.TGZ")),
            Some(ArchiveKind::TarGz)
        );
        assert_eq!(
            ArchiveKind::from_path(Path::new("x.zip")),
            Some(ArchiveKind::Zip)
        );
        assert_eq!(ArchiveKind::from_path(Path::new("x.tar")), None);
        assert_eq!(ArchiveKind::from_path(Path::new("x.gz")), None);
        assert_eq!(ArchiveKind::from_path(Path::new("zip")), None);
        assert_eq!(ArchiveKind::from_path(Path::new("/")), None);
        assert_eq!(ArchiveKind::TarGz.content_type(), "application/gzip");
        assert_eq!(ArchiveKind::Zip.content_type(), "application/zip");
    }

    #[test]
    fn non_archive_files_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("app.txt");
        std::fs::write(&f, "x").unwrap();
        let e = prepare_bundle(&f).unwrap_err();
        assert!(e.to_string().contains(".tar.gz"), "{e}");
        let e = prepare_bundle(&tmp.path().join("missing")).unwrap_err();
        assert!(e.to_string().contains("missing"), "{e}");
        let z = tmp.path().join("app.zip");
        std::fs::write(&z, "PK").unwrap();
        let b = prepare_bundle(&z).unwrap();
        assert_eq!((b.path, b.kind, b.files), (z, ArchiveKind::Zip, None));
    }

    /// Entries of a tar.gz: path → (type, mode, content or link target).
    fn read_back(path: &Path) -> BTreeMap<String, (char, u32, String)> {
        let file = std::fs::File::open(path).unwrap();
        let mut ar = tar::Archive::new(GzDecoder::new(file));
        let mut out = BTreeMap::new();
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let name = e
                .path()
                .unwrap()
                .to_string_lossy()
                .trim_end_matches('/')
                .to_string();
            let kind = match e.header().entry_type() {
                tar::EntryType::Directory => 'd',
                tar::EntryType::Symlink => 'l',
                tar::EntryType::Regular => 'f',
                other => panic!("unexpected entry type {other:?}"),
            };
            let mode = e.header().mode().unwrap() & 0o777;
            let body = if kind == 'l' {
                e.link_name()
                    .unwrap()
                    .unwrap()
                    .to_string_lossy()
                    .to_string()
            } else {
                let mut s = String::new();
                std::io::Read::read_to_string(&mut e, &mut s).unwrap();
                s
            };
            out.insert(name, (kind, mode, body));
        }
        out
    }

    #[cfg(unix)]
    #[test]
    fn archives_a_directory_honouring_sproutignore() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        std::fs::write(d.join("Procfile"), "web: ./run\n").unwrap();
        std::fs::write(d.join("run"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(d.join("run"), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(d.join(".sproutignore"), "*.log\nnode_modules/\n").unwrap();
        std::fs::write(d.join("debug.log"), "noise").unwrap();
        std::fs::create_dir_all(d.join("node_modules/pkg")).unwrap();
        std::fs::write(d.join("node_modules/pkg/index.js"), "x").unwrap();
        std::fs::create_dir_all(d.join(".git")).unwrap();
        std::fs::write(d.join(".git/HEAD"), "ref").unwrap();
        std::fs::write(d.join(".gitignore"), "Procfile\n").unwrap(); // not honoured
        std::fs::create_dir_all(d.join("src/sub")).unwrap();
        std::fs::write(d.join("src/app.py"), "print(1)").unwrap();
        std::fs::write(d.join("src/sub/.sproutignore"), "secret.txt\n").unwrap();
        std::fs::write(d.join("src/sub/secret.txt"), "s").unwrap();
        std::fs::write(d.join("src/sub/keep.txt"), "k").unwrap();
        std::os::unix::fs::symlink("src/app.py", d.join("link")).unwrap();

        let out = tmp.path().with_extension("out.tar.gz");
        let files = archive_dir(d, std::fs::File::create(&out).unwrap()).unwrap();
        let entries = read_back(&out);
        let names: Vec<&str> = entries.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                ".gitignore",
                ".sproutignore",
                "Procfile",
                "link",
                "run",
                "src",
                "src/app.py",
                "src/sub",
                "src/sub/.sproutignore",
                "src/sub/keep.txt"
            ]
        );
        assert_eq!(files, 8);
        assert_eq!(entries["run"], ('f', 0o755, "#!/bin/sh\n".to_string()));
        assert_eq!(entries["Procfile"].2, "web: ./run\n");
        assert_eq!(
            entries["link"],
            ('l', entries["link"].1, "src/app.py".to_string())
        );
        assert_eq!(entries["src"].0, 'd');
        std::fs::remove_file(out).unwrap();
    }

    #[test]
    fn prepare_bundle_archives_directories_to_a_temp_file() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("Procfile"), "web: x\n").unwrap();
        let b = prepare_bundle(tmp.path()).unwrap();
        assert_eq!(b.kind, ArchiveKind::TarGz);
        assert_eq!(b.files, Some(1));
        let path = b.path.clone();
        assert!(path.exists());
        assert!(read_back(&path).contains_key("Procfile"));
        drop(b);
        assert!(!path.exists(), "the temp archive is removed on drop");

        let empty = tempfile::tempdir().unwrap();
        assert!(prepare_bundle(empty.path()).is_err());
    }
}
