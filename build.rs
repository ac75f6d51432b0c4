//! Link against the interpreter PyO3 was configured with and record it, so the binary needs no
//! `LD_LIBRARY_PATH` and knows the real interpreter to report as `sys.executable`.
fn main() {
    pyo3_build_config::add_libpython_rpath_link_args();
    let config = pyo3_build_config::get();
    if let Some(executable) = config.executable() {
        println!("cargo:rustc-env=SD_WEBUI_BUILD_PYTHON={executable}");
    }
    println!("cargo:rerun-if-env-changed=PYO3_PYTHON");
    for var in [
        "SD_WEBUI_DEFAULT_ROOT",
        "SD_WEBUI_DEFAULT_PYTHON_ENV",
        "SD_WEBUI_SHIM_DIR",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }
}
