use super::*;
use crate::config::Overrides;

fn config(extra: &str) -> Config {
    Config::load(
        &format!("accountId: \"123456789012\"\nregion: eu-west-1\n{extra}"),
        &Overrides::default(),
    )
    .unwrap()
}

#[test]
fn globs_become_anchored_regular_expressions_that_match_what_the_engine_matches() {
    assert_eq!(
        cel::glob_regex("docker.io/library/*"),
        "^docker\\.io/library/(?s:.*)$"
    );
    assert_eq!(cel::glob_regex("a?b"), "^a(?s:.)b$");
    assert_eq!(cel::glob_regex("x+(y)"), "^x\\+\\(y\\)$");
}

#[test]
fn strings_are_quoted_for_cel() {
    assert_eq!(cel::quote("it's"), "'it\\'s'");
    assert_eq!(cel::quote("a\\b"), "'a\\\\b'");
}

#[test]
fn the_binding_reaches_opted_in_namespaces_only_and_never_kube_system_or_its_own() {
    let c = config("");
    let planned = plan_with(&c, &Options::default());
    let selector = &planned.binding["spec"]["matchResources"]["namespaceSelector"];
    assert_eq!(selector["matchLabels"]["pullthrough.dev/enabled"], "true");
    assert_eq!(
        selector["matchExpressions"][0]["values"],
        json!(["kube-system", "pullthrough"])
    );
    assert_eq!(planned.binding["spec"]["policyName"], "pullthrough");
    assert_eq!(
        planned.policy["spec"]["matchConstraints"]["resourceRules"][0]["resources"],
        json!(["pods", "pods/ephemeralcontainers"])
    );
    assert_eq!(planned.policy["spec"]["failurePolicy"], "Ignore");
    assert_eq!(planned.policy["spec"]["reinvocationPolicy"], "IfNeeded");

    let other = Options {
        namespace_selector: "team=web, !legacy".to_owned(),
        excluded_namespaces: vec!["ops".to_owned()],
        ..Options::default()
    };
    let planned = plan_with(&c, &other);
    let selector = &planned.binding["spec"]["matchResources"]["namespaceSelector"];
    assert_eq!(selector["matchLabels"], json!({"team": "web"}));
    assert_eq!(
        selector["matchExpressions"],
        json!([
            {"key": "legacy", "operator": "DoesNotExist"},
            {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system", "ops"]},
        ])
    );
    for bad in ["", " , ", "a b=c", "=x"] {
        let options = Options {
            namespace_selector: bad.to_owned(),
            ..Options::default()
        };
        assert!(
            plan(
                &c,
                &RuleSnapshot::unknown(),
                &DigestSnapshot::EMPTY,
                &options
            )
            .is_err(),
            "{bad:?}"
        );
    }
}

fn plan_with(c: &Config, options: &Options) -> Plan {
    plan(c, &RuleSnapshot::unknown(), &DigestSnapshot::EMPTY, options).unwrap()
}

#[test]
fn the_policy_names_the_registries_it_rewrites() {
    let c = config("");
    let planned = plan_with(&c, &Options::default());
    assert_eq!(
        planned.registries,
        [
            "docker.io",
            "ghcr.io",
            "public.ecr.aws",
            "quay.io",
            "registry.gitlab.com",
            "registry.k8s.io"
        ]
    );
    assert_eq!(
        planned.policy["metadata"]["annotations"]["pullthrough.dev/registries"],
        planned.registries.join(",")
    );
    let skip = config("ruleCheck:\n  whenUnknown: skip\n");
    assert!(plan_with(&skip, &Options::default()).registries.is_empty());
}

#[test]
fn the_same_knowledge_plans_the_same_text() {
    let c = config("digests: rewrite\n");
    assert_eq!(
        plan_with(&c, &Options::default()),
        plan_with(&c, &Options::default())
    );
}
