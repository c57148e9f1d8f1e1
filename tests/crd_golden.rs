//! The CRD checked in under `crds/` is exactly what `taskreaper crd` prints.

use std::path::Path;

use taskreaper::api::crd::{CRD_PATH, crd_yaml};

#[test]
fn checked_in_crd_matches_the_rust_types() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(CRD_PATH);
    let expected = crd_yaml().expect("render the CRD");
    let found = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!("cannot read {}: {e}\nGenerate it with: cargo run -- crd > {CRD_PATH}", path.display())
    });
    if found != expected {
        let line = found.lines().zip(expected.lines()).position(|(a, b)| a != b).map_or_else(
            || {
                format!(
                    "the files differ in length ({} vs {} lines)",
                    found.lines().count(),
                    expected.lines().count()
                )
            },
            |i| {
                format!(
                    "first difference at line {}:\n  file: {}\n  now:  {}",
                    i + 1,
                    found.lines().nth(i).unwrap_or(""),
                    expected.lines().nth(i).unwrap_or("")
                )
            },
        );
        panic!(
            "{CRD_PATH} is out of date with src/api ({line}).\nRegenerate it with: cargo run -- crd > {CRD_PATH}"
        );
    }
}
