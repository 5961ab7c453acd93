//! Passes the linker script by absolute path (so the build works from any directory)
//! and relinks when it changes, which a `-T` flag in `.cargo/config.toml` would not.

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo:rustc-link-arg-bins=-T{dir}/linker.ld");
    println!("cargo:rerun-if-changed=linker.ld");
}
