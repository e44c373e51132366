//! The private registry's names: every endpoint form of `<account>.dkr.ecr.<region>.amazonaws.com` (dual-stack, FIPS, China), and the default host.

/// The private ECR endpoint names and the domains they sit in: IPv4 and FIPS under
/// `amazonaws.com`, dual-stack under `on.aws`, and the China partition's pair.
const ECR_ENDPOINTS: &[(&str, &str)] = &[
    ("dkr.ecr", "amazonaws.com"),
    ("dkr.ecr-fips", "amazonaws.com"),
    ("dkr-ecr", "on.aws"),
    ("dkr-ecr-fips", "on.aws"),
    ("dkr.ecr", "amazonaws.com.cn"),
    ("dkr-ecr", "on.amazonwebservices.com.cn"),
];

/// The account and region of a private ECR registry host, in any of its endpoint forms
/// (`<account>.dkr.ecr.<region>.amazonaws.com`, `<account>.dkr-ecr.<region>.on.aws`, FIPS,
/// China).
pub fn private_ecr_endpoint(host: &str) -> Option<(&str, &str)> {
    let (account, rest) = host.split_once('.')?;
    if !is_account_id(account) {
        return None;
    }
    ECR_ENDPOINTS.iter().find_map(|(service, domain)| {
        let region = rest
            .strip_prefix(service)?
            .strip_prefix('.')?
            .strip_suffix(domain)?
            .strip_suffix('.')?;
        is_region(region).then_some((account, region))
    })
}

/// Whether `host` is a private ECR registry, in any of its endpoint forms.
pub fn is_private_ecr_host(host: &str) -> bool {
    private_ecr_endpoint(host).is_some()
}

/// Every endpoint name of an account's private registry in a region.
pub fn registry_endpoints(account_id: &str, region: &str) -> Vec<String> {
    let china = region.starts_with("cn-");
    ECR_ENDPOINTS
        .iter()
        .filter(|(_, domain)| (domain.rsplit('.').next() == Some("cn")) == china)
        .map(|(service, domain)| format!("{account_id}.{service}.{region}.{domain}"))
        .collect()
}

pub(super) fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

/// `xx-name-N` or `xx-gov-name-N`: lowercase words and a trailing number.
pub(super) fn is_region(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() >= 3
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        && parts[parts.len() - 1].bytes().all(|b| b.is_ascii_digit())
        && !parts[parts.len() - 1].is_empty()
}

/// The default private registry host of an account and region.
pub fn default_registry_host(account_id: &str, region: &str) -> String {
    let suffix = if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    };
    format!("{account_id}.dkr.ecr.{region}.{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::fixtures::load;

    #[test]
    fn private_endpoints_are_recognised_in_every_form() {
        for (host, want) in [
            (
                "123456789012.dkr.ecr.eu-west-1.amazonaws.com",
                Some(("123456789012", "eu-west-1")),
            ),
            (
                "123456789012.dkr.ecr-fips.us-east-1.amazonaws.com",
                Some(("123456789012", "us-east-1")),
            ),
            (
                "123456789012.dkr-ecr.eu-west-1.on.aws",
                Some(("123456789012", "eu-west-1")),
            ),
            (
                "123456789012.dkr-ecr-fips.us-gov-west-1.on.aws",
                Some(("123456789012", "us-gov-west-1")),
            ),
            (
                "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn",
                Some(("123456789012", "cn-north-1")),
            ),
            (
                "123456789012.dkr-ecr.cn-north-1.on.amazonwebservices.com.cn",
                Some(("123456789012", "cn-north-1")),
            ),
            ("123456789012.dkr.ecr.eu-west-1.on.aws", None),
            ("12345678901.dkr.ecr.eu-west-1.amazonaws.com", None),
            (
                "123456789012.dkr.ecr.eu-west-1.amazonaws.com.evil.example",
                None,
            ),
        ] {
            assert_eq!(private_ecr_endpoint(host), want, "{host}");
        }
        let c = load("accountId: \"123456789012\"\nregion: eu-west-1\n").unwrap();
        assert!(c.is_own_registry("123456789012.dkr-ecr-fips.eu-west-1.on.aws"));
        assert!(!c.is_own_registry("123456789012.dkr-ecr.eu-west-2.on.aws"));
    }
}
