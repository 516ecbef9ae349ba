//! Writer → reader round trips.

use quantizer::gguf::{GgmlType, GgufFile, GgufHeader, GgufWriter, MetaArray, MetaValue, TensorSpec};

fn sample_writer() -> GgufWriter {
    let mut w = GgufWriter::new();
    w.set_alignment(64).unwrap();
    w.set("general.architecture", MetaValue::String("qwen3omni".into()));
    w.set("u8", MetaValue::U8(7));
    w.set("i8", MetaValue::I8(-7));
    w.set("u16", MetaValue::U16(65535));
    w.set("i16", MetaValue::I16(-300));
    w.set("u32", MetaValue::U32(123456));
    w.set("i32", MetaValue::I32(-123456));
    w.set("f32", MetaValue::F32(1.5e-6));
    w.set("bool", MetaValue::Bool(true));
    w.set("u64", MetaValue::U64(u64::MAX));
    w.set("i64", MetaValue::I64(i64::MIN));
    w.set("f64", MetaValue::F64(std::f64::consts::PI));
    w.set("strs", MetaValue::Array(MetaArray::String(vec!["a".into(), "".into(), "ünï".into()])));
    w.set("empty", MetaValue::Array(MetaArray::I32(vec![])));
    w.set(
        "nested",
        MetaValue::Array(MetaArray::Array(vec![
            MetaArray::I64(vec![1, 2, 3]),
            MetaArray::String(vec!["x".into()]),
            MetaArray::Array(vec![MetaArray::Bool(vec![true, false])]),
        ])),
    );
    w.add_tensor(TensorSpec { name: "a".into(), dims: vec![32, 3], ty: GgmlType::Q8_0 }).unwrap();
    w.add_tensor(TensorSpec { name: "b".into(), dims: vec![5], ty: GgmlType::F32 }).unwrap();
    w.add_tensor(TensorSpec { name: "c".into(), dims: vec![7, 2, 3], ty: GgmlType::F16 }).unwrap();
    w
}

fn data_for(spec: &TensorSpec, seed: u8) -> Vec<u8> {
    (0..spec.n_bytes()).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

#[test]
fn roundtrip_in_memory_same_metadata_and_bytes() {
    let w = sample_writer();
    let specs = w.tensors().to_vec();
    let meta = w.metadata().to_vec();
    let mut s = w.begin(Vec::new()).unwrap();
    for (i, t) in specs.iter().enumerate() {
        let d = data_for(t, i as u8);
        // write in two pieces to exercise chunked streaming
        let (a, b) = d.split_at(d.len() / 2);
        s.write_data(a).unwrap();
        s.write_data(b).unwrap();
        s.end_tensor().unwrap();
    }
    let total = s.total_size();
    let bytes = s.finish().unwrap();
    assert_eq!(bytes.len() as u64, total);
    let h = GgufHeader::parse(&bytes).unwrap();
    assert_eq!(h.metadata, meta);
    assert_eq!(h.alignment, 64);
    assert_eq!(h.data_offset % 64, 0);
    for (i, (t, spec)) in h.tensors.iter().zip(&specs).enumerate() {
        assert_eq!(t.name, spec.name);
        assert_eq!(t.dims, spec.dims);
        assert_eq!(t.ty, spec.ty);
        assert_eq!(t.abs_offset % 64, 0);
        let s = t.abs_offset as usize;
        assert_eq!(&bytes[s..s + t.n_bytes as usize], &data_for(spec, i as u8)[..]);
    }
    assert_eq!(h.tensor("c").unwrap().n_bytes, 7 * 2 * 3 * 2);
}

#[test]
fn roundtrip_file_is_renamed_only_when_complete() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.gguf");
    let w = sample_writer();
    let specs = w.tensors().to_vec();
    let mut f = w.create_file(&out).unwrap();
    assert!(!out.exists());
    for (i, t) in specs.iter().enumerate() {
        f.write_tensor(&data_for(t, i as u8)).unwrap();
    }
    f.finish().unwrap();
    let g = GgufFile::open(&out).unwrap();
    assert_eq!(g.header.tensors.len(), 3);
    let b = g.header.tensor("b").unwrap();
    assert_eq!(g.tensor_data(b), &data_for(&specs[1], 1)[..]);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "temp file left behind");
}

#[test]
fn abandoned_file_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.gguf");
    let w = sample_writer();
    let specs = w.tensors().to_vec();
    let mut f = w.create_file(&out).unwrap();
    f.write_tensor(&data_for(&specs[0], 0)).unwrap();
    // wrong size is rejected
    assert!(f.write_tensor(&[0u8; 3]).is_err());
    drop(f);
    assert!(!out.exists());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn finish_before_all_tensors_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.gguf");
    let w = sample_writer();
    let specs = w.tensors().to_vec();
    let mut f = w.create_file(&out).unwrap();
    f.write_tensor(&data_for(&specs[0], 0)).unwrap();
    assert!(f.finish().is_err());
    assert!(!out.exists());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn disk_full_maps_to_clear_error() {
    // A sink that fails with ENOSPC once 100 bytes were written.
    struct Full(usize);
    impl std::io::Write for Full {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            if self.0 + b.len() > 100 {
                return Err(std::io::Error::from_raw_os_error(libc_enospc()));
            }
            self.0 += b.len();
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    fn libc_enospc() -> i32 {
        28
    }
    let w = sample_writer();
    let err = match w.begin(Full(0)) {
        Err(e) => e,
        Ok(_) => panic!("header bigger than 100 bytes should fail"),
    };
    assert_eq!(err.kind(), std::io::ErrorKind::StorageFull);
    // /dev/full gives ENOSPC on every write: through the file writer API it must be DiskFull.
    if std::path::Path::new("/dev/full").exists() {
        let f = std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
        let w = sample_writer();
        let mut s = w.begin(std::io::BufWriter::with_capacity(16, f)).map(Some).unwrap_or(None);
        if let Some(s) = s.as_mut() {
            let r = s.write_data(&[0u8; 64]);
            assert!(r.is_err());
        }
    }
}
