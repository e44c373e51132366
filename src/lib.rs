//! pullthrough: a Kubernetes mutating admission webhook that routes container images through
//! AWS ECR pull-through cache rules.
//!
//! The admission path is a pure pipeline: [`reference`] parses image references,
//! [`rewrite`] decides per image, [`admission`] turns an AdmissionReview into a response with a
//! JSON Patch. [`server`] and [`tls`] carry it over HTTPS; [`config`] loads and reloads the map.
#![forbid(unsafe_code)]

pub mod admission;
pub mod args;
pub mod audit;
pub mod cache;
pub mod cli;
pub mod commands;
pub mod config;
pub mod coverage;
pub mod digests;
pub mod ecr;
pub mod iac;
pub mod json;
pub mod metrics;
pub mod notice;
pub mod pod;
pub mod policy;
pub mod preview;
pub mod pullfail;
pub mod reconciler;
pub mod reference;
pub mod refresh;
pub mod reload;
pub mod rewrite;
pub mod rules;
pub mod server;
pub mod telemetry;
pub mod tls;
pub mod version;
pub mod warm;
