//! `include/tickwire.h` is what cbindgen makes of `src/ffi/` today. Regenerate with
//! `TICKWIRE_BLESS=1 cargo test --test c_header`.

use std::path::Path;

#[test]
fn the_checked_in_header_is_current() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(root.join("cbindgen.toml")).expect("cbindgen.toml");
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_src(root.join("src/ffi/mod.rs"))
        .with_config(config)
        .generate()
        .expect("cbindgen generates the header")
        .write(&mut generated);
    let path = root.join("include/tickwire.h");
    if std::env::var_os("TICKWIRE_BLESS").is_some() {
        std::fs::write(&path, &generated).expect("write the header");
    }
    let checked_in = std::fs::read(&path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "include/tickwire.h is stale: regenerate it with `TICKWIRE_BLESS=1 cargo test --test c_header`"
    );
}
