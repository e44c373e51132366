//! One version for the release: `pullthrough --version`, Cargo.toml, the chart and CHANGELOG.md,
//! and the release notes `.ci/release.sh` takes from the changelog.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Command, Output};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn release_sh(args: &[&str]) -> Output {
    Command::new("bash")
        .current_dir(root())
        .arg(".ci/release.sh")
        .args(args)
        .output()
        .expect("run bash .ci/release.sh")
}

/// The commit git reports for the checkout, when there is a repository and git.
fn checked_out_commit() -> Option<String> {
    let output = Command::new("git")
        .current_dir(root())
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8(output.stdout).unwrap().trim().to_owned())
}

#[test]
fn version_flag_prints_the_crate_version_and_the_commit_of_the_build() {
    let output = Command::new(env!("CARGO_BIN_EXE_pullthrough"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(output.status.success());
    let line = String::from_utf8(output.stdout).unwrap();
    let line = line.trim();
    let rest = line
        .strip_prefix(&format!(
            "pullthrough {} (commit ",
            env!("CARGO_PKG_VERSION")
        ))
        .and_then(|r| r.strip_suffix(')'))
        .unwrap_or_else(|| panic!("unexpected --version output: {line}"));
    assert!(
        rest == "unknown"
            || (rest.len() == 12 && rest.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))),
        "{line}"
    );
    // Built from this checkout, unless the build was told another commit.
    if std::env::var_os("PULLTHROUGH_GIT_COMMIT").is_none()
        && let Some(commit) = checked_out_commit()
    {
        assert_eq!(rest, commit, "{line}");
    }
}

#[test]
fn the_latest_changelog_entry_is_the_crate_version() {
    let changelog = std::fs::read_to_string(root().join("CHANGELOG.md")).unwrap();
    let heading = changelog
        .lines()
        .find(|l| l.starts_with("## [") && !l.starts_with("## [Unreleased]"))
        .expect("CHANGELOG.md has a version entry");
    let (version, date) = heading
        .strip_prefix("## [")
        .and_then(|h| h.split_once("] - "))
        .unwrap_or_else(|| panic!("not `## [version] - date`: {heading}"));
    assert_eq!(version, env!("CARGO_PKG_VERSION"));
    let iso = date.len() == 10
        && date.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    assert!(iso || date == "Unreleased", "{heading}");
    assert!(
        changelog.contains(&format!("\n[{version}]: ")),
        "CHANGELOG.md links {version}"
    );
}

#[test]
fn release_check_agrees_with_the_checkout_and_refuses_a_tag_of_another_version() {
    let ok = release_sh(&["check"]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let wrong = release_sh(&["check", "v999.0.0"]);
    assert!(!wrong.status.success());
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert!(
        stderr.contains(&format!(
            "tag v999.0.0 does not name version {}",
            env!("CARGO_PKG_VERSION")
        )),
        "{stderr}"
    );
}

#[test]
fn release_notes_are_the_body_of_the_latest_entry() {
    let output = release_sh(&["notes"]);
    assert!(output.status.success());
    let notes = String::from_utf8(output.stdout).unwrap();
    let changelog = std::fs::read_to_string(root().join("CHANGELOG.md")).unwrap();
    assert!(!notes.trim().is_empty());
    assert_eq!(notes, notes.trim_start(), "no blank lines before");
    assert!(!notes.ends_with("\n\n"), "no blank lines after");
    // Whole lines of the changelog, in order, without the heading, other entries or the links.
    assert!(changelog.contains(notes.trim_end()), "{notes}");
    assert!(!notes.contains("## ["), "{notes}");
    assert!(!notes.lines().any(|l| l.starts_with('[')), "{notes}");
}
