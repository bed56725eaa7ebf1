//! Build script of the desktop app: runs tauri-build (config, ACL, icons) with the
//! capabilities read from `src-tauri/capabilities/` instead of tauri-build's default
//! `./capabilities/` (the app's sources live under `src-tauri/`, the manifest at the root).

fn main() {
    // tauri-build only watches its default capabilities directory.
    println!("cargo:rerun-if-changed=src-tauri/capabilities");
    let attributes =
        tauri_build::Attributes::new().capabilities_path_pattern("./src-tauri/capabilities/**/*");
    tauri_build::try_build(attributes).expect("tauri-build failed");
}
