//! Compiles the machine API protos with protox (pure Rust; no system protoc needed).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["proto/machine/v1alpha1/machine.proto"];
    let descriptors = protox::compile(protos, ["proto"])?;
    // The descriptor set is embedded too: tests check the agent's access table
    // against every method it declares.
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("machine_descriptor.bin"),
        prost::Message::encode_to_vec(&descriptors),
    )?;
    // Default stubs answer `unimplemented` for methods a server does not implement;
    // the maintenance-mode server implements only Version and ApplyConfiguration.
    tonic_prost_build::configure()
        .generate_default_stubs(true)
        // Log and kernel-log chunks are slices of one buffer, not copies.
        .bytes(".machine.v1alpha1.Data")
        .compile_fds(descriptors)?;
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    Ok(())
}
