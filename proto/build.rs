fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A vendored protoc: no system protobuf compiler is needed to build Chorus.
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY-free: build scripts are single-threaded; tonic-prost-build reads PROTOC.
    unsafe_set_protoc(&protoc);
    tonic_prost_build::configure().compile_protos(&["proto/sfu_control.proto"], &["proto"])?;
    println!("cargo:rerun-if-changed=proto/sfu_control.proto");
    Ok(())
}

#[allow(unsafe_code)]
fn unsafe_set_protoc(path: &std::path::Path) {
    // Edition 2024 marks set_var unsafe because of other threads; a build script has none.
    unsafe { std::env::set_var("PROTOC", path) };
}
