//! Rebuilds the crate when any migration file changes (the SQL is embedded with `include_str!`).

fn main() {
    println!("cargo:rerun-if-changed=../../migrations");
    println!("cargo:rerun-if-changed=build.rs");
}
