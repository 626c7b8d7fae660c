//! Keeps pam_apikey.so mapped once loaded (`-z nodelete`): libpam loads
//! and unloads every module of a stack at each pam_start and pam_end, and
//! a web server that runs PAM for every request (nginx auth_pam) would
//! otherwise pay the module's load and relocation each time. A later load
//! finds it in place; its state is per PAM handle, never global.
fn main() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
}
