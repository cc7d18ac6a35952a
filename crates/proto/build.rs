//! Generates the Rust types and tonic services from `proto/` with a vendored protoc,
//! so a fresh machine needs nothing installed; also the descriptor set and each
//! message's `prost::Name`, which the client port's JSON gateway reads to speak proto3
//! JSON.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let mut config = tonic_build::Config::new();
    config.protoc_executable(protoc);
    config.enable_type_names();
    config.file_descriptor_set_path(std::path::PathBuf::from(std::env::var("OUT_DIR")?).join("descriptor_set.bin"));
    // Package-prefix paths match every message, enum and oneof enum in the package.
    let serde = "#[derive(serde::Serialize, serde::Deserialize)]";
    let files = ["etcd/kv.proto", "etcd/auth.proto", "etcd/rpc.proto", "etcd/lock.proto", "etcd/election.proto", "raftgres/peer.proto"];
    let paths: Vec<_> = files.iter().map(|f| root.join(f)).collect();
    tonic_build::configure()
        .build_server(true)
        .build_client(true)
        .type_attribute(".etcdserverpb", serde)
        .type_attribute(".mvccpb", serde)
        .type_attribute(".authpb", serde)
        .compile_protos_with_config(config, &paths, std::slice::from_ref(&root))?;
    println!("cargo:rerun-if-changed={}", root.display());
    println!("cargo:rerun-if-changed=build.rs");
    Ok(())
}
