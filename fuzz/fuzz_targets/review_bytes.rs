//! The admission handler on arbitrary bytes: never a panic, an answer exactly when a uid can
//! be read, and every patch applies and changes only images and the originals record.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use pullthrough::config::Config;
use pullthrough::rules::RuleSnapshot;
use pullthrough_fuzz::{check_review, config, rules};

static SETUPS: LazyLock<Vec<(Config, RuleSnapshot)>> = LazyLock::new(|| {
    let mut out = Vec::new();
    for i in 0..pullthrough_fuzz::CONFIGS.len() {
        let c = config(i);
        let r = rules(&c, false);
        out.push((c, r));
    }
    out
});

fuzz_target!(|data: &[u8]| {
    for (c, r) in SETUPS.iter() {
        check_review(c, r, data);
    }
});
