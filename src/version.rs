//! The version the binary reports: the crate's version and the commit it was built from.

/// The crate version, as in Cargo.toml and the chart's appVersion.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The git commit of the build (12 hex digits), or `unknown` when the build had neither a
/// repository nor `PULLTHROUGH_GIT_COMMIT`.
pub const COMMIT: &str = env!("PULLTHROUGH_COMMIT");

/// What `pullthrough --version` prints after the program's name: `0.1.0 (commit 0123456789ab)`.
pub const LONG: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("PULLTHROUGH_COMMIT"),
    ")"
);
