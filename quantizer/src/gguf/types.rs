//! Metadata value types and ggml tensor types.

use std::fmt;

/// GGUF metadata value type tags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum ValueType {
    U8 = 0,
    I8 = 1,
    U16 = 2,
    I16 = 3,
    U32 = 4,
    I32 = 5,
    F32 = 6,
    Bool = 7,
    String = 8,
    Array = 9,
    U64 = 10,
    I64 = 11,
    F64 = 12,
}

impl ValueType {
    pub fn from_u32(v: u32) -> Option<Self> {
        use ValueType::*;
        Some(match v {
            0 => U8,
            1 => I8,
            2 => U16,
            3 => I16,
            4 => U32,
            5 => I32,
            6 => F32,
            7 => Bool,
            8 => String,
            9 => Array,
            10 => U64,
            11 => I64,
            12 => F64,
            _ => return None,
        })
    }

    /// Encoded size of one value of a fixed-size type; the minimum encoded size for
    /// strings (length prefix) and arrays (type tag + count).
    pub fn min_encoded_size(self) -> u64 {
        use ValueType::*;
        match self {
            U8 | I8 | Bool => 1,
            U16 | I16 => 2,
            U32 | I32 | F32 => 4,
            U64 | I64 | F64 | String => 8,
            Array => 12,
        }
    }
}

/// A metadata value.
#[derive(Clone, Debug, PartialEq)]
pub enum MetaValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    Array(MetaArray),
    U64(u64),
    I64(i64),
    F64(f64),
}

/// A homogeneous metadata array. Typed vectors keep memory proportional to the file size.
#[derive(Clone, Debug, PartialEq)]
pub enum MetaArray {
    U8(Vec<u8>),
    I8(Vec<i8>),
    U16(Vec<u16>),
    I16(Vec<i16>),
    U32(Vec<u32>),
    I32(Vec<i32>),
    F32(Vec<f32>),
    Bool(Vec<bool>),
    String(Vec<String>),
    /// Nested arrays; each element carries its own element type.
    Array(Vec<MetaArray>),
    U64(Vec<u64>),
    I64(Vec<i64>),
    F64(Vec<f64>),
}

impl MetaArray {
    pub fn elem_type(&self) -> ValueType {
        match self {
            MetaArray::U8(_) => ValueType::U8,
            MetaArray::I8(_) => ValueType::I8,
            MetaArray::U16(_) => ValueType::U16,
            MetaArray::I16(_) => ValueType::I16,
            MetaArray::U32(_) => ValueType::U32,
            MetaArray::I32(_) => ValueType::I32,
            MetaArray::F32(_) => ValueType::F32,
            MetaArray::Bool(_) => ValueType::Bool,
            MetaArray::String(_) => ValueType::String,
            MetaArray::Array(_) => ValueType::Array,
            MetaArray::U64(_) => ValueType::U64,
            MetaArray::I64(_) => ValueType::I64,
            MetaArray::F64(_) => ValueType::F64,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            MetaArray::U8(v) => v.len(),
            MetaArray::I8(v) => v.len(),
            MetaArray::U16(v) => v.len(),
            MetaArray::I16(v) => v.len(),
            MetaArray::U32(v) => v.len(),
            MetaArray::I32(v) => v.len(),
            MetaArray::F32(v) => v.len(),
            MetaArray::Bool(v) => v.len(),
            MetaArray::String(v) => v.len(),
            MetaArray::Array(v) => v.len(),
            MetaArray::U64(v) => v.len(),
            MetaArray::I64(v) => v.len(),
            MetaArray::F64(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl MetaValue {
    pub fn value_type(&self) -> ValueType {
        match self {
            MetaValue::U8(_) => ValueType::U8,
            MetaValue::I8(_) => ValueType::I8,
            MetaValue::U16(_) => ValueType::U16,
            MetaValue::I16(_) => ValueType::I16,
            MetaValue::U32(_) => ValueType::U32,
            MetaValue::I32(_) => ValueType::I32,
            MetaValue::F32(_) => ValueType::F32,
            MetaValue::Bool(_) => ValueType::Bool,
            MetaValue::String(_) => ValueType::String,
            MetaValue::Array(_) => ValueType::Array,
            MetaValue::U64(_) => ValueType::U64,
            MetaValue::I64(_) => ValueType::I64,
            MetaValue::F64(_) => ValueType::F64,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            MetaValue::String(s) => Some(s),
            _ => None,
        }
    }

    /// Any integer type widened to u64 when non-negative.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            MetaValue::U8(v) => Some(v as u64),
            MetaValue::U16(v) => Some(v as u64),
            MetaValue::U32(v) => Some(v as u64),
            MetaValue::U64(v) => Some(v),
            MetaValue::I8(v) => u64::try_from(v).ok(),
            MetaValue::I16(v) => u64::try_from(v).ok(),
            MetaValue::I32(v) => u64::try_from(v).ok(),
            MetaValue::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }
}

/// Abbreviated human-readable rendering (long strings and arrays are cut).
pub struct Abbrev<'a>(pub &'a MetaValue, pub usize);

fn abbrev_str(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        format!("{s:?}")
    } else {
        let head: String = s.chars().take(max).collect();
        format!("{head:?}… ({} bytes)", s.len())
    }
}

fn fmt_array(a: &MetaArray, max: usize, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    macro_rules! items {
        ($v:expr, $render:expr) => {{
            let shown: Vec<String> = $v.iter().take(max).map($render).collect();
            write!(f, "[{}", shown.join(", "))?;
            if $v.len() > max {
                write!(f, ", … ({} total)", $v.len())?;
            }
            write!(f, "]")
        }};
    }
    match a {
        MetaArray::U8(v) => items!(v, |x| x.to_string()),
        MetaArray::I8(v) => items!(v, |x| x.to_string()),
        MetaArray::U16(v) => items!(v, |x| x.to_string()),
        MetaArray::I16(v) => items!(v, |x| x.to_string()),
        MetaArray::U32(v) => items!(v, |x| x.to_string()),
        MetaArray::I32(v) => items!(v, |x| x.to_string()),
        MetaArray::F32(v) => items!(v, |x| x.to_string()),
        MetaArray::Bool(v) => items!(v, |x| x.to_string()),
        MetaArray::String(v) => items!(v, |x| abbrev_str(x, 40)),
        MetaArray::U64(v) => items!(v, |x| x.to_string()),
        MetaArray::I64(v) => items!(v, |x| x.to_string()),
        MetaArray::F64(v) => items!(v, |x| x.to_string()),
        MetaArray::Array(v) => {
            write!(f, "[")?;
            for (i, inner) in v.iter().take(max).enumerate() {
                if i > 0 {
                    write!(f, ", ")?;
                }
                fmt_array(inner, max, f)?;
            }
            if v.len() > max {
                write!(f, ", … ({} total)", v.len())?;
            }
            write!(f, "]")
        }
    }
}

impl fmt::Display for Abbrev<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let max = self.1;
        match self.0 {
            MetaValue::String(s) => write!(f, "{}", abbrev_str(s, 120)),
            MetaValue::Array(a) => {
                write!(f, "{:?}[{}] ", a.elem_type(), a.len())?;
                fmt_array(a, max, f)
            }
            MetaValue::U8(v) => write!(f, "{v}"),
            MetaValue::I8(v) => write!(f, "{v}"),
            MetaValue::U16(v) => write!(f, "{v}"),
            MetaValue::I16(v) => write!(f, "{v}"),
            MetaValue::U32(v) => write!(f, "{v}"),
            MetaValue::I32(v) => write!(f, "{v}"),
            MetaValue::F32(v) => write!(f, "{v}"),
            MetaValue::Bool(v) => write!(f, "{v}"),
            MetaValue::U64(v) => write!(f, "{v}"),
            MetaValue::I64(v) => write!(f, "{v}"),
            MetaValue::F64(v) => write!(f, "{v}"),
        }
    }
}

/// ggml tensor types this crate knows the block geometry of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q8_1,
    Q2K,
    Q3K,
    Q4K,
    Q5K,
    Q6K,
    Q8K,
    I8,
    I16,
    I32,
    I64,
    F64,
    BF16,
}

impl GgmlType {
    /// (ggml id, elements per block, bytes per block, name)
    const TABLE: [(GgmlType, u32, u64, u64, &'static str); 20] = [
        (GgmlType::F32, 0, 1, 4, "F32"),
        (GgmlType::F16, 1, 1, 2, "F16"),
        (GgmlType::Q4_0, 2, 32, 18, "Q4_0"),
        (GgmlType::Q4_1, 3, 32, 20, "Q4_1"),
        (GgmlType::Q5_0, 6, 32, 22, "Q5_0"),
        (GgmlType::Q5_1, 7, 32, 24, "Q5_1"),
        (GgmlType::Q8_0, 8, 32, 34, "Q8_0"),
        (GgmlType::Q8_1, 9, 32, 36, "Q8_1"),
        (GgmlType::Q2K, 10, 256, 84, "Q2_K"),
        (GgmlType::Q3K, 11, 256, 110, "Q3_K"),
        (GgmlType::Q4K, 12, 256, 144, "Q4_K"),
        (GgmlType::Q5K, 13, 256, 176, "Q5_K"),
        (GgmlType::Q6K, 14, 256, 210, "Q6_K"),
        (GgmlType::Q8K, 15, 256, 292, "Q8_K"),
        (GgmlType::I8, 24, 1, 1, "I8"),
        (GgmlType::I16, 25, 1, 2, "I16"),
        (GgmlType::I32, 26, 1, 4, "I32"),
        (GgmlType::I64, 27, 1, 8, "I64"),
        (GgmlType::F64, 28, 1, 8, "F64"),
        (GgmlType::BF16, 30, 1, 2, "BF16"),
    ];

    fn row(self) -> &'static (GgmlType, u32, u64, u64, &'static str) {
        // The table covers every variant, so the search always succeeds.
        Self::TABLE.iter().find(|r| r.0 == self).unwrap_or(&Self::TABLE[0])
    }

    pub fn from_id(id: u32) -> Option<Self> {
        Self::TABLE.iter().find(|r| r.1 == id).map(|r| r.0)
    }
    pub fn id(self) -> u32 {
        self.row().1
    }
    pub fn block_size(self) -> u64 {
        self.row().2
    }
    pub fn type_size(self) -> u64 {
        self.row().3
    }
    pub fn name(self) -> &'static str {
        self.row().4
    }

    /// Bytes of a tensor with `n_elements` elements whose row length is a multiple of the
    /// block size. None on overflow.
    pub fn bytes_for(self, n_elements: u64) -> Option<u64> {
        (n_elements / self.block_size()).checked_mul(self.type_size())
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
