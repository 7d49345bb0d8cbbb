//! Rebuilds when a migration or a file of the console's bundle is added or changed:
//! `sqlx::migrate!` embeds the migrations and `rust-embed` the files of `web/dist/` at
//! compile time, and a new file alone would not make cargo recompile.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-changed=web/dist");
}
