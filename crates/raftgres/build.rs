//! Links `raftgres` with packed relative relocations (`-z pack-relative-relocs`, DT_RELR)
//! on Linux with glibc. A position-independent Rust binary this size has ~32,000
//! relative relocations; as RELA entries (24 bytes each) they are ~0.8 MB the loader
//! reads at every start, and those pages stay resident in the node and in its fencer
//! (a re-exec of this binary) alike. As RELR they take 9 KB.
//!
//! The binary then needs glibc 2.36 or newer at run time (Debian 12, Ubuntu 24.04,
//! Fedora 37): GNU ld records a dependency on the `GLIBC_ABI_DT_RELR` symbol version,
//! so an older glibc refuses to start it with a clear error instead of misloading it.
//! For an older glibc (RHEL 9, Ubuntu 22.04), build with `RAFTGRES_PACK_RELOCS=0`.
fn main() {
    println!("cargo:rerun-if-env-changed=RAFTGRES_PACK_RELOCS");
    let linux_gnu =
        std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") && std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu");
    let wanted = std::env::var("RAFTGRES_PACK_RELOCS").as_deref() != Ok("0");
    if linux_gnu && wanted {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
