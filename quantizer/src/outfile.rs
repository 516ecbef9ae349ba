//! Output files that never destroy what they replace (the GGUF writer, the WAV writers, the CLI).
//!
//! [`OutFile::create`] looks at what the path names before anything is written:
//! - nothing yet: a temporary file beside it, renamed into place by [`OutFile::commit`];
//! - a regular file we may write: the same, with the old file's permission bits kept;
//! - a symbolic link: followed (to any depth up to 40), and its target is what gets replaced or
//!   created — the link itself stays a link;
//! - a regular file without write permission (mode 0444 even for root, or one `access(2)` refuses):
//!   refused, the file untouched;
//! - a character device (`/dev/null`, a terminal) or `-` (where the caller allows stdout): written
//!   directly, never replaced;
//! - a directory, FIFO, socket or block device: refused with what it is (a FIFO would block until
//!   a reader came, and replacing it would destroy it).
//!
//! A temporary file is removed on every error and on drop without commit; the CLI's signal thread
//! calls [`remove_temporaries`] before it exits on SIGINT/SIGTERM, so an interrupted run leaves
//! nothing behind either.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Temporary files alive in this process (for [`remove_temporaries`]).
static LIVE: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

fn live() -> std::sync::MutexGuard<'static, Vec<PathBuf>> {
    LIVE.lock().unwrap_or_else(|p| p.into_inner())
}

/// Removes every temporary output file of this process that is not committed yet (for a signal
/// handler thread before it exits; the writers' own drops do it otherwise). Returns how many.
pub fn remove_temporaries() -> usize {
    let mut v = live();
    let n = v.len();
    for p in v.drain(..) {
        let _ = fs::remove_file(p);
    }
    n
}

fn err(kind: io::ErrorKind, path: &Path, what: impl std::fmt::Display) -> io::Error {
    io::Error::new(kind, format!("{}: {what}", path.display()))
}

/// What an output path turned out to be.
#[derive(Debug)]
enum Plan {
    /// Write `tmp` (beside `target`), rename over `target`; `mode`: the replaced file's bits.
    Replace {
        target: PathBuf,
        mode: Option<u32>,
    },
    /// Write to this (a character device) directly.
    Device(PathBuf),
    Stdout,
}

/// Follows symbolic links from `path` to the path that would really be written.
fn resolve(path: &Path) -> io::Result<(PathBuf, Option<fs::Metadata>)> {
    let mut p = path.to_path_buf();
    for _ in 0..40 {
        match fs::symlink_metadata(&p) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((p, None)),
            Err(e) => return Err(err(e.kind(), path, e)),
            Ok(m) if m.file_type().is_symlink() => {
                let t = fs::read_link(&p).map_err(|e| err(e.kind(), path, e))?;
                p = if t.is_absolute() { t } else { p.parent().unwrap_or(Path::new(".")).join(t) };
            }
            Ok(m) => return Ok((p, Some(m))),
        }
    }
    Err(err(io::ErrorKind::InvalidInput, path, "more than 40 levels of symbolic links"))
}

fn writable(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else { return false };
    // SAFETY: a valid NUL-terminated path; access(2) only reads it.
    unsafe { libc::access(c.as_ptr(), libc::W_OK) == 0 }
}

fn plan(path: &Path, allow_stdout: bool) -> io::Result<Plan> {
    if path.as_os_str() == "-" {
        if allow_stdout {
            return Ok(Plan::Stdout);
        }
        return Err(err(io::ErrorKind::InvalidInput, path, "this output cannot go to stdout; give a file name"));
    }
    if path.as_os_str().is_empty() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty output path"));
    }
    let (target, meta) = resolve(path)?;
    let shown = if target == path { String::new() } else { format!(" (the link's target {})", target.display()) };
    let Some(m) = meta else {
        let dir = target.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        return match fs::metadata(dir) {
            Ok(d) if d.is_dir() => Ok(Plan::Replace { target, mode: None }),
            Ok(_) => Err(err(io::ErrorKind::NotADirectory, path, format!("{} is not a directory", dir.display()))),
            Err(e) => Err(err(e.kind(), path, format!("directory {}{shown}: {e}", dir.display()))),
        };
    };
    let ft = m.file_type();
    if ft.is_file() {
        let mode = m.permissions().mode();
        if mode & 0o222 == 0 || !writable(&target) {
            return Err(err(
                io::ErrorKind::PermissionDenied,
                path,
                format!("read-only file{shown} (mode {:04o}); not replaced", mode & 0o7777),
            ));
        }
        return Ok(Plan::Replace { target, mode: Some(mode & 0o7777) });
    }
    if ft.is_char_device() {
        return Ok(Plan::Device(target));
    }
    let what = kind_of(&ft);
    Err(err(io::ErrorKind::InvalidInput, path, format!("is {what}{shown}; give a regular file's path")))
}

/// What a path that is not a regular file is, for messages: "a directory", "a FIFO (named
/// pipe)", ... (the output writer and the model reader both refuse such paths by name).
pub fn kind_of(ft: &fs::FileType) -> &'static str {
    if ft.is_file() {
        "a regular file"
    } else if ft.is_dir() {
        "a directory"
    } else if ft.is_fifo() {
        "a FIFO (named pipe)"
    } else if ft.is_socket() {
        "a socket"
    } else if ft.is_block_device() {
        "a block device"
    } else if ft.is_char_device() {
        "a character device"
    } else {
        "not a regular file"
    }
}

/// Checks that `path` can be written (what [`OutFile::create`] would refuse, refused now), without
/// creating anything: for front ends that check their output before a long model load.
pub fn check(path: &Path, allow_stdout: bool) -> io::Result<()> {
    plan(path, allow_stdout).map(|_| ())
}

/// An output file being written; see the module docs. Write and seek through it (seeking fails on
/// a device or stdout: [`OutFile::seekable`]).
pub struct OutFile {
    /// The path as given (messages).
    path: PathBuf,
    out: Option<Sink>,
    /// Replace mode: (temporary file, final target).
    tmp: Option<(PathBuf, PathBuf)>,
}

enum Sink {
    File(File),
    Stdout(io::Stdout),
}

impl OutFile {
    /// Opens `path` for writing as described in the module docs; `allow_stdout`: `-` means stdout.
    pub fn create(path: &Path, allow_stdout: bool) -> io::Result<OutFile> {
        let shown = path.to_path_buf();
        match plan(path, allow_stdout)? {
            Plan::Stdout => Ok(OutFile { path: shown, out: Some(Sink::Stdout(io::stdout())), tmp: None }),
            Plan::Device(t) => {
                let f = OpenOptions::new().write(true).open(&t).map_err(|e| err(e.kind(), path, e))?;
                Ok(OutFile { path: shown, out: Some(Sink::File(f)), tmp: None })
            }
            Plan::Replace { target, mode } => {
                let dir = target.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
                let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
                let f = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(mode.unwrap_or(0o666))
                    .open(&tmp)
                    .or_else(|e| {
                        // A stale temporary of an earlier run with our pid: ours to replace.
                        if e.kind() == io::ErrorKind::AlreadyExists && fs::symlink_metadata(&tmp)?.is_file() {
                            fs::remove_file(&tmp)?;
                            OpenOptions::new().write(true).create_new(true).mode(mode.unwrap_or(0o666)).open(&tmp)
                        } else {
                            Err(e)
                        }
                    })
                    .map_err(|e| err(e.kind(), path, format!("creating {}: {e}", tmp.display())))?;
                live().push(tmp.clone());
                if let Some(m) = mode {
                    // The umask applied at creation; the replaced file's bits are what it had.
                    let _ = f.set_permissions(fs::Permissions::from_mode(m));
                }
                Ok(OutFile { path: shown, out: Some(Sink::File(f)), tmp: Some((tmp, target)) })
            }
        }
    }

    /// The path as given.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the output is a temporary file renamed into place (seekable) rather than a device
    /// or stdout written directly.
    pub fn seekable(&self) -> bool {
        self.tmp.is_some()
    }

    /// The temporary file being written (replace mode).
    pub fn temporary(&self) -> Option<&Path> {
        self.tmp.as_ref().map(|t| t.0.as_path())
    }

    /// The open file (replace mode or a device), for preallocation and the like.
    pub fn file(&self) -> Option<&File> {
        match &self.out {
            Some(Sink::File(f)) => Some(f),
            _ => None,
        }
    }

    /// Flushes and, in replace mode, syncs the file and renames it over the target (then syncs the
    /// directory). After an error the temporary file is gone and the target unchanged.
    pub fn commit(mut self) -> io::Result<()> {
        let r = self.commit_inner();
        if r.is_err() {
            self.discard();
        }
        r.map_err(|e| err(e.kind(), &self.path, e))
    }

    fn commit_inner(&mut self) -> io::Result<()> {
        match self.out.take() {
            Some(Sink::Stdout(mut s)) => s.flush(),
            Some(Sink::File(mut f)) => {
                f.flush()?;
                let Some((tmp, target)) = self.tmp.clone() else { return Ok(()) };
                f.sync_all()?;
                drop(f);
                fs::rename(&tmp, &target)?;
                self.tmp = None;
                live().retain(|p| p != &tmp);
                if let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty()) {
                    if let Ok(d) = File::open(dir) {
                        let _ = d.sync_all();
                    }
                }
                Ok(())
            }
            None => Ok(()),
        }
    }

    fn discard(&mut self) {
        self.out = None;
        if let Some((tmp, _)) = self.tmp.take() {
            let _ = fs::remove_file(&tmp);
            live().retain(|p| p != &tmp);
        }
    }
}

impl std::fmt::Debug for OutFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutFile").field("path", &self.path).field("temporary", &self.temporary()).finish()
    }
}

impl Drop for OutFile {
    fn drop(&mut self) {
        self.discard();
    }
}

impl Write for OutFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.out.as_mut() {
            Some(Sink::File(f)) => f.write(buf),
            Some(Sink::Stdout(s)) => s.write(buf),
            None => Err(io::Error::other("output already committed")),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.out.as_mut() {
            Some(Sink::File(f)) => f.flush(),
            Some(Sink::Stdout(s)) => s.flush(),
            None => Ok(()),
        }
    }
}

impl Seek for OutFile {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        match (self.out.as_mut(), self.tmp.is_some()) {
            (Some(Sink::File(f)), true) => f.seek(pos),
            _ => Err(io::Error::new(io::ErrorKind::Unsupported, "output is not seekable (a device or stdout)")),
        }
    }
}

/// Whether `a` and `b` are the same file (device and inode), following links; false when either
/// is missing.
pub fn same_file(a: &Path, b: &Path) -> bool {
    match (fs::metadata(a), fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

/// The path `path` would write to: links followed, made absolute and its directory canonical (the
/// file itself need not exist). For checks such as "not inside the input directory".
pub fn canonical_target(path: &Path) -> io::Result<PathBuf> {
    let (t, _) = resolve(path)?;
    let dir = t.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = t.file_name().ok_or_else(|| err(io::ErrorKind::InvalidInput, path, "not a file name"))?;
    Ok(fs::canonicalize(dir).map_err(|e| err(e.kind(), path, e))?.join(name))
}
