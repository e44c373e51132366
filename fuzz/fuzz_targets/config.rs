//! The configuration loader on arbitrary YAML text: it never panics, errors render and point
//! at a line of the text, and a configuration it accepts is usable (its registry host is one,
//! its prefixes are ECR prefixes, and the images it rewrites are valid ECR images).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pullthrough::config::{Config, Overrides};
use pullthrough::reference::Reference;
use pullthrough::rules::RuleSnapshot;
use pullthrough_fuzz::check_decision;

const IMAGES: &[&str] = &[
    "nginx:1.27",
    "bitnami/redis:7",
    "quay.io/prometheus/node-exporter:v1.8.2",
    "ghcr.io/cloudnative-pg/postgresql:16",
    "registry.k8s.io/pause:3.10",
    "public.ecr.aws/eks/aws-load-balancer-controller:v2.8.0",
    "registry.gitlab.com/group/project/image:1",
    "111122223333.dkr.ecr.us-east-1.amazonaws.com/team/app:1",
    "myregistry.azurecr.io/app:1",
    "cgr.dev/chainguard/static:latest",
    "localhost:5000/app",
    "nginx@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::load(text, &Overrides::default()) {
        Err(e) => {
            let _ = e.to_string();
            let _ = e.kind();
            if let Some(line) = e.line() {
                // YAML also breaks lines at a lone CR, NEL, and the Unicode line and paragraph
                // separators, which `str::lines` does not.
                let lines = text
                    .split(['\n', '\r', '\u{85}', '\u{2028}', '\u{2029}'])
                    .count();
                assert!(line >= 1 && line <= lines + 1, "line {line}: {e}");
            }
        }
        Ok(config) => {
            let probe = format!("{}/x", config.registry_host);
            assert!(
                Reference::parse(&probe).is_ok_and(|r| r.registry() == config.registry_host),
                "registry host {:?}",
                config.registry_host
            );
            for m in config.registries.values() {
                if let Some(p) = &m.prefix {
                    assert!((1..=30).contains(&p.len()), "prefix {p:?}");
                }
                assert_ne!(m.registry, config.registry_host);
            }
            let _ = config.rule_check.stale_after();
            let rules = RuleSnapshot::unknown();
            for image in IMAGES {
                check_decision(&config, &rules, image);
            }
        }
    }
});
