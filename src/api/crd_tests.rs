use super::*;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::ValidationRule;

fn schema() -> JSONSchemaProps {
    let crd = crd();
    crd.spec.versions[0].schema.as_ref().unwrap().open_api_v3_schema.clone().unwrap()
}

fn child<'a>(schema: &'a JSONSchemaProps, path: &str) -> &'a JSONSchemaProps {
    path.split('.').fold(schema, |s, key| {
        if key == "[]" {
            match s.items.as_ref() {
                Some(JSONSchemaPropsOrArray::Schema(item)) => item,
                other => panic!("no items at {path}: {other:?}"),
            }
        } else {
            s.properties
                .as_ref()
                .and_then(|p| p.get(key))
                .unwrap_or_else(|| panic!("no property {key} in {path}"))
        }
    })
}

fn rules(schema: &JSONSchemaProps) -> &[ValidationRule] {
    schema.x_kubernetes_validations.as_deref().unwrap_or_default()
}

/// Every property, with its dotted path.
fn walk<'a>(path: String, schema: &'a JSONSchemaProps, out: &mut Vec<(String, &'a JSONSchemaProps)>) {
    out.push((path.clone(), schema));
    for (key, property) in schema.properties.iter().flatten() {
        walk(format!("{path}.{key}"), property, out);
    }
    if let Some(JSONSchemaPropsOrArray::Schema(item)) = &schema.items {
        walk(format!("{path}[]"), item, out);
    }
}

#[test]
fn names_scope_and_subresources() {
    let crd = crd();
    assert_eq!(crd.metadata.name.as_deref(), Some("failedtaskcleanuppolicies.taskreaper.io"));
    assert_eq!(crd.spec.group, "taskreaper.io");
    assert_eq!(crd.spec.scope, "Namespaced");
    assert_eq!(crd.spec.names.kind, "FailedTaskCleanupPolicy");
    assert_eq!(crd.spec.names.plural, "failedtaskcleanuppolicies");
    assert_eq!(crd.spec.names.short_names.as_deref(), Some(&["ftcp".to_owned()][..]));
    let version = &crd.spec.versions[0];
    assert_eq!((version.name.as_str(), version.served, version.storage), ("v1alpha1", true, true));
    assert!(version.subresources.as_ref().unwrap().status.is_some(), "status subresource");
}

#[test]
fn printer_columns() {
    let crd = crd();
    let columns: Vec<(String, String, String)> = crd.spec.versions[0]
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| (c.name.clone(), c.type_.clone(), c.json_path.clone()))
        .collect();
    let expected = [
        ("Ready", "string", r#".status.conditions[?(@.type=="Ready")].status"#),
        ("Reason", "string", r#".status.conditions[?(@.type=="Ready")].reason"#),
        ("Suspended", "boolean", ".spec.suspend"),
        ("Last Run", "date", ".status.lastScheduleTime"),
        ("Next Run", "string", ".status.nextScheduleTime"),
        ("Deleted", "integer", ".status.totalDeleted"),
        ("Age", "date", ".metadata.creationTimestamp"),
    ];
    let expected: Vec<_> =
        expected.iter().map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string())).collect();
    assert_eq!(columns, expected);
}

#[test]
fn schema_carries_the_admission_rules() {
    let root = schema();
    let expectations: &[(&str, &str, &str)] = &[
        ("spec.schedule", "!(has(self.interval) && has(self.cron))", "not both"),
        ("spec.schedule", "has(self.interval) || has(self.cron)", "schedule needs either interval"),
        ("spec.schedule", "!has(self.timeZone) || has(self.cron)", "timeZone is only used with"),
        ("spec.schedule", "duration(self.jitter) < duration(self.interval)", "jitter must be shorter"),
        ("spec.schedule.interval", "duration(self) >= duration('1m')", "at least 1m"),
        ("spec.schedule.interval", "self.matches('^(([0-9]{1,6}h)", "must be a duration"),
        ("spec.schedule.cron", "self.matches('^([*]", "five-field cron expression"),
        ("spec.schedule.timeZone", "self.matches(", "IANA time zone"),
        ("spec.schedule.timeZone", ".getFullYear(self) == 2000", "time zone the apiserver knows"),
        ("spec.projects", "self.all(p, self.exists_one(q, q.id == p.id))", "only once"),
        ("spec.projects.[].id", "self.matches('^[0-9a-f]{32}$')", "32 lowercase hexadecimal"),
        ("spec.projects.[].region", "self.matches('^[a-z]{2,}-[a-z]+-[0-9]+$')", "region id"),
        ("spec.region", "self.matches('^[a-z]{2,}-[a-z]+-[0-9]+$')", "region id"),
        ("spec.endpoints.sdrs", "url(self).getScheme() == 'https'", "https:// URL"),
        ("spec.endpoints.kps", "url(self).getScheme() == 'https'", "https:// URL"),
        ("spec.credentialsRef.name", "self.matches(", "Secret"),
        ("spec.targets.[]", "has(self.protectionGroupIds)", "needs protectionGroupIds"),
        ("spec.targets.[]", "!has(self.protectionGroupIds)", "protectionGroupIds is only allowed"),
        ("spec.targets.[]", "self.service == 'SDRS'", "exists only for service SDRS"),
        ("spec.targets.[]", "has(self.match)", "needs match"),
        ("spec.targets.[]", "!has(self.match)", "match is only allowed"),
        ("spec.targets.[]", "self.match.operateTypes", "only allowed for service KPS"),
        ("spec.targets.[]", "self.match.resourceTypes", "resourceTypes is only allowed for service SDRS"),
        ("spec.targets.[]", "self.match.failureStatuses", "failureStatuses is only allowed for service SDRS"),
        ("spec.targets.[].protectionGroupIds", "self.all(id, id.matches(", "protection group ids"),
        ("spec.targets.[].match.namePattern", "'x'.matches(self) == 'x'.matches(self)", "valid RE2"),
        ("spec.targets.[].match.olderThan", "self.matches(", "must be a duration"),
        ("spec.schedule.jitter", "self.matches(", "must be a duration"),
    ];
    for (path, rule, message) in expectations {
        let found = rules(child(&root, path))
            .iter()
            .any(|r| r.rule.contains(rule) && r.message.as_deref().is_some_and(|m| m.contains(message)));
        assert!(found, "no rule containing {rule:?} with message {message:?} at {path}");
    }
}

#[test]
fn schema_bounds_defaults_and_enums() {
    let root = schema();
    let spec = child(&root, "spec");
    let mut required = spec.required.clone().unwrap();
    required.sort();
    assert_eq!(
        required,
        ["region", "schedule", "targets"],
        "credentials: credentialsRef or workloadIdentity; projects or projectDiscovery"
    );
    let discovery = child(spec, "projectDiscovery");
    assert_eq!(child(discovery, "regions").min_items, Some(1));
    assert_eq!(child(discovery, "regions").max_items, Some(16));
    let max_projects = child(discovery, "maxProjects");
    assert_eq!((max_projects.minimum, max_projects.maximum), (Some(1.0), Some(256.0)));
    assert_eq!(max_projects.default.as_ref().map(|d| d.0.clone()), Some(serde_json::json!(64)));
    assert_eq!(child(spec, "projects").min_items, Some(1));
    assert_eq!(child(spec, "projects").max_items, Some(64));
    assert_eq!(child(spec, "targets").min_items, Some(1));
    assert_eq!(child(spec, "targets").max_items, Some(16));
    let max = child(spec, "maxDeletionsPerRun");
    assert_eq!(max.minimum, Some(1.0));
    assert_eq!(max.default.as_ref().map(|d| d.0.clone()), Some(serde_json::json!(1000)));
    assert_eq!(child(spec, "suspend").default.as_ref().map(|d| d.0.clone()), Some(serde_json::json!(false)));
    assert_eq!(child(spec, "dryRun").default.as_ref().map(|d| d.0.clone()), Some(serde_json::json!(false)));

    let enum_values = |path: &str| -> Vec<String> {
        child(spec, path).enum_.iter().flatten().map(|v| v.0.as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(enum_values("targets.[].service"), ["SDRS", "KPS"]);
    assert_eq!(enum_values("targets.[].scope"), ["All", "GroupLevel", "ProtectionGroups", "Matching"]);
    use crate::cloud::model::{KPS_OPERATE_TYPES, SDRS_FAILURE_STATUSES, SDRS_RESOURCE_TYPES};
    assert_eq!(enum_values("targets.[].match.resourceTypes.[]"), SDRS_RESOURCE_TYPES);
    assert_eq!(enum_values("targets.[].match.failureStatuses.[]"), SDRS_FAILURE_STATUSES);
    assert_eq!(enum_values("targets.[].match.operateTypes.[]"), KPS_OPERATE_TYPES);

    let conditions = child(&root, "status.conditions");
    assert_eq!(conditions.x_kubernetes_list_type.as_deref(), Some("map"));
    assert_eq!(conditions.x_kubernetes_list_map_keys.as_deref(), Some(&["type".to_owned()][..]));
    assert!(
        child(spec, "credentialsRef").properties.as_ref().unwrap().keys().eq(["name"]),
        "no namespace field"
    );
}

/// The apiserver rejects CEL rules whose cost it cannot bound: every string and list of the
/// spec has a maximum size.
#[test]
fn every_spec_string_and_list_is_bounded() {
    let root = schema();
    let mut all = Vec::new();
    walk("spec".into(), child(&root, "spec"), &mut all);
    for (path, s) in all {
        match s.type_.as_deref() {
            Some("string") if s.enum_.is_none() => assert!(s.max_length.is_some(), "{path} has no maxLength"),
            Some("array") => assert!(s.max_items.is_some(), "{path} has no maxItems"),
            _ => {}
        }
    }
}

#[test]
fn every_field_is_documented_in_paragraphs() {
    let root = schema();
    let mut all = Vec::new();
    walk("".into(), &root, &mut all);
    for (path, s) in all {
        if path.is_empty() || path.ends_with("[]") {
            continue;
        }
        let description = s.description.as_deref().unwrap_or_else(|| panic!("{path} has no description"));
        assert!(description.len() > 10, "{path}: {description:?}");
        assert!(
            !description.replace("\n\n", "").contains('\n'),
            "{path} has a hard line break: {description:?}"
        );
    }
    assert!(child(&root, "spec.schedule").description.as_deref().unwrap().contains("either interval"));
}

#[test]
fn nothing_is_nullable() {
    let root = schema();
    let mut all = Vec::new();
    walk("".into(), &root, &mut all);
    for (path, s) in all {
        assert_eq!(s.nullable, None, "{path} is nullable");
    }
}

#[test]
fn no_unrecognized_integer_formats() {
    let root = schema();
    let mut all = Vec::new();
    walk("".into(), &root, &mut all);
    for (path, s) in all {
        if let Some(format) = s.format.as_deref() {
            assert!(["int32", "int64", "date-time"].contains(&format), "{path} has format {format}");
        }
    }
}

#[test]
fn yaml_starts_with_the_header_and_reads_back() {
    let yaml = crd_yaml().unwrap();
    assert!(yaml.starts_with(HEADER));
    let back: CustomResourceDefinition = serde_saphyr::from_str(&yaml).unwrap();
    assert_eq!(back, crd());
    let mut out = Vec::new();
    write_crd(&mut out).unwrap();
    assert_eq!(String::from_utf8(out).unwrap(), yaml);
}

#[test]
fn reflow_keeps_paragraphs() {
    assert_eq!(reflow("a\nb\n\nc\n d"), "a b\n\nc d");
    assert_eq!(reflow("one line"), "one line");
}
