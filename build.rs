//! Compiles proto/bolt/v1/*.proto into Rust with protox (pure Rust, no system
//! protoc) and tonic-prost-build; also writes the descriptor set that the
//! agent serves through gRPC reflection.

use std::{env, fs, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_dir = PathBuf::from("proto");
    let mut files = Vec::new();
    for entry in fs::read_dir(proto_dir.join("bolt/v1"))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "proto") {
            println!("cargo:rerun-if-changed={}", path.display());
            files.push(path);
        }
    }
    files.sort();
    println!("cargo:rerun-if-changed=proto");

    let fds = protox::compile(&files, [&proto_dir])?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(out.join("bolt_descriptor.bin"), prost::Message::encode_to_vec(&fds))?;
    tonic_prost_build::configure().build_client(true).build_server(true).compile_fds(fds)?;
    Ok(())
}
