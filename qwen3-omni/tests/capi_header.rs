//! include/qwen3_omni_vk.h is what cbindgen generates from src/capi/mod.rs today: this test fails
//! when they differ. `QWEN3VK_BLESS=1 cargo test -p qwen3-omni --test capi_header` rewrites it.

use std::path::PathBuf;

#[test]
fn committed_header_matches_cbindgen() {
    let krate = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(krate.join("cbindgen.toml")).expect("cbindgen.toml");
    // Only the API file is parsed (no `cargo metadata`, so the test works offline).
    let bindings = cbindgen::Builder::new()
        .with_config(config)
        .with_src(krate.join("src/capi/mod.rs"))
        .generate()
        .expect("cbindgen");
    let mut fresh = Vec::new();
    bindings.write(&mut fresh);
    let fresh = String::from_utf8(fresh).expect("UTF-8 header");
    let path = krate.join("../include/qwen3_omni_vk.h");
    if std::env::var_os("QWEN3VK_BLESS").is_some_and(|v| v == "1") {
        std::fs::write(&path, &fresh).expect("writing the header");
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed != fresh {
        let line = committed.lines().zip(fresh.lines()).position(|(a, b)| a != b).unwrap_or(0) + 1;
        panic!(
            "{} differs from a fresh cbindgen generation (first at line {line}); \
             run `QWEN3VK_BLESS=1 cargo test -p qwen3-omni --test capi_header` and commit it",
            path.display()
        );
    }
}
