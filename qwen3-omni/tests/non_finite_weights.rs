//! NaN and infinities in weights are refused at load, naming the tensor: a Q8_0 block scale while
//! it is repacked (GPU) or dequantised (CPU oracles), an F32 / F16 norm, router, bias or conv
//! kernel when it is read.

mod common;

use qwen3_omni::model_file::{ModelError, ModelFile};
use qwen3_omni::thinker::{ThinkerConfig, ThinkerWeights};

use common::gguf_edit::{patch_tensor, ragged_gguf};

const F16_NAN: [u8; 2] = [0x00, 0x7E];
const F16_INF: [u8; 2] = [0x00, 0x7C];

fn workdir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("qwen3vk-nonfinite-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Asserts `r` is the non-finite error for `tensor`, its message containing `detail`.
fn refused<T>(r: Result<T, ModelError>, tensor: &str, detail: &str) {
    match r {
        Err(e @ ModelError::NonFinite { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains(tensor) && msg.contains(detail), "{msg}");
        }
        Err(e) => panic!("{tensor}: refused with another error: {e}"),
        Ok(_) => panic!("{tensor}: a non-finite value was accepted"),
    }
}

fn ty(m: &ModelFile, name: &str) -> quantizer::gguf::GgmlType {
    m.gguf.header.tensor(name).unwrap_or_else(|| panic!("no {name}")).ty
}

#[test]
fn non_finite_weights_are_refused_naming_the_tensor() {
    let dir = workdir("weights");
    let base = ragged_gguf(&dir);
    let gpu = common::gpu();
    let file = |tag: &str, name: &str, at: usize, bytes: &[u8]| -> ModelFile {
        let p = dir.join(format!("{tag}.gguf"));
        patch_tensor(&base, &p, name, at, bytes);
        ModelFile::open(&p).unwrap()
    };

    // A NaN scale in block 3 of one Q8_0 matrix: the GPU upload (repack) and the CPU oracle
    // (dequantisation) both refuse it.
    let q = "thinker.model.layers.1.self_attn.q_proj.weight";
    let m = file("q8-nan", q, 3 * 34, &F16_NAN);
    assert_eq!(ty(&m, q), quantizer::gguf::GgmlType::Q8_0);
    let c = ThinkerConfig::from_model(&m).unwrap();
    refused(ThinkerWeights::load(&gpu, &m, &c, |_, _| {}), q, "block 3");
    refused(qwen3_omni::thinker::cpu::CpuThinker::load(&m, &c), q, "block 3");

    // A NaN in a norm weight (F32) and an infinity in a router.
    let norm = "thinker.model.layers.0.input_layernorm.weight";
    let m = file("norm-nan", norm, 5 * 4, &f32::NAN.to_le_bytes());
    assert_eq!(ty(&m, norm), quantizer::gguf::GgmlType::F32);
    refused(ThinkerWeights::load(&gpu, &m, &c, |_, _| {}), norm, "element 5 is NaN");
    let router = "thinker.model.layers.2.mlp.gate.weight";
    let m = file("router-inf", router, 0, &f32::INFINITY.to_le_bytes());
    refused(ThinkerWeights::load(&gpu, &m, &c, |_, _| {}), router, "element 0 is inf");

    // The Talker: an infinite scale in one routed expert names that expert's tensor.
    let up = "talker.model.layers.1.mlp.experts.2.up_proj.weight";
    let m = file("talker-inf", up, 34, &F16_INF);
    let tc = qwen3_omni::talker::TalkerConfig::from_model(&m).unwrap();
    refused(qwen3_omni::talker::TalkerWeights::load(&gpu, &m, &tc, |_, _| {}), up, "block 1");
    refused(qwen3_omni::talker::cpu::CpuTalker::load(&m, &tc), up, "block 1");

    // Code2Wav: an F16 conv kernel; the AudioTower: an F32 bias.
    let conv = "code2wav.decoder.1.block.1.conv.weight";
    let m = file("c2w-inf", conv, 7 * 2, &F16_INF);
    assert_eq!(ty(&m, conv), quantizer::gguf::GgmlType::F16);
    let cc = qwen3_omni::code2wav::Code2WavConfig::from_model(&m).unwrap();
    refused(qwen3_omni::code2wav::Code2WavWeights::load(&m, &cc), conv, "element 7 is inf");
    let bias = "thinker.audio_tower.layers.0.fc1.bias";
    let m = file("audio-nan", bias, 0, &f32::NAN.to_le_bytes());
    refused(qwen3_omni::audio::gpu::GpuAudioTower::load(&gpu, &m, |_, _| {}), bias, "element 0 is NaN");

    common::assert_clean(&gpu);
    let _ = std::fs::remove_dir_all(&dir);
}
