//! The Thinker's config and weights from a GGUF written by our quantizer from the tiny fixture
//! checkpoint, uploaded to the GPU (lavapipe in CI) with validation on.

mod common;

use std::path::PathBuf;

use qwen3_omni::model_file::{ModelError, ModelFile};
use qwen3_omni::thinker::{expert_stride, ThinkerConfig, ThinkerWeights};
use qwen3_omni_vk::layout::repack_q8_0_planar;

use common::rel;

fn fixture_gguf(model: &str) -> (tempdir::Dir, PathBuf) {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/models").join(model);
    let dir = tempdir::Dir::new(model);
    let out = dir.0.join(format!("{model}.gguf"));
    quantizer::convert::convert(&src, &out, &Default::default())
        .unwrap_or_else(|e| panic!("converting {}: {e}", src.display()));
    (dir, out)
}

mod tempdir {
    pub struct Dir(pub std::path::PathBuf);
    impl Dir {
        pub fn new(tag: &str) -> Dir {
            let p = std::env::temp_dir().join(format!(
                "qwen3vk-{tag}-{}-{:?}",
                std::process::id(),
                std::thread::current().id()
            ));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            Dir(p)
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

#[test]
fn config_comes_from_the_file() {
    let (_d, path) = fixture_gguf("tiny-real-vocab");
    let m = ModelFile::open(&path).unwrap();
    let c = ThinkerConfig::from_model(&m).unwrap();
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/models/tiny-real-vocab/config.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let t = &json["thinker_config"]["text_config"];
    assert_eq!(c.hidden as u64, t["hidden_size"].as_u64().unwrap());
    assert_eq!(c.layers as u64, t["num_hidden_layers"].as_u64().unwrap());
    assert_eq!(c.n_heads as u64, t["num_attention_heads"].as_u64().unwrap());
    assert_eq!(c.n_kv_heads as u64, t["num_key_value_heads"].as_u64().unwrap());
    assert_eq!(c.head_dim as u64, t["head_dim"].as_u64().unwrap());
    assert_eq!(c.n_experts as u64, t["num_experts"].as_u64().unwrap());
    assert_eq!(c.top_k as u64, t["num_experts_per_tok"].as_u64().unwrap());
    assert_eq!(c.vocab, 152064);
    assert_eq!(c.rope_theta, 1e6);
    assert_eq!(c.mrope_section.iter().sum::<u32>(), c.head_dim / 2);
}

#[test]
fn weights_upload_repacked_and_checked() {
    let (_d, path) = fixture_gguf("tiny-real-vocab");
    let m = ModelFile::open(&path).unwrap();
    let c = ThinkerConfig::from_model(&m).unwrap();
    let gpu = common::gpu();
    let mut seen = 0;
    let w = ThinkerWeights::load(&gpu, &m, &c, |done, total| {
        assert!(done <= total);
        seen = done
    })
    .unwrap();
    assert_eq!(seen, c.layers);
    assert_eq!(w.layers.len(), c.layers as usize);
    // The embedding table on the GPU is exactly the GGUF's Q8_0 bytes in planar layout.
    let (v, h) = (c.vocab as usize, c.hidden as usize);
    let t = m.tensor("thinker.model.embed_tokens.weight", &[v as u64, h as u64]).unwrap();
    let want = repack_q8_0_planar(t.data, v, h).unwrap();
    let mut got = vec![0u8; want.len()];
    w.embed.read(0, &mut got).unwrap();
    assert!(got == want, "embedding bytes differ after upload");
    // Expert 5 of layer 1's down projection sits at its stride.
    let (rows, cols) = (h as u64, c.moe_inter as u64);
    let t = m.tensor("thinker.model.layers.1.mlp.experts.5.down_proj.weight", &[rows, cols]).unwrap();
    let want = repack_q8_0_planar(t.data, rows as usize, cols as usize).unwrap();
    let mut got = vec![0u8; want.len()];
    w.layers[1].down.read(5 * expert_stride(rows, cols), &mut got).unwrap();
    assert!(got == want, "expert bytes differ after upload");
    drop(w);
    common::assert_clean(&gpu);
}

#[test]
fn bad_tensors_are_named() {
    let (_d, path) = fixture_gguf("tiny-real-vocab");
    let m = ModelFile::open(&path).unwrap();
    match m.tensor("thinker.model.layers.99.self_attn.q_proj.weight", &[1, 1]) {
        Err(e @ ModelError::MissingTensor { .. }) => {
            assert!(e.to_string().contains("layers.99.self_attn.q_proj"), "{e}")
        }
        other => panic!("expected a missing-tensor error, got {:?}", other.err()),
    }
    match m.tensor("thinker.model.norm.weight", &[7]) {
        Err(e @ ModelError::Shape { .. }) => {
            let s = e.to_string();
            assert!(s.contains("thinker.model.norm.weight") && s.contains("[7]"), "{s}");
        }
        other => panic!("expected a shape error, got {:?}", other.err()),
    }
    // A GGUF without our config key is refused with the key's name.
    let e = ModelFile::open(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")).err().expect("not a GGUF");
    assert!(matches!(e, ModelError::Gguf { .. }), "{e}");
}

/// The CPU oracle against transformers (same Q8_0 round-tripped weights, float32): first-step
/// logits, hidden states and 16 greedy tokens of the text prompt.
#[test]
fn cpu_oracle_matches_transformers() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/models/tiny-real-vocab");
    let (_d, path) = fixture_gguf("tiny-real-vocab");
    let m = ModelFile::open(&path).unwrap();
    let c = ThinkerConfig::from_model(&m).unwrap();
    let cpu = qwen3_omni::thinker::cpu::CpuThinker::load(&m, &c).unwrap();
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("manifest.json")).unwrap()).unwrap();
    let ids: Vec<u32> =
        manifest["prompts"]["text"]["ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
    let refs = root.join("ref_thinker_q8.safetensors");
    let f = cpu.forward(&ids);
    let logits = common::read_safetensors_f32(&refs, "text.logits_first");
    let e = rel(&f.logits, &logits);
    assert!(e < 1e-4, "first-step logits: relative error {e:e}");
    let hs0 = common::read_safetensors_f32(&refs, "text.hs0");
    assert!(rel(&f.hidden[0], &hs0) < 1e-6);
    let hs2 = common::read_safetensors_f32(&refs, "text.hs2");
    let e2 = rel(&f.hidden[2], &hs2);
    assert!(e2 < 1e-4, "hs2: relative error {e2:e}");
    let hl = common::read_safetensors_f32(&refs, "text.hs_last");
    let el = rel(f.hidden.last().unwrap(), &hl);
    assert!(el < 1e-4, "hs_last: relative error {el:e}");
    let want = common::read_safetensors_i32(&refs, "text.greedy_ids");
    let got = cpu.greedy(&ids, want.len());
    assert_eq!(got, want, "greedy tokens");
}
