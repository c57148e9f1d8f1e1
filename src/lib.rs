//! taskreaper: a Kubernetes controller that purges failed SDRS and KPS tasks from Huawei Cloud
//! projects on schedule and reports measured results in the policy's status.

pub mod api;
pub mod cli;
pub mod cloud;
pub mod controller;
pub mod emulator;
pub mod observability;
pub mod purge;

#[cfg(test)]
mod tests {
    /// The lint lives in the manifest's `[lints.rust]` table, not in a crate attribute, so that it
    /// covers the binary, the tests and the examples as well as this library.
    #[test]
    fn unsafe_code_is_forbidden_for_every_target() {
        let manifest = include_str!("../Cargo.toml");
        let table: Vec<&str> = manifest
            .lines()
            .map(str::trim)
            .skip_while(|line| *line != "[lints.rust]")
            .skip(1)
            .take_while(|line| !line.starts_with('['))
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .collect();
        assert!(table.contains(&r#"unsafe_code = "forbid""#), "[lints.rust] holds {table:?}");
    }
}
