//! What the CLI's process tests share: the environment a `rohimaya` child runs in (its
//! own config and data folders under the test's temp dir, nothing inherited from the
//! developer's shell) and a child process that is killed when the test ends.

#![allow(dead_code)] // Each test binary uses its own part of this.

use std::path::Path;
use std::process::{Child, Command};

/// Points `cmd` at config and data folders under `root` and clears the overrides a
/// developer's shell may carry.
pub fn client_env(cmd: &mut Command, root: &Path) {
    cmd.env("ROHIMAYA_CONFIG_DIR", root.join("config"))
        .env("ROHIMAYA_DATA_DIR", root.join("data"))
        .env("RUST_LOG", "warn,s3s=off")
        .env_remove("ROHIMAYA_SUPABASE_URL")
        .env_remove("ROHIMAYA_SUPABASE_ANON_KEY")
        .env_remove("ROHIMAYA_API_URL")
        .env_remove("ROHIMAYA_PROFILE");
}

/// A child process killed (and reaped) when dropped, so a failing test leaves none behind.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
