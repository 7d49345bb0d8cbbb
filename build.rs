//! Rebuilds when a migration is added or changed: `sqlx::migrate!` embeds the migrations
//! at compile time, and a new `.sql` file alone would not make cargo recompile.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
