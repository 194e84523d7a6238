//! Unpacks fuzzed archives with `sprout_control::unpack_bundle` and checks the result.

use sprout_core::bundle::BundleLimits;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Small limits keep every run fast; the limit checks themselves are still exercised.
pub const LIMITS: BundleLimits = BundleLimits {
    max_archive_bytes: 1 << 20,
    max_unpacked_bytes: 4 << 20,
    max_entries: 200,
};

/// Where sandboxes go: tmpfs when there is one (much faster than disk).
fn scratch() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

/// Writes `archive` to a file inside a sandbox three directories deep, unpacks it into
/// `<sandbox>/out`, and panics if anything was written outside `out`, if a link in the
/// result leads outside it, or if a file shares its inode (a hard link kept as one).
pub fn unpack_and_check(archive: &[u8]) {
    let root = tempfile::Builder::new()
        .prefix("sprout-fuzz-")
        .tempdir_in(scratch())
        .expect("scratch directory");
    let sandbox = root.path().join("a/b/c");
    fs::create_dir_all(&sandbox).expect("sandbox");
    let bundle = sandbox.join("bundle");
    fs::write(&bundle, archive).expect("write archive");
    let dest = sandbox.join("out");
    let result = sprout_control::unpack_bundle(&bundle, &dest, LIMITS);

    // Nothing may appear beside the sandbox's own two entries, at any level above `out`.
    for (dir, allowed) in [
        (root.path().to_path_buf(), &["a"][..]),
        (root.path().join("a"), &["b"][..]),
        (root.path().join("a/b"), &["c"][..]),
        (sandbox.clone(), &["bundle", "out"][..]),
    ] {
        for entry in fs::read_dir(&dir).expect("read sandbox") {
            let name = entry.expect("entry").file_name();
            let name = name.to_string_lossy();
            assert!(
                allowed.contains(&name.as_ref()),
                "unpacking wrote {name:?} outside its destination, in {}",
                dir.display()
            );
        }
    }
    if result.is_ok() {
        let dest = fs::canonicalize(&dest).expect("dest exists after success");
        let mut bytes = 0u64;
        let mut entries = 0u64;
        check_tree(&dest, &dest, &mut bytes, &mut entries);
        assert!(
            bytes <= LIMITS.max_unpacked_bytes,
            "unpacked {bytes} bytes, over the limit"
        );
    }
}

fn check_tree(dest: &Path, dir: &Path, bytes: &mut u64, entries: &mut u64) {
    for entry in fs::read_dir(dir).expect("read unpacked tree") {
        let path = entry.expect("entry").path();
        let meta = fs::symlink_metadata(&path).expect("metadata");
        *entries += 1;
        if meta.file_type().is_symlink() {
            // A link may dangle; one that resolves must stay inside.
            if let Ok(real) = fs::canonicalize(&path) {
                assert!(
                    real.starts_with(dest),
                    "link {} resolves outside the bundle, to {}",
                    path.display(),
                    real.display()
                );
            }
        } else if meta.is_dir() {
            check_tree(dest, &path, bytes, entries);
        } else {
            assert!(meta.is_file(), "{} is not a plain file", path.display());
            assert_eq!(meta.nlink(), 1, "{} shares its inode", path.display());
            *bytes += meta.len();
        }
    }
}
