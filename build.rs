//! Build script: records the git commit the binary is built from, for `pullthrough --version`.

use std::path::PathBuf;
use std::process::Command;

/// Hex digits of the commit that are kept, as `git rev-parse --short=12` prints them.
const SHORT: usize = 12;

fn main() {
    // Builds without a repository (the container image's context has no .git) are told the
    // commit instead.
    println!("cargo:rerun-if-env-changed=PULLTHROUGH_GIT_COMMIT");
    let given = std::env::var("PULLTHROUGH_GIT_COMMIT").unwrap_or_default();
    let given = given.trim();
    let commit = if given.is_empty() {
        from_git().unwrap_or_else(|| "unknown".to_owned())
    } else if (7..=64).contains(&given.len()) && given.bytes().all(|b| b.is_ascii_hexdigit()) {
        given[..given.len().min(SHORT)].to_ascii_lowercase()
    } else {
        eprintln!(
            "PULLTHROUGH_GIT_COMMIT must be a commit hash (7 to 64 hex digits), not {given:?}"
        );
        std::process::exit(1);
    };
    println!("cargo:rustc-env=PULLTHROUGH_COMMIT={commit}");
}

/// The checked-out commit, watching the files that move when it changes; `None` outside a
/// repository or without git.
fn from_git() -> Option<String> {
    let commit = git(&["rev-parse", &format!("--short={SHORT}"), "HEAD"])?;
    for path in ["HEAD", "packed-refs"] {
        watch(path);
    }
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watch(&branch);
    }
    Some(commit)
}

fn watch(git_path: &str) {
    if let Some(path) = git(&[
        "rev-parse",
        "--path-format=absolute",
        "--git-path",
        git_path,
    ]) && PathBuf::from(&path).exists()
    {
        println!("cargo:rerun-if-changed={path}");
    }
}

fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    let text = text.trim();
    (output.status.success() && !text.is_empty()).then(|| text.to_owned())
}
