//! `remove_temporaries` (what the CLI's signal thread calls before it exits on SIGINT/SIGTERM):
//! alone in its test binary, since it removes every live temporary of the process.

use quantizer::outfile::{remove_temporaries, OutFile};

#[test]
fn remove_temporaries_removes_every_live_temporary() {
    let d = tempfile::tempdir().unwrap();
    let a = OutFile::create(&d.path().join("a.bin"), false).unwrap();
    let b = OutFile::create(&d.path().join("b.bin"), false).unwrap();
    assert!(a.temporary().unwrap().exists() && b.temporary().unwrap().exists());
    assert_eq!(remove_temporaries(), 2);
    assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0);
    assert_eq!(remove_temporaries(), 0);
    // The writers, dropped later, find nothing to remove and do not fail.
    drop((a, b));
}
