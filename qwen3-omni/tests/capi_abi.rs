//! The C API's ABI rules: every params struct starts with `struct_size`, filled in by its
//! `*_default_params()`, and a function given another size refuses it (naming the struct and both
//! sizes) without reading past the size field; every output is written on every return, zero
//! after a failure. Called from Rust through the same `extern "C"` functions a C program links
//! (lavapipe, validation on).

mod common;

use std::ffi::{c_void, CStr, CString};
use std::mem::size_of;
use std::ptr::{null, null_mut};
use std::sync::OnceLock;

use qwen3_omni::capi::*;

fn model_path() -> &'static CString {
    static P: OnceLock<CString> = OnceLock::new();
    P.get_or_init(|| {
        let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("capi-abi");
        let file = common::tiny_model_with_tokenizer_at(&dir);
        CString::new(file.to_str().unwrap()).unwrap()
    })
}

fn last_error() -> String {
    unsafe { CStr::from_ptr(qwen3_omni_last_error()) }.to_string_lossy().into_owned()
}

fn expect(status: qwen3_omni_status, want: qwen3_omni_status, what: &str) {
    assert_eq!(status, want, "{what}: got {status} ({})", last_error());
}

fn load() -> *mut qwen3_omni_model {
    let mut p = qwen3_omni_model_default_params();
    p.ctx_size = 128;
    p.validation = true;
    p.pipeline_cache_dir = c"".as_ptr();
    let mut m = null_mut();
    expect(unsafe { qwen3_omni_model_load(model_path().as_ptr(), &p, &mut m) }, QWEN3_OMNI_OK, "load");
    m
}

fn new_session(m: *mut qwen3_omni_model) -> *mut qwen3_omni_session {
    let mut s = null_mut();
    expect(unsafe { qwen3_omni_session_new(m, null(), &mut s) }, QWEN3_OMNI_OK, "session_new");
    s
}

fn finish(m: *mut qwen3_omni_model) {
    let mut info = std::mem::MaybeUninit::<qwen3_omni_model_info>::uninit();
    expect(unsafe { qwen3_omni_model_get_info(m, info.as_mut_ptr()) }, QWEN3_OMNI_OK, "get_info");
    assert_eq!(unsafe { info.assume_init() }.validation_messages, 0, "validation messages");
    expect(unsafe { qwen3_omni_model_free(m) }, QWEN3_OMNI_OK, "model_free");
}

/// A refused size: INVALID_ARGUMENT, and the message names the struct and both sizes.
fn expect_size_refused(status: qwen3_omni_status, name: &str, got: u32, known: usize, what: &str) {
    expect(status, QWEN3_OMNI_ERR_INVALID_ARGUMENT, what);
    let e = last_error();
    assert!(
        e.contains(name) && e.contains(&format!("struct_size is {got},")) && e.contains(&format!("{known} bytes")),
        "{what}: {e}"
    );
}

/// Bytes that are neither zero nor a plausible value, as a C caller's uninitialised stack.
fn garbage<T>() -> T {
    let mut v = std::mem::MaybeUninit::<T>::uninit();
    unsafe {
        v.as_mut_ptr().cast::<u8>().write_bytes(0xAB, size_of::<T>());
        v.assume_init()
    }
}

fn all_zero<T>(v: &T) -> bool {
    let b = unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), size_of::<T>()) };
    b.iter().all(|&x| x == 0)
}

#[test]
fn default_params_carry_their_size() {
    let m = qwen3_omni_model_default_params();
    assert_eq!(m.struct_size as usize, size_of::<qwen3_omni_model_params>());
    let s = qwen3_omni_session_default_params();
    assert_eq!(s.struct_size as usize, size_of::<qwen3_omni_session_params>());
    assert_eq!(s.sampling.struct_size as usize, size_of::<qwen3_omni_sampling_params>());
    let g = qwen3_omni_generate_default_params();
    assert_eq!(g.struct_size as usize, size_of::<qwen3_omni_generate_params>());
    // The size is the first field, where a reader finds it before knowing the layout.
    assert_eq!(std::mem::offset_of!(qwen3_omni_model_params, struct_size), 0);
    assert_eq!(std::mem::offset_of!(qwen3_omni_session_params, struct_size), 0);
    assert_eq!(std::mem::offset_of!(qwen3_omni_sampling_params, struct_size), 0);
    assert_eq!(std::mem::offset_of!(qwen3_omni_generate_params, struct_size), 0);
}

/// Sizes a caller might pass: unset, an older (smaller) or newer (larger) header's, garbage.
fn wrong_sizes(known: usize) -> [u32; 5] {
    let k = known as u32;
    [0, k - 8, k + 8, 4, 0xABAB_ABAB]
}

#[test]
fn a_wrong_struct_size_is_refused() {
    let path = model_path();
    let known = size_of::<qwen3_omni_model_params>();
    for size in wrong_sizes(known) {
        let mut p = qwen3_omni_model_default_params();
        p.struct_size = size;
        let mut m: *mut qwen3_omni_model = garbage();
        let st = unsafe { qwen3_omni_model_load(path.as_ptr(), &p, &mut m) };
        expect_size_refused(st, "qwen3_omni_model_params", size, known, &format!("model_load, size {size}"));
        assert!(m.is_null(), "model_load left its output unwritten");
    }
    // The layout before struct_size existed: its first field, `device` = -1, reads as a size.
    #[repr(C)]
    struct OldModelParams {
        device: i32,
        ctx_size: u32,
        validation: bool,
        pipeline_cache_dir: *const i8,
        progress_callback: qwen3_omni_progress_callback,
        progress_user_data: *mut c_void,
    }
    let old = OldModelParams {
        device: -1,
        ctx_size: 128,
        validation: true,
        pipeline_cache_dir: c"".as_ptr(),
        progress_callback: None,
        progress_user_data: null_mut(),
    };
    let mut m = null_mut();
    let st = unsafe { qwen3_omni_model_load(path.as_ptr(), (&old as *const OldModelParams).cast(), &mut m) };
    expect_size_refused(st, "qwen3_omni_model_params", u32::MAX, known, "model_load, old layout");

    let m = load();
    let known = size_of::<qwen3_omni_session_params>();
    for size in wrong_sizes(known) {
        let mut p = qwen3_omni_session_default_params();
        p.struct_size = size;
        let mut s: *mut qwen3_omni_session = garbage();
        let st = unsafe { qwen3_omni_session_new(m, &p, &mut s) };
        expect_size_refused(st, "qwen3_omni_session_params", size, known, &format!("session_new, size {size}"));
        assert!(s.is_null(), "session_new left its output unwritten");
    }
    // The nested sampling struct carries its own size, as it does alone in set_sampling.
    let known = size_of::<qwen3_omni_sampling_params>();
    for size in wrong_sizes(known) {
        let mut p = qwen3_omni_session_default_params();
        p.sampling.struct_size = size;
        let mut s = null_mut();
        let st = unsafe { qwen3_omni_session_new(m, &p, &mut s) };
        let what = format!("session_new, sampling size {size}");
        expect_size_refused(st, "qwen3_omni_sampling_params", size, known, &what);
        assert!(last_error().contains("qwen3_omni_session_params.sampling.struct_size"), "{}", last_error());
    }
    let s = new_session(m);
    for size in wrong_sizes(known) {
        let mut sp = qwen3_omni_session_default_params().sampling;
        sp.struct_size = size;
        let st = unsafe { qwen3_omni_session_set_sampling(s, &sp) };
        expect_size_refused(st, "qwen3_omni_sampling_params", size, known, &format!("set_sampling, size {size}"));
    }
    let known = size_of::<qwen3_omni_generate_params>();
    expect(unsafe { qwen3_omni_session_add_text(s, c"Hello.".as_ptr()) }, QWEN3_OMNI_OK, "add_text");
    for size in wrong_sizes(known) {
        let mut gp = qwen3_omni_generate_default_params();
        gp.struct_size = size;
        let mut r: qwen3_omni_generate_result = garbage();
        let st = unsafe { qwen3_omni_session_generate(s, &gp, &mut r) };
        expect_size_refused(st, "qwen3_omni_generate_params", size, known, &format!("generate, size {size}"));
        assert!(all_zero(&r), "generate left {r:?}");
        assert_eq!(r.stop_reason, QWEN3_OMNI_STOP_NONE);
    }
    // The message refused nothing else: it is still queued and the right size answers it.
    let mut gp = qwen3_omni_generate_default_params();
    gp.max_tokens = 2;
    let mut r = qwen3_omni_generate_result::default();
    expect(unsafe { qwen3_omni_session_generate(s, &gp, &mut r) }, QWEN3_OMNI_OK, "generate");
    assert_eq!((r.n_tokens, r.stop_reason), (2, QWEN3_OMNI_STOP_MAX_TOKENS));
    expect(unsafe { qwen3_omni_session_free(s) }, QWEN3_OMNI_OK, "session_free");
    finish(m);
}

#[cfg(target_os = "linux")]
mod guard_page {
    use std::ffi::c_void;

    extern "C" {
        fn mmap(addr: *mut c_void, len: usize, prot: i32, flags: i32, fd: i32, off: i64) -> *mut c_void;
        fn mprotect(addr: *mut c_void, len: usize, prot: i32) -> i32;
        fn munmap(addr: *mut c_void, len: usize) -> i32;
        fn sysconf(name: i32) -> i64;
    }
    const PROT_NONE: i32 = 0;
    const PROT_READ_WRITE: i32 = 1 | 2;
    const MAP_PRIVATE_ANONYMOUS: i32 = 0x02 | 0x20;
    const SC_PAGESIZE: i32 = 30;

    /// `bytes` placed to end exactly where an inaccessible page begins: reading one byte past
    /// them faults.
    pub struct AtPageEnd {
        base: *mut c_void,
        page: usize,
        pub ptr: *const u8,
    }

    impl AtPageEnd {
        pub fn new(bytes: &[u8]) -> AtPageEnd {
            unsafe {
                let page = sysconf(SC_PAGESIZE) as usize;
                let base = mmap(std::ptr::null_mut(), 2 * page, PROT_READ_WRITE, MAP_PRIVATE_ANONYMOUS, -1, 0);
                assert!(!base.is_null() && base as isize != -1, "mmap");
                assert_eq!(mprotect(base.cast::<u8>().add(page).cast(), page, PROT_NONE), 0, "mprotect");
                let ptr = base.cast::<u8>().add(page - bytes.len());
                std::ptr::copy_nonoverlapping(bytes.as_ptr(), ptr, bytes.len());
                AtPageEnd { base, page, ptr }
            }
        }
    }

    impl Drop for AtPageEnd {
        fn drop(&mut self) {
            unsafe { munmap(self.base, 2 * self.page) };
        }
    }
}

/// A struct from an older header is shorter than this library's: the functions read its size
/// field, refuse it, and never read past its end (here an inaccessible page: a read would crash).
#[cfg(target_os = "linux")]
#[test]
fn a_short_struct_is_not_read_past_its_end() {
    use guard_page::AtPageEnd;
    let path = model_path();
    // 16 bytes whose size field says 16.
    let short: Vec<u8> = [16u32, 0, 0, 0].iter().flat_map(|v| v.to_le_bytes()).collect();
    let at = AtPageEnd::new(&short);
    let just_size = AtPageEnd::new(&4u32.to_le_bytes());
    let m = load();
    let s = new_session(m);
    expect(unsafe { qwen3_omni_session_add_text(s, c"Hello.".as_ptr()) }, QWEN3_OMNI_OK, "add_text");
    for (p, size) in [(&at, 16u32), (&just_size, 4)] {
        let mut out = null_mut();
        let st = unsafe { qwen3_omni_model_load(path.as_ptr(), p.ptr.cast(), &mut out) };
        let n = size_of::<qwen3_omni_model_params>();
        expect_size_refused(st, "qwen3_omni_model_params", size, n, "model_load");
        let mut out = null_mut();
        let st = unsafe { qwen3_omni_session_new(m, p.ptr.cast(), &mut out) };
        let n = size_of::<qwen3_omni_session_params>();
        expect_size_refused(st, "qwen3_omni_session_params", size, n, "session_new");
        let st = unsafe { qwen3_omni_session_set_sampling(s, p.ptr.cast()) };
        let n = size_of::<qwen3_omni_sampling_params>();
        expect_size_refused(st, "qwen3_omni_sampling_params", size, n, "set_sampling");
        let st = unsafe { qwen3_omni_session_generate(s, p.ptr.cast(), null_mut()) };
        let n = size_of::<qwen3_omni_generate_params>();
        expect_size_refused(st, "qwen3_omni_generate_params", size, n, "generate");
    }
    expect(unsafe { qwen3_omni_session_free(s) }, QWEN3_OMNI_OK, "session_free");
    finish(m);
}

/// Every failed call leaves its outputs zeroed (NULL handles, an all-zero result with
/// `QWEN3_OMNI_STOP_NONE`, zero counts, -1 for the default device), never unwritten.
#[test]
fn failed_calls_leave_their_outputs_zeroed() {
    let m = load();
    let s = new_session(m);
    unsafe {
        // generate: a bad handle, nothing queued, a bad max_tokens, a prompt over the context.
        let mut r: qwen3_omni_generate_result = garbage();
        expect(qwen3_omni_session_generate(null_mut(), null(), &mut r), QWEN3_OMNI_ERR_INVALID_HANDLE, "NULL");
        assert!(all_zero(&r), "bad handle: {r:?}");
        r = garbage();
        expect(qwen3_omni_session_generate(s, null(), &mut r), QWEN3_OMNI_ERR_INVALID_ARGUMENT, "nothing queued");
        assert!(all_zero(&r), "nothing queued: {r:?}");
        assert_eq!(r.stop_reason, QWEN3_OMNI_STOP_NONE);
        let mut gp = qwen3_omni_generate_default_params();
        gp.max_tokens = -2;
        r = garbage();
        expect(qwen3_omni_session_add_text(s, c"Hi.".as_ptr()), QWEN3_OMNI_OK, "add_text");
        expect(qwen3_omni_session_generate(s, &gp, &mut r), QWEN3_OMNI_ERR_INVALID_ARGUMENT, "max_tokens -2");
        assert!(all_zero(&r), "max_tokens -2: {r:?}");
        let long = CString::new("word ".repeat(400)).unwrap();
        expect(qwen3_omni_session_add_text(s, long.as_ptr()), QWEN3_OMNI_OK, "add long");
        r = garbage();
        expect(qwen3_omni_session_generate(s, null(), &mut r), QWEN3_OMNI_ERR_CONTEXT_FULL, "too long");
        assert!(all_zero(&r), "context full: {r:?}");
        expect(qwen3_omni_session_reset(s), QWEN3_OMNI_OK, "reset");

        // model_get_info and session_context on bad handles.
        let mut info: qwen3_omni_model_info = garbage();
        expect(qwen3_omni_model_get_info(null(), &mut info), QWEN3_OMNI_ERR_INVALID_HANDLE, "get_info(NULL)");
        assert!(all_zero(&info), "get_info left its output unwritten");
        let (mut used, mut size): (u32, u32) = (garbage(), garbage());
        expect(qwen3_omni_session_context(null_mut(), &mut used, &mut size), QWEN3_OMNI_ERR_INVALID_HANDLE, "ctx");
        assert_eq!((used, size), (0, 0));

        // Handles: NULL after a failed load or session_new.
        let mut out: *mut qwen3_omni_model = garbage();
        expect(qwen3_omni_model_load(c"/nonexistent.gguf".as_ptr(), null(), &mut out), QWEN3_OMNI_ERR_MODEL, "load");
        assert!(out.is_null());
        let mut out: *mut qwen3_omni_session = garbage();
        expect(qwen3_omni_session_new(m, null(), &mut out), QWEN3_OMNI_ERR_BUSY, "second session");
        assert!(out.is_null());

        // device_list: a failure zeroes every entry and the count, and sets the default to -1; a
        // success zeroes the entries past the count.
        let mut devs: [qwen3_omni_device_info; 3] = garbage();
        let mut chosen: i32 = garbage();
        let st = qwen3_omni_device_list(devs.as_mut_ptr(), devs.len(), null_mut(), &mut chosen);
        expect(st, QWEN3_OMNI_ERR_INVALID_ARGUMENT, "device_list without n_devices");
        assert!(devs.iter().all(all_zero), "device_list left entries unwritten");
        assert_eq!(chosen, -1);
        let mut n: usize = garbage();
        let st = qwen3_omni_device_list(null_mut(), 2, &mut n, &mut chosen);
        expect(st, QWEN3_OMNI_ERR_INVALID_ARGUMENT, "device_list(NULL, 2)");
        assert_eq!((n, chosen), (0, -1));
        devs = garbage();
        expect(qwen3_omni_device_list(devs.as_mut_ptr(), devs.len(), &mut n, &mut chosen), QWEN3_OMNI_OK, "list");
        assert!(n >= 1 && chosen >= 0, "{n} devices, default {chosen}");
        assert!(devs[n.min(devs.len())..].iter().all(all_zero), "entries past the count");

        expect(qwen3_omni_session_free(s), QWEN3_OMNI_OK, "session_free");
    }
    finish(m);
}
