//! Output files (quantizer::outfile, used by the GGUF and WAV writers and the CLI): what they do
//! to each kind of existing path (issue 16: `/dev/null` turned into a regular file, symlinks
//! replaced, read-only files silently replaced), and that nothing is left behind on errors.

use std::io::Write;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;

use quantizer::outfile::{check, OutFile};

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

fn write(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut f = OutFile::create(path, false)?;
    f.write_all(data)?;
    f.commit()
}

#[test]
fn new_and_existing_regular_files() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("a.bin");
    write(&p, b"one").unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), b"one");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
    write(&p, b"two").unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), b"two");
    assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o640, "mode kept");
    assert_eq!(names(d.path()), ["a.bin"]);
    let e = write(&d.path().join("no/such/dir/x"), b"x").unwrap_err().to_string();
    assert!(e.contains("no/such/dir"), "{e}");
}

#[test]
fn symlinks_are_written_through() {
    let d = tempfile::tempdir().unwrap();
    let target = d.path().join("target.bin");
    std::fs::write(&target, b"old").unwrap();
    let link = d.path().join("link.bin");
    std::os::unix::fs::symlink("target.bin", &link).unwrap();
    let link2 = d.path().join("link2.bin");
    std::os::unix::fs::symlink(&link, &link2).unwrap();
    write(&link2, b"new").unwrap();
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    assert!(std::fs::symlink_metadata(&link2).unwrap().file_type().is_symlink());
    assert_eq!(std::fs::read(&target).unwrap(), b"new");
    // A dangling link: its target is created.
    let dangling = d.path().join("dangling.bin");
    std::os::unix::fs::symlink(d.path().join("fresh.bin"), &dangling).unwrap();
    write(&dangling, b"fresh").unwrap();
    assert_eq!(std::fs::read(d.path().join("fresh.bin")).unwrap(), b"fresh");
    assert!(std::fs::symlink_metadata(&dangling).unwrap().file_type().is_symlink());
    // A loop is an error, not a hang.
    let (a, b) = (d.path().join("loop-a"), d.path().join("loop-b"));
    std::os::unix::fs::symlink(&b, &a).unwrap();
    std::os::unix::fs::symlink(&a, &b).unwrap();
    assert!(write(&a, b"x").unwrap_err().to_string().contains("symbolic links"));
}

#[test]
fn read_only_files_are_refused_untouched() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("ro.bin");
    std::fs::write(&p, b"keep").unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o444)).unwrap();
    for e in [write(&p, b"x").unwrap_err(), check(&p, false).unwrap_err()] {
        let m = e.to_string();
        assert!(m.contains("read-only") && m.contains("0444") && m.contains("ro.bin"), "{m}");
    }
    assert_eq!(std::fs::read(&p).unwrap(), b"keep");
    assert_eq!(names(d.path()), ["ro.bin"]);
}

#[test]
fn fifos_directories_and_sockets_are_refused_without_blocking() {
    let d = tempfile::tempdir().unwrap();
    let fifo = d.path().join("fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid path; mkfifo only reads it.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    let e = write(&fifo, b"x").unwrap_err().to_string();
    assert!(e.contains("FIFO"), "{e}");
    assert!(std::fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo(), "the FIFO was replaced");
    let sub = d.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    assert!(write(&sub, b"x").unwrap_err().to_string().contains("directory"));
    let sock = d.path().join("sock");
    let _l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    assert!(write(&sock, b"x").unwrap_err().to_string().contains("socket"));
    assert_eq!(names(d.path()), ["fifo", "sock", "sub"]);
}

/// A character device is written directly and stays a device. As root the test makes its own
/// null device node (1, 3) in its temporary directory (never one under /dev); otherwise it uses
/// /dev/null itself, which writing cannot harm.
#[test]
fn character_devices_are_written_directly() {
    let d = tempfile::tempdir().unwrap();
    let node = d.path().join("null");
    let c = std::ffi::CString::new(node.to_str().unwrap()).unwrap();
    // SAFETY: a valid path; mknod only reads it (fails with EPERM unless root).
    let made = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(1, 3)) } == 0;
    let dev = if made { node.clone() } else { std::path::PathBuf::from("/dev/null") };
    eprintln!("device: {} (made here: {made})", dev.display());
    let mut f = OutFile::create(&dev, false).unwrap();
    assert!(!f.seekable());
    f.write_all(b"discarded").unwrap();
    f.commit().unwrap();
    assert!(std::fs::symlink_metadata(&dev).unwrap().file_type().is_char_device());
    assert_eq!(names(d.path()), if made { vec!["null".to_string()] } else { vec![] });
}

#[test]
fn nothing_is_left_on_drop() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("out.bin");
    std::fs::write(&p, b"before").unwrap();
    {
        let mut f = OutFile::create(&p, false).unwrap();
        f.write_all(b"half").unwrap();
        assert_eq!(names(d.path()).len(), 2, "a temporary beside the target");
    }
    assert_eq!(names(d.path()), ["out.bin"]);
    assert_eq!(std::fs::read(&p).unwrap(), b"before");
    assert!(OutFile::create(Path::new("-"), false).unwrap_err().to_string().contains("stdout"));
}
