//! Compiles `proto/*.proto` into messages, services and clients with protox, a protobuf
//! compiler in Rust (no system `protoc`), and writes their descriptor set beside them for
//! server reflection.

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["../../proto/edge.proto", "../../proto/control.proto"];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let descriptors = protox::compile(protos, ["../../proto"])?;
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("descriptors.bin"), descriptors.encode_to_vec())?;
    tonic_prost_build::configure()
        // Clients bring their own channel (tonic's `channel` feature, enabled by the crates
        // that dial); generated code stays transport-free.
        .build_transport(false)
        .compile_fds(descriptors)?;
    Ok(())
}
