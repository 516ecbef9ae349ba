//! One test per reader check: hostile or broken files give a specific error, never a panic.

use quantizer::gguf::{GgmlType, GgufError, GgufHeader, GgufWriter, MetaValue, TensorSpec};

/// Raw GGUF builder that lets a test write any field value.
#[derive(Default)]
struct Raw {
    b: Vec<u8>,
}

impl Raw {
    fn header(n_tensors: u64, n_kv: u64) -> Self {
        let mut r = Raw::default();
        r.b.extend_from_slice(b"GGUF");
        r.u32(3).u64(n_tensors).u64(n_kv);
        r
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.b.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.b.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn str(&mut self, s: &str) -> &mut Self {
        self.u64(s.len() as u64);
        self.b.extend_from_slice(s.as_bytes());
        self
    }
    /// name, dims, ggml type id, relative offset
    fn tensor(&mut self, name: &str, dims: &[u64], ty: u32, off: u64) -> &mut Self {
        self.str(name).u32(dims.len() as u32);
        for &d in dims {
            self.u64(d);
        }
        self.u32(ty).u64(off)
    }
    /// Pad to 32 and append `n` data bytes.
    fn data(&mut self, n: usize) -> Vec<u8> {
        let mut b = std::mem::take(&mut self.b);
        b.resize(b.len().div_ceil(32) * 32 + n, 0xAB);
        b
    }
}

fn err(bytes: &[u8]) -> GgufError {
    match GgufHeader::parse(bytes) {
        Ok(_) => panic!("expected an error"),
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.contains("byte") || msg.contains("magic"), "error should name an offset: {msg}");
            e
        }
    }
}

fn valid_file() -> Vec<u8> {
    let mut w = GgufWriter::new();
    w.set("general.name", MetaValue::String("x".into()));
    w.add_tensor(TensorSpec { name: "t".into(), dims: vec![32, 2], ty: GgmlType::Q8_0 }).unwrap();
    let mut s = w.begin(Vec::new()).unwrap();
    s.write_tensor(&[1u8; 68]).unwrap();
    s.finish().unwrap()
}

#[test]
fn valid_file_parses() {
    let b = valid_file();
    let h = GgufHeader::parse(&b).unwrap();
    assert_eq!(h.tensors[0].n_bytes, 68);
}

#[test]
fn every_truncation_of_a_valid_file_is_an_error() {
    let b = valid_file();
    let h = GgufHeader::parse(&b).unwrap();
    let end = h.tensors[0].abs_offset + h.tensors[0].n_bytes;
    for n in 0..end as usize {
        assert!(GgufHeader::parse(&b[..n]).is_err(), "prefix of {n} bytes parsed");
    }
}

#[test]
fn truncated_header() {
    assert!(matches!(err(b"GGUF\x03\x00"), GgufError::Truncated { offset: 4, .. }));
}

#[test]
fn bad_magic() {
    let mut b = valid_file();
    b[0] = b'X';
    assert!(matches!(err(&b), GgufError::BadMagic { .. }));
}

#[test]
fn unsupported_version() {
    let mut b = valid_file();
    b[4] = 2;
    assert!(matches!(err(&b), GgufError::UnsupportedVersion { version: 2 }));
}

#[test]
fn huge_tensor_count() {
    let r = Raw::header(u64::MAX, 0);
    assert!(matches!(err(&r.b), GgufError::TooLarge { offset: 8, .. }));
}

#[test]
fn huge_metadata_count() {
    let r = Raw::header(0, 1 << 40);
    assert!(matches!(err(&r.b), GgufError::TooLarge { offset: 16, .. }));
}

#[test]
fn string_length_beyond_file() {
    let mut r = Raw::header(0, 1);
    r.u64(1000).b.extend_from_slice(&[b'a'; 64]);
    assert!(matches!(err(&r.b), GgufError::Truncated { offset: 32, need: 1000, .. }));
}

#[test]
fn huge_string_length_is_capped() {
    let mut r = Raw::header(0, 1);
    r.u64(u64::MAX).b.extend_from_slice(&[0; 64]);
    assert!(matches!(err(&r.b), GgufError::TooLarge { offset: 24, .. }));
}

#[test]
fn huge_array_length() {
    let mut r = Raw::header(0, 1);
    r.str("k").u32(9).u32(4).u64(1 << 50);
    assert!(matches!(err(&r.b), GgufError::TooLarge { .. }));
}

#[test]
fn unknown_value_type() {
    let mut r = Raw::header(0, 1);
    r.str("k").u32(13).u32(0);
    assert!(matches!(err(&r.b), GgufError::UnknownValueType { ty: 13, offset: 33, .. }));
}

#[test]
fn deeply_nested_arrays() {
    let mut r = Raw::header(0, 1);
    r.str("k").u32(9);
    for _ in 0..20 {
        r.u32(9).u64(1);
    }
    r.u32(4).u64(0);
    assert!(matches!(err(&r.b), GgufError::NestingTooDeep { .. }));
}

#[test]
fn invalid_utf8_key() {
    let mut r = Raw::header(0, 1);
    r.u64(2).b.extend_from_slice(&[0xff, 0xfe]);
    r.u32(4).u32(0);
    assert!(matches!(err(&r.b), GgufError::InvalidUtf8 { offset: 32, .. }));
}

#[test]
fn duplicate_key() {
    let mut r = Raw::header(0, 2);
    r.str("k").u32(4).u32(1).str("k").u32(4).u32(2);
    assert!(matches!(err(&r.b), GgufError::DuplicateKey { .. }));
}

#[test]
fn alignment_not_power_of_two() {
    let mut r = Raw::header(0, 1);
    r.str("general.alignment").u32(4).u32(48);
    assert!(matches!(err(&r.b), GgufError::BadAlignment { .. }));
}

#[test]
fn alignment_wrong_type() {
    let mut r = Raw::header(0, 1);
    r.str("general.alignment").u32(10).u64(32);
    assert!(matches!(err(&r.b), GgufError::BadAlignment { .. }));
}

#[test]
fn tensor_offset_beyond_file() {
    let mut r = Raw::header(1, 0);
    r.tensor("t", &[32], 0, 1 << 20);
    let b = r.data(128);
    assert!(matches!(err(&b), GgufError::DataOutOfBounds { .. }));
}

#[test]
fn tensor_data_extends_past_end() {
    let mut r = Raw::header(1, 0);
    r.tensor("t", &[32], 0, 0);
    let b = r.data(127); // needs 128
    assert!(matches!(err(&b), GgufError::DataOutOfBounds { end, .. } if end > b.len() as u64));
}

#[test]
fn offset_plus_size_overflow() {
    let mut r = Raw::header(1, 0);
    r.tensor("t", &[32], 0, u64::MAX - 31);
    let b = r.data(128);
    assert!(matches!(err(&b), GgufError::DataOutOfBounds { .. }));
}

#[test]
fn misaligned_offset() {
    let mut r = Raw::header(2, 0);
    r.tensor("a", &[4], 0, 0).tensor("b", &[4], 0, 16);
    let b = r.data(64);
    assert!(matches!(err(&b), GgufError::MisalignedOffset { data_offset: 16, alignment: 32, .. }));
}

#[test]
fn overlapping_tensors() {
    let mut r = Raw::header(2, 0);
    r.tensor("a", &[16], 0, 0).tensor("b", &[16], 0, 32);
    let b = r.data(128);
    assert!(matches!(err(&b), GgufError::Overlap { .. }));
}

#[test]
fn same_offset_is_overlap() {
    let mut r = Raw::header(2, 0);
    r.tensor("a", &[8], 0, 0).tensor("b", &[8], 0, 0);
    let b = r.data(64);
    assert!(matches!(err(&b), GgufError::Overlap { .. }));
}

#[test]
fn overflowing_dims() {
    let mut r = Raw::header(1, 0);
    r.tensor("t", &[1 << 32, 1 << 32, 4], 0, 0);
    let b = r.data(64);
    assert!(matches!(err(&b), GgufError::DimOverflow { .. }));
}

#[test]
fn byte_size_overflow() {
    // element count fits in i64 but bytes (x4) do not
    let mut r = Raw::header(1, 0);
    r.tensor("t", &[1 << 31, 1 << 31], 0, 0);
    let b = r.data(64);
    assert!(matches!(err(&b), GgufError::DimOverflow { .. }));
}

#[test]
fn zero_dim() {
    let mut r = Raw::header(1, 0);
    r.tensor("t", &[32, 0], 0, 0);
    let b = r.data(64);
    assert!(matches!(err(&b), GgufError::BadDim { index: 1, value: 0, .. }));
}

#[test]
fn unknown_ggml_type() {
    let mut r = Raw::header(1, 0);
    r.tensor("t", &[32], 4, 0); // 4 was removed from ggml
    let b = r.data(64);
    assert!(matches!(err(&b), GgufError::UnknownGgmlType { ty: 4, .. }));
}

#[test]
fn too_many_dims() {
    let mut r = Raw::header(1, 0);
    r.tensor("t", &[1, 1, 1, 1, 1], 0, 0);
    let b = r.data(64);
    assert!(matches!(err(&b), GgufError::BadDimCount { n_dims: 5, .. }));
}

#[test]
fn zero_dims() {
    let mut r = Raw::header(1, 0);
    r.tensor("t", &[], 0, 0);
    let b = r.data(64);
    assert!(matches!(err(&b), GgufError::BadDimCount { n_dims: 0, .. }));
}

#[test]
fn row_not_block_multiple() {
    let mut r = Raw::header(1, 0);
    r.tensor("t", &[33, 2], 8, 0);
    let b = r.data(128);
    assert!(matches!(err(&b), GgufError::RowNotBlockMultiple { ne0: 33, block: 32, .. }));
}

#[test]
fn duplicate_tensor_name() {
    let mut r = Raw::header(2, 0);
    r.tensor("t", &[8], 0, 0).tensor("t", &[8], 0, 32);
    let b = r.data(64);
    assert!(matches!(err(&b), GgufError::DuplicateTensor { .. }));
}

#[test]
fn tensor_name_too_long() {
    let mut r = Raw::header(1, 0);
    let long = "x".repeat(5000);
    r.tensor(&long, &[8], 0, 0);
    let b = r.data(64);
    assert!(matches!(err(&b), GgufError::TooLarge { .. }));
}

#[test]
fn missing_data_section_padding() {
    let mut r = Raw::header(1, 0);
    r.tensor("t", &[8], 0, 0);
    let b = r.b.clone(); // header ends before the aligned data section
    assert!(err(&b).to_string().contains("byte"));
}

/// Issue 16 item 10: a count within the limits that the rest of the file cannot hold is reported
/// as a truncated file, not as "above the limit of 0".
#[test]
fn count_beyond_a_cut_file_says_truncated() {
    let r = Raw::header(5, 0);
    let e = err(&r.b);
    assert!(matches!(e, GgufError::Truncated { offset: 8, .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.starts_with("truncated file: tensor_count = 5 at byte 8"), "{msg}");
    let r = Raw::header(0, 3);
    let msg = err(&r.b).to_string();
    assert!(msg.contains("truncated") && msg.contains("metadata"), "{msg}");
}
