//! The GGUF v3 container: value and tensor types shared by the reader and the writer.
//!
//! Layout (all little-endian): magic `GGUF`, version u32 (3), tensor count u64, metadata count u64,
//! metadata key/value pairs, tensor infos (name, n_dims u32, ne[n_dims] u64 with ne[0] the innermost
//! (row) dimension, ggml type u32, offset u64 relative to the data section), padding to
//! `general.alignment`, then the data section.

mod reader;
mod types;
mod writer;

pub use reader::{GgufError, GgufFile, GgufHeader, Limits, TensorInfo};
pub use types::Abbrev;
pub use types::{GgmlType, MetaArray, MetaValue, ValueType};
pub use writer::{GgufFileWriter, GgufStreamWriter, GgufWriter, StreamError, TensorSpec, WriteError};

/// `GGUF` read as a little-endian u32.
pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";
/// The only version this crate reads and writes.
pub const GGUF_VERSION: u32 = 3;
/// Alignment of the data section and of every tensor when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml's limit on tensor rank.
pub const MAX_DIMS: usize = 4;

/// Round `x` up to a multiple of `align` (a power of two). Returns None on overflow.
pub fn align_up(x: u64, align: u64) -> Option<u64> {
    debug_assert!(align.is_power_of_two());
    x.checked_add(align - 1).map(|v| v & !(align - 1))
}
