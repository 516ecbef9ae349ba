fn main() {
    let c = shaderc::Compiler::new();
    let _ = c;
    let _ = rspirv::dr::Loader::new();
}
