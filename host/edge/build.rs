//! Compiles `proto/edge.proto` into the gRPC service and messages with protox, a protobuf
//! compiler in Rust, so building needs no system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "../../proto/edge.proto";
    println!("cargo:rerun-if-changed={proto}");
    let descriptors = protox::compile([proto], ["../../proto"])?;
    tonic_prost_build::configure()
        // The generated client is for tests and tools that bring their own channel; the
        // edge itself only serves.
        .build_transport(false)
        .compile_fds(descriptors)?;
    Ok(())
}
