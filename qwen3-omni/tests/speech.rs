//! Speech out (speech.rs) on the GPU (lavapipe in CI, validation on), tiny-real-vocab fixture:
//! * the Thinker's greedy reply fed token by token while it is generated (on_token) gives the same
//!   codes as the non-streamed Talker path (start_from_thinker + push_spoken + next_frame), and the
//!   streamed audio equals one full Code2Wav decode of those codes;
//! * transformers' greedy reply fed token by token gives transformers' codes (float path);
//! * the 300/25-style chunked mode equals `chunked_decode`; cancelling stops between frames.

mod common;

use qwen3_omni::code2wav::Code2Wav;
use qwen3_omni::model_file::ModelFile;
use qwen3_omni::speech::{Decode, Speaker, SpeechOptions, StopReason};
use qwen3_omni::talker::TalkerSampling;
use qwen3_omni::thinker::gpu::GpuThinker;
use qwen3_omni_vk::MatvecPath;

use common::max_abs;

const MODEL: &str = "tiny-real-vocab";

fn opts(max_frames: u32, decode: Decode) -> SpeechOptions {
    SpeechOptions { voice: "ethan".into(), sampling: TalkerSampling::greedy(), max_frames, decode, talker_batch: 3 }
}

/// Frames of the non-streamed path for the spoken tokens (`spoken[0]` = g0).
fn direct_codes(sp: &mut Speaker, m: &ModelFile, ids: &[u32], spoken: &[u32], max: usize) -> Vec<Vec<u32>> {
    let th = sp.talker.config.thinker_hidden as usize;
    sp.talker.set_sampling(TalkerSampling::greedy());
    sp.talker.start_from_thinker(m, ids, &vec![0f32; ids.len() * th], spoken[0], "ethan").unwrap();
    sp.talker.push_spoken(m, spoken).unwrap();
    let mut out = Vec::new();
    while out.len() < max {
        match sp.talker.next_frame().unwrap() {
            Some(f) => out.push(f),
            None => break,
        }
    }
    out
}

#[test]
fn speech_streams_alongside_the_thinker_and_matches_the_direct_path() {
    let (_dir, file) = common::c2w::fixture_gguf(MODEL);
    let m = ModelFile::open(&file).unwrap();
    let gpu = common::gpu();
    let manifest = common::read_json(&format!("models/{MODEL}/manifest.json"));
    let ids = common::ids(&manifest["prompts"]["text"]["ids"]);
    let im_end = qwen3_omni::talker::TalkerConfig::from_model(&m).unwrap().ids.im_end;
    let mut thinker = GpuThinker::load(common::exact_kernels(gpu.clone()), &m, 64, |_, _| {}).unwrap();
    let max_frames = 24;
    let mut sp =
        Speaker::load(common::exact_kernels(gpu.clone()), &m, ids.len() as u32, opts(max_frames, Decode::default()))
            .unwrap();
    sp.set_thinker_limit(Some(10));
    let mut pcm = Vec::new();
    let mut chunks = 0;
    let mut started = false;
    let mut err = None;
    let gen = thinker
        .generate(&ids, 10, &[im_end], |id| {
            let mut on_pcm = |p: &[f32]| {
                pcm.extend_from_slice(p);
                chunks += 1;
            };
            // g0 starts the Talker; later tokens are pushed as they come.
            let r = if started { sp.on_token(&m, id, &mut on_pcm) } else { sp.start(&m, &ids, None, id) };
            started = true;
            if let Err(e) = r {
                err = Some(e);
                return false;
            }
            true
        })
        .unwrap();
    assert!(err.is_none(), "{err:?}");
    let s = sp
        .finish(&mut |p: &[f32]| {
            pcm.extend_from_slice(p);
            chunks += 1;
        })
        .unwrap();
    let streamed_codes = sp.codes().to_vec();
    eprintln!("Thinker: {gen:?}; {} frames, stop {:?}, {} chunks, {} samples", s.frames, s.stop, chunks, s.samples);
    assert!(s.frames >= 2, "too few frames to test: {}", s.frames);
    assert_eq!(s.frames, streamed_codes.len());
    assert!(chunks >= s.frames.min(2), "audio came in {chunks} chunks for {} frames", s.frames);
    // transformers speaks the tokens before <|im_end|>, or all but the last at the length cap.
    let spoken: Vec<u32> = match gen.iter().position(|&g| g == im_end) {
        Some(e) => gen[..e].to_vec(),
        None => gen[..gen.len() - 1].to_vec(),
    };
    let want = direct_codes(&mut sp, &m, &ids, &spoken, max_frames as usize);
    assert_eq!(streamed_codes, want, "streamed codes vs the direct Talker path");
    // Audio: exactly one full decode of the codes, of the length the frames imply.
    let mut c2w = Code2Wav::load(common::exact_kernels(gpu.clone()), &m, 64).unwrap();
    let full = c2w.decode(&streamed_codes.concat()).unwrap();
    assert_eq!(full.len() as u64, c2w.config.output_len(s.frames as u64));
    assert_eq!(pcm.len(), full.len());
    let e = max_abs(&pcm, &full);
    eprintln!("streamed vs full decode: max |Δ| {e:.2e}");
    assert!(e <= 1e-4, "streamed vs full decode {e:e}");
    drop((thinker, sp, c2w));
    common::assert_clean(&gpu);
}

#[test]
fn speech_codes_match_transformers_and_chunked_mode_matches_chunked_decode() {
    let (_dir, file) = common::c2w::fixture_gguf(MODEL);
    let m = ModelFile::open(&file).unwrap();
    let gpu = common::gpu();
    let manifest = common::read_json(&format!("models/{MODEL}/manifest.json"));
    let dir = common::fixtures().join("models").join(MODEL);
    let ids = common::ids(&manifest["prompts"]["text"]["ids"]);
    let gen = common::read_safetensors_i32(&dir.join("ref_thinker_q8.safetensors"), "text.greedy_ids");
    let codes = common::read_safetensors_i32(&dir.join("ref_talker_q8.safetensors"), "text.codes");
    let mut k = common::exact_kernels(gpu.clone());
    k.set_matvec_path(MatvecPath::Float).unwrap();
    let mut sp =
        Speaker::load(k, &m, ids.len() as u32, opts(64, Decode::HfChunked { chunk: 3, left_context: 2 })).unwrap();
    let g = sp.talker.config.groups as usize;
    let n = codes.len() / g;
    let want: Vec<Vec<u32>> = (0..n).map(|f| (0..g).map(|j| codes[j * n + f]).collect()).collect();
    sp.opts.max_frames = n as u32;
    // transformers' reply, fed token by token as a Thinker would produce it.
    let mut pcm = Vec::new();
    let mut chunks = Vec::new();
    sp.start(&m, &ids, None, gen[0]).unwrap();
    let mut on_pcm = |p: &[f32]| {
        chunks.push(p.len());
        pcm.extend_from_slice(p);
    };
    for &id in &gen[1..] {
        sp.on_token(&m, id, &mut on_pcm).unwrap();
        if id == sp.talker.config.ids.im_end {
            break;
        }
    }
    let s = sp.finish(&mut on_pcm).unwrap();
    eprintln!("{} frames ({:?}), chunks {chunks:?}", s.frames, s.stop);
    assert_eq!(sp.codes(), &want[..s.frames], "codes vs transformers");
    assert!(s.frames == n || s.stop == StopReason::CodecEos);
    let flat = sp.codes().concat();
    let want_pcm = sp.code2wav.chunked_decode(&flat, 3, 2).unwrap();
    let e = max_abs(&pcm, &want_pcm);
    eprintln!("chunked mode vs chunked_decode(3, 2): max |Δ| {e:.2e}");
    assert!(e <= 1e-6, "{e:e}");
    assert_eq!(chunks.len(), s.frames.div_ceil(3));

    // Streaming in chunks of 4 frames after the first: still exactly one full decode.
    sp.opts.decode = Decode::Stream { frames: 4 };
    sp.start(&m, &ids, None, gen[0]).unwrap();
    let (mut pcm, mut chunks) = (Vec::new(), 0);
    let mut on_pcm = |p: &[f32]| {
        chunks += 1;
        pcm.extend_from_slice(p);
    };
    sp.push_text(
        &m,
        &gen[1..gen.iter().position(|&g| g == sp.talker.config.ids.im_end).unwrap_or(gen.len())],
        &mut on_pcm,
    )
    .unwrap();
    let s4 = sp.finish(&mut on_pcm).unwrap();
    let full = sp.code2wav.decode(&sp.codes().concat()).unwrap();
    assert_eq!(chunks, 1 + (s4.frames - 1).div_ceil(4), "{} frames", s4.frames);
    assert!(max_abs(&pcm, &full) <= 1e-4);

    // Cancel: set before the next frames, generation stops at once.
    sp.opts.decode = Decode::default();
    sp.start(&m, &ids, None, gen[0]).unwrap();
    sp.cancel_flag().store(true, std::sync::atomic::Ordering::Relaxed);
    let s = sp.finish(&mut |_: &[f32]| {}).unwrap();
    assert_eq!((s.stop, s.frames, s.samples), (StopReason::Cancelled, 0, 0));
    drop(sp);
    common::assert_clean(&gpu);
}
