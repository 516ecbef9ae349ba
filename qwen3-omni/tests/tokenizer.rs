//! Tokenizer parity with transformers (tests/fixtures/tokenizer/tokenizer_ids.json).

mod common;

use common::{first_mismatch, ids, read_json, tokenizer};

#[test]
fn encode_matches_transformers() {
    let tok = tokenizer();
    let fx = read_json("tokenizer/tokenizer_ids.json");
    let mut failures = Vec::new();
    for case in fx["cases"].as_array().expect("cases") {
        let name = case["name"].as_str().unwrap_or("?");
        let text = case["text"].as_str().expect("text");
        let want = ids(&case["ids"]);
        let got = tok.encode_with_special(text).unwrap_or_else(|e| panic!("{name}: {e}"));
        if let Some(i) = first_mismatch(&got, &want) {
            failures.push(format!(
                "{name}: first mismatch at {i}: got {:?} want {:?}",
                &got[i.saturating_sub(2)..(i + 3).min(got.len())],
                &want[i.saturating_sub(2)..(i + 3).min(want.len())]
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn decode_matches_transformers() {
    let tok = tokenizer();
    let fx = read_json("tokenizer/tokenizer_ids.json");
    for case in fx["cases"].as_array().expect("cases") {
        let name = case["name"].as_str().unwrap_or("?");
        let want_ids = ids(&case["ids"]);
        let got = tok.decode(&want_ids, false);
        assert_eq!(got, case["decoded"].as_str().unwrap(), "{name}: decode");
        let got = tok.decode(&want_ids, true);
        assert_eq!(got, case["decoded_skip_special"].as_str().unwrap(), "{name}: decode skip special");
        // The crate's own decoder agrees too.
        let inner = tok.inner().decode(&want_ids, false).expect("tokenizers decode");
        assert_eq!(inner, case["decoded"].as_str().unwrap(), "{name}: tokenizers decode");
    }
}

#[test]
fn streaming_decode_equals_one_shot() {
    let tok = tokenizer();
    let fx = read_json("tokenizer/tokenizer_ids.json");
    for case in fx["cases"].as_array().expect("cases") {
        let name = case["name"].as_str().unwrap_or("?");
        let all = ids(&case["ids"]);
        for skip in [false, true] {
            let mut dec = tok.stream_decoder(skip);
            let mut text = String::new();
            for &id in &all {
                let piece = dec.push(id);
                // Every emitted piece is complete text: no replacement characters from splits.
                assert!(!piece.contains('\u{FFFD}'), "{name}: split character in {piece:?}");
                text.push_str(&piece);
            }
            text.push_str(&dec.finish());
            assert_eq!(text, tok.decode(&all, skip), "{name} (skip_special={skip})");
        }
    }
}

#[test]
fn streaming_holds_back_partial_characters() {
    let tok = tokenizer();
    // Find an emoji whose encoding splits one character over several byte-level tokens.
    let ids = tok.encode("🫠").unwrap();
    assert!(ids.len() > 1, "expected a multi-token emoji, got {ids:?}");
    let mut dec = tok.stream_decoder(false);
    let mut pieces: Vec<String> = ids.iter().map(|&id| dec.push(id)).collect();
    pieces.push(dec.finish());
    assert!(pieces[..ids.len() - 1].iter().all(|p| p.is_empty()), "{pieces:?}");
    assert_eq!(pieces.concat(), "🫠");
    // A dangling partial character is flushed as one U+FFFD, like a lossy one-shot decode.
    let mut dec = tok.stream_decoder(false);
    assert_eq!(dec.push(ids[0]), "");
    assert_eq!(dec.finish(), "\u{FFFD}");
    assert_eq!(tok.decode(&ids[..1], false), "\u{FFFD}");
}

#[test]
fn special_ids_match_fixture() {
    let tok = tokenizer();
    let fx = read_json("tokenizer/tokenizer_ids.json");
    for (name, id) in fx["special"].as_object().expect("special") {
        assert_eq!(tok.token_to_id(name), Some(id.as_u64().unwrap() as u32), "{name}");
        assert!(tok.is_special(id.as_u64().unwrap() as u32), "{name} is special");
    }
    assert_eq!(tok.vocab_size() as u64, fx["vocab_size_with_added"].as_u64().unwrap());
    let s = tok.special_ids();
    assert_eq!((s.im_start, s.im_end, s.audio_pad), (151644, 151645, 151675));
}

#[test]
fn ids_beyond_the_tokenizer_decode_to_nothing() {
    // Embedding rows 151676..152064 are padding; the model may still emit them.
    let tok = tokenizer();
    let hi = tok.encode("Hi").unwrap();
    let ids = [hi[0], 151_676, 152_063, u32::MAX];
    assert_eq!(tok.decode(&ids, false), "Hi");
    assert_eq!(tok.inner().decode(&ids, false).unwrap(), "Hi");
    let mut dec = tok.stream_decoder(true);
    let text: String = ids.iter().map(|&id| dec.push(id)).collect();
    assert_eq!(text + &dec.finish(), "Hi");
}

#[test]
fn fixture_greedy_tokens_stream_decode() {
    // How engine tests consume reference files: read i32 ids from a safetensors fixture.
    let tok = tokenizer();
    let path = common::fixtures().join("models/tiny-real-vocab/ref_thinker_q8.safetensors");
    let ids = common::read_safetensors_i32(&path, "text.greedy_ids");
    assert_eq!(ids.len(), 16);
    let mut dec = tok.stream_decoder(false);
    let mut text: String = ids.iter().map(|&id| dec.push(id)).collect();
    text.push_str(&dec.finish());
    assert_eq!(text, tok.decode(&ids, false));
    assert_eq!(text, tok.inner().decode(&ids, false).unwrap());
}
