//! Model calls: default params, load, free, info.

use std::ffi::c_char;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use super::args::{copy_name, read_params, str_arg, struct_size, write_out, zero_out};
use super::error::{guard, invalid, session_err};
use super::registry::{self, ModelHandle};
use super::types::*;
use crate::session::{LoadOptions, Model};

/// Defaults: best device, 4096 positions, validation and pipeline cache from the environment, no
/// progress callback.
///
/// # Safety
/// None: no arguments.
#[no_mangle]
pub extern "C" fn qwen3_omni_model_default_params() -> qwen3_omni_model_params {
    qwen3_omni_model_params {
        struct_size: struct_size::<qwen3_omni_model_params>(),
        device: -1,
        ctx_size: 4096,
        cache_type: QWEN3_OMNI_CACHE_F16,
        // A malformed override is reported by the load, which reads them again.
        validation: qwen3_omni_vk::EngineOptions::from_env().is_ok_and(|o| o.gpu.validation),
        pipeline_cache_dir: std::ptr::null(),
        progress_callback: None,
        progress_user_data: std::ptr::null_mut(),
    }
}

/// Loads a Q8_0 GGUF written by `qwen3-omni-vk quantize` onto the GPU and writes the new handle to
/// `*model` (NULL on failure). `params` may be NULL (defaults); its `struct_size` must be this
/// library's. Returns `QWEN3_OMNI_ERR_CANCELLED` when the progress callback returned false.
///
/// # Safety
/// `path` is a NUL-terminated UTF-8 path; `params` is NULL or points to a params struct whose
/// `pipeline_cache_dir` is NULL or NUL-terminated; `model` is valid for writing a pointer. The
/// progress callback, if any, is called on this thread during the call.
#[no_mangle]
pub unsafe extern "C" fn qwen3_omni_model_load(
    path: *const c_char,
    params: *const qwen3_omni_model_params,
    model: *mut *mut qwen3_omni_model,
) -> qwen3_omni_status {
    guard(|| {
        if model.is_null() {
            return Err(invalid("model (the output pointer) is NULL"));
        }
        // SAFETY: checked non-NULL; writable by contract.
        unsafe { model.write_unaligned(std::ptr::null_mut()) };
        // SAFETY: NUL-terminated by contract.
        let path = PathBuf::from(unsafe { str_arg(path, "path") }?);
        let p = if params.is_null() {
            qwen3_omni_model_default_params()
        } else {
            // SAFETY: non-NULL and readable by contract.
            unsafe { read_params(params, "params") }?
        };
        if p.device < -1 {
            return Err(invalid(format!("device {} must be -1 (automatic) or an index", p.device)));
        }
        if p.ctx_size == 0 {
            return Err(invalid("ctx_size must be > 0"));
        }
        // The engine options, read once per load (`QWEN3VK_*`, docs/gpu-runs.md).
        let mut engine = qwen3_omni_vk::EngineOptions::from_env().map_err(|e| invalid(e.to_string()))?;
        engine.models.cache_type = match p.cache_type {
            QWEN3_OMNI_CACHE_F16 => qwen3_omni_vk::CacheType::F16,
            QWEN3_OMNI_CACHE_F32 => qwen3_omni_vk::CacheType::F32,
            QWEN3_OMNI_CACHE_Q8_0 => qwen3_omni_vk::CacheType::Q8_0,
            t => {
                return Err(invalid(format!("cache_type {t} is not a QWEN3_OMNI_CACHE_* value (0 f16, 1 f32, 2 q8_0)")))
            }
        };
        let defaults = LoadOptions::from_engine(engine);
        let pipeline_cache = if p.pipeline_cache_dir.is_null() {
            defaults.pipeline_cache
        } else {
            // SAFETY: non-NULL and NUL-terminated by contract.
            match unsafe { str_arg(p.pipeline_cache_dir, "pipeline_cache_dir") }? {
                "" => None,
                d => Some(PathBuf::from(d)),
            }
        };
        let opts = LoadOptions {
            device: if p.device < 0 { defaults.device } else { Some(p.device as usize) },
            ctx_size: p.ctx_size,
            validation: p.validation,
            pipeline_cache,
            engine: defaults.engine.clone(),
        };
        tracing::info!("loading {}", path.display());
        let t0 = std::time::Instant::now();
        let loaded = Model::load(&path, &opts, |pr| match p.progress_callback {
            // SAFETY: the caller promised a callback valid for this call with its user data.
            Some(cb) => unsafe { cb(pr.fraction(), p.progress_user_data) },
            None => true,
        })
        .map_err(session_err)?;
        let c = &loaded.thinker().config;
        let (vocab, layers) = (c.vocab, c.layers);
        let gpu = loaded.gpu().clone();
        let device_name = gpu.caps().name.clone();
        tracing::info!("loaded on {device_name} in {:.1} s", t0.elapsed().as_secs_f64());
        let ctx_size = loaded.ctx_size();
        let mut reg = registry::registry();
        let id = reg.new_id();
        reg.models.insert(
            id,
            Arc::new(ModelHandle { id, model: Mutex::new(Some(loaded)), gpu, device_name, ctx_size, vocab, layers }),
        );
        // SAFETY: checked non-NULL above.
        unsafe { model.write_unaligned(id as *mut qwen3_omni_model) };
        Ok(())
    })
}

/// Frees a model. Its session, if one is open, keeps working; the GPU memory is released when
/// both are freed. Freeing NULL or a freed model returns `QWEN3_OMNI_ERR_INVALID_HANDLE`.
///
/// # Safety
/// `model` is any value; it is looked up, never dereferenced.
#[no_mangle]
pub unsafe extern "C" fn qwen3_omni_model_free(model: *mut qwen3_omni_model) -> qwen3_omni_status {
    guard(|| {
        let id = model as usize;
        registry::model(id)?;
        let h = registry::registry().models.remove(&id);
        // Dropped outside the registry lock (a model drop waits for the GPU).
        drop(h);
        Ok(())
    })
}

/// Describes a loaded model (on failure `*info` is zeroed).
///
/// # Safety
/// `model` is any value (looked up, never dereferenced); `info` is valid for writing.
#[no_mangle]
pub unsafe extern "C" fn qwen3_omni_model_get_info(
    model: *const qwen3_omni_model,
    info: *mut qwen3_omni_model_info,
) -> qwen3_omni_status {
    guard(|| {
        // SAFETY: NULL or writable by contract; all-zero is a valid info struct.
        unsafe { zero_out(info, 1) };
        let m = registry::model(model as usize)?;
        let mut out = qwen3_omni_model_info {
            device_name: [0; QWEN3_OMNI_NAME_MAX],
            ctx_size: m.ctx_size,
            vocab_size: m.vocab,
            n_layers: m.layers,
            validation_messages: m.gpu.validation().map(|v| v.total()).unwrap_or(0),
        };
        copy_name(&mut out.device_name, &m.device_name);
        // SAFETY: writable by contract (NULL is rejected).
        unsafe { write_out(info, out, "info") }
    })
}
