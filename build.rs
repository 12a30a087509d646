//! Bakes the location of libtorch into every binary (rpath), so nobody has to set
//! LD_LIBRARY_PATH, and keeps libtorch_cuda linked so that CUDA devices are found; generates
//! the ONNX protobuf types from the vendored `proto/onnx.proto` (protox: no `protoc` needed).
use std::path::Path;

fn main() {
    onnx_types();
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        println!("cargo:rustc-env=PRUNESCOPE_LIBTORCH_LIB=");
        return;
    };
    // Tests find the torch venv's Python from here (tests/weights.rs).
    println!("cargo:rustc-env=PRUNESCOPE_LIBTORCH_LIB={lib}");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    // The linker drops libtorch_cuda under --as-needed because no symbol of it is used
    // directly; without it libtorch sees no CUDA device at run time.
    if Path::new(&lib).join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
    }
}

fn onnx_types() {
    println!("cargo:rerun-if-changed=proto/onnx.proto");
    let descriptors = protox::compile(["onnx.proto"], ["proto"]).expect("proto/onnx.proto does not compile");
    prost_build::Config::new().compile_fds(descriptors).expect("cannot generate the ONNX types from proto/onnx.proto");
}
