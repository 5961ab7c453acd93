//! With feature `pmdk`: compiles the C shim (`csrc/`) and links libpmemobj and libpmem.
//! Without it nothing is built or linked, so the crate builds where PMDK is absent.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    #[cfg(feature = "pmdk")]
    {
        println!("cargo:rerun-if-changed=csrc/pmbench_shim.c");
        println!("cargo:rerun-if-changed=csrc/pmbench_shim.h");
        cc::Build::new()
            .file("csrc/pmbench_shim.c")
            .include("csrc")
            .std("gnu11")
            .opt_level(2)
            .warnings(true)
            .extra_warnings(true)
            .warnings_into_errors(true)
            .compile("pmbench_shim");
        println!("cargo:rustc-link-lib=pmemobj");
        println!("cargo:rustc-link-lib=pmem");
        println!("cargo:rustc-link-lib=pthread");
    }
}
