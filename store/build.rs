//! The migrations are embedded by `sqlx::migrate!`, which cargo does not know to re-run when a
//! migration file is added: this makes a new or changed file rebuild the store.
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
