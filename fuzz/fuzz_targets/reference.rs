//! The image reference grammar: parsing never panics, printing and parsing again gives the
//! same reference, and the decision on any image is either left alone or a valid ECR image.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use pullthrough::config::Config;
use pullthrough::reference::Reference;
use pullthrough::rules::RuleSnapshot;
use pullthrough_fuzz::{check_decision, config, rules};

static SETUPS: LazyLock<Vec<(Config, RuleSnapshot)>> = LazyLock::new(|| {
    (0..pullthrough_fuzz::CONFIGS.len())
        .map(|i| {
            let c = config(i);
            let r = rules(&c, false);
            (c, r)
        })
        .collect()
});

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(r) = Reference::parse(s) {
        let printed = r.to_string();
        let again = Reference::parse(&printed)
            .unwrap_or_else(|e| panic!("{s:?} prints as {printed:?}, which does not parse: {e}"));
        assert_eq!(again, r, "{s:?} -> {printed:?}");
        assert_eq!(again.to_string(), printed);
        assert!(
            r.registry().len() + 1 + r.repository().len() <= 255,
            "{s:?}"
        );
        assert!(
            r.tag().is_none_or(|t| !t.is_empty() && t.len() <= 128),
            "{s:?}"
        );
        assert_eq!(
            printed,
            format!("{}/{}{}", r.registry(), r.repository(), r.suffix())
        );
    }
    for (c, r) in SETUPS.iter() {
        check_decision(c, r, s);
    }
});
