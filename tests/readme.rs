//! The README's operator reference against the product: every policy field of the CRD, every Ready
//! reason, every alert and every metric family is documented there.

use std::collections::BTreeSet;

use kube::CustomResourceExt as _;
use taskreaper::api::{FailedTaskCleanupPolicy, Reason};

const README: &str = include_str!("../README.md");
const ALERTS: &str = include_str!("../deploy/components/monitoring/prometheusrule.yaml");

/// The text of the README section that starts with `heading`, up to the next heading of its level
/// or above.
fn section(heading: &str) -> &'static str {
    let start = README.find(&format!("\n{heading}\n")).unwrap_or_else(|| panic!("README has no {heading:?}"));
    let level = heading.split(' ').next().unwrap_or("#").len();
    let body = &README[start + heading.len() + 2..];
    let end = body
        .match_indices("\n#")
        .find(|(i, _)| body[i + 1..].split(' ').next().is_some_and(|h| h.len() <= level))
        .map_or(body.len(), |(i, _)| i);
    &body[..end]
}

/// Every property name under `schema`, at any depth.
fn property_names(schema: &serde_json::Value, names: &mut BTreeSet<String>) {
    if let Some(properties) = schema.get("properties").and_then(serde_json::Value::as_object) {
        for (name, child) in properties {
            names.insert(name.clone());
            property_names(child, names);
        }
    }
    if let Some(items) = schema.get("items") {
        property_names(items, names);
    }
}

#[test]
fn the_policy_reference_names_every_spec_field() {
    let crd = serde_json::to_value(FailedTaskCleanupPolicy::crd()).expect("the CRD serializes");
    let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    let mut names = BTreeSet::new();
    property_names(spec, &mut names);
    assert!(names.len() > 20, "the walk found the spec's fields: {names:?}");
    let reference = section(
        "### The policy (`taskreaper.io/v1alpha1`, kind `FailedTaskCleanupPolicy`, short name `ftcp`)",
    );
    let missing: Vec<&String> = names.iter().filter(|n| !reference.contains(&format!("{n}:"))).collect();
    assert!(missing.is_empty(), "README's policy reference lacks the CRD fields {missing:?}");
}

#[test]
fn every_ready_reason_says_what_to_do() {
    let table = section("### Ready reasons and what to do");
    for reason in Reason::ALL {
        let row = table
            .lines()
            .find(|l| l.starts_with('|') && l.contains(&format!("`{}`", reason.as_str())))
            .unwrap_or_else(|| panic!("README's reason table has no row for {}", reason.as_str()));
        let cells: Vec<&str> = row.split('|').map(str::trim).filter(|c| !c.is_empty()).collect();
        assert_eq!(cells.len(), 4, "reason, condition, meaning, what to do: {row}");
    }
}

#[test]
fn every_alert_is_documented() {
    let table = section("### Alerts");
    let alerts: Vec<&str> =
        ALERTS.lines().filter_map(|l| l.trim().strip_prefix("- alert: ")).map(str::trim).collect();
    assert!(alerts.len() >= 4, "the rules file holds the alerts: {alerts:?}");
    for alert in alerts {
        assert!(table.contains(&format!("`{alert}`")), "README's Alerts table lacks {alert}");
    }
}

#[test]
fn every_metric_family_is_documented() {
    let table = section("## Metrics reference");
    let exposition = taskreaper::observability::Metrics::default().encode();
    let families: Vec<&str> = exposition
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    // Families with labels show only once they have a series; these have none.
    assert!(families.len() >= 8, "the registry holds the families: {families:?}");
    for family in families {
        let counter = format!("{family}_total");
        assert!(
            table.contains(&format!("`{family}")) || table.contains(&format!("`{counter}")),
            "README's Metrics reference lacks {family}"
        );
    }
}
