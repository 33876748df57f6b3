//! Embeds every translation file in templates/i18n/, so adding a language
//! is adding a file: no Rust change. The files are TOML for translators;
//! they are turned into JSON here, so the crate itself reads no TOML.

use std::fmt::Write as _;

fn main() {
    // Read when the script runs, not baked in when it is compiled: a
    // build script compiled for another checkout sharing this target
    // directory would read that checkout's files.
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let dir = std::path::Path::new(&manifest).join("templates/i18n");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("templates/i18n exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    let mut out = String::from("/// (file name, contents as JSON) of every built-in translation.\npub(crate) const BUILTIN: &[(&str, &str)] = &[\n");
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
        let name = f.file_stem().and_then(|s| s.to_str()).expect("utf-8 file name");
        let text = std::fs::read_to_string(f).expect("a translation file");
        let table: toml::Table = toml::from_str(&text).unwrap_or_else(|e| panic!("templates/i18n/{name}.toml: {e}"));
        let json = serde_json::to_string(&table).expect("TOML values are JSON values");
        writeln!(out, "    ({name:?}, {json:?}),").unwrap();
    }
    out.push_str("];\n");
    let dest = std::path::Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR")).join("i18n.rs");
    std::fs::write(dest, out).expect("write i18n.rs");
}
