//! Rust types and tonic stubs generated from `proto/bolt/v1/*.proto` by the
//! root `build.rs`. Nothing here is written by hand.

#![allow(clippy::all, missing_docs, rust_2018_idioms)]

pub mod v1 {
    tonic::include_proto!("bolt.v1");
}

/// The encoded `FileDescriptorSet` of the Bolt protos, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/bolt_descriptor.bin"));
