//! Standalone quantizer CLI (the same subcommands are mounted in `qwen3-omni-vk`).

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "qwen3-omni-quantize", version, about = "GGUF tools for qwen3-omni-vk")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Describe a GGUF file.
    Info(quantizer_cli::InfoArgs),
    /// Convert a safetensors checkpoint into a Q8_0 GGUF (or write a synthetic one).
    Quantize(quantizer_cli::QuantizeArgs),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().cmd {
        Cmd::Info(a) => quantizer_cli::run_info(&a),
        Cmd::Quantize(a) => quantizer_cli::run_quantize(&a),
    }
}
