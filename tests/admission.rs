//! Admission of `FailedTaskCleanupPolicy` objects by a real kube-apiserver: the CRD in `crds/`
//! rejects invalid policies with actionable messages and accepts valid ones, and `kubectl`
//! shows the field documentation and printer columns.
//!
//! Run through `bash tests/run.sh`, or with `TASKREAPER_CONTROL_PLANE_BIN` set to the directory
//! `bash tests/control-plane/build.sh` prints.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::control_plane::{ControlPlane, Identity};
use kube::api::{ApiResource, DynamicObject, PostParams};
use kube::{Api, Resource as _};
use serde_json::{Value, json};
use taskreaper::api::{EXAMPLE_POLICY, FailedTaskCleanupPolicy};

const CRD_YAML: &str = include_str!("../crds/failedtaskcleanuppolicies.taskreaper.io.yaml");

/// Installs the CRD and returns an untyped API for policies in a fresh namespace.
async fn policies(prefix: &str) -> (Api<DynamicObject>, String) {
    let cp = ControlPlane::shared();
    cp.apply_crd(CRD_YAML).await;
    let ns = cp.new_namespace(prefix).await;
    let resource = ApiResource::erase::<FailedTaskCleanupPolicy>(&());
    (Api::namespaced_with(cp.admin_client().await, &ns, &resource), ns)
}

/// The design example as JSON, renamed.
fn example(name: &str) -> Value {
    let mut policy: Value = serde_saphyr::from_str(EXAMPLE_POLICY).expect("the example policy parses");
    policy["metadata"] = json!({ "name": name });
    policy
}

async fn create(api: &Api<DynamicObject>, policy: Value) -> Result<DynamicObject, kube::Error> {
    let object: DynamicObject = serde_json::from_value(policy).expect("a policy is a DynamicObject");
    api.create(&PostParams::default(), &object).await
}

/// An invalid policy: how it differs from the example, and what the rejection must say.
struct Case {
    name: &'static str,
    mutate: fn(&mut Value),
    expected: &'static [&'static str],
}

fn spec(policy: &mut Value) -> &mut Value {
    &mut policy["spec"]
}

fn target(policy: &mut Value, index: usize) -> &mut Value {
    &mut policy["spec"]["targets"][index]
}

const CASES: &[Case] = &[
    Case {
        name: "interval-and-cron",
        mutate: |p| spec(p)["schedule"] = json!({"interval": "1h", "cron": "0 3 * * *"}),
        expected: &["spec.schedule", "set either schedule.interval or schedule.cron, not both"],
    },
    Case {
        name: "neither-interval-nor-cron",
        mutate: |p| spec(p)["schedule"] = json!({"jitter": "1m"}),
        expected: &["spec.schedule", "schedule needs either interval (such as 1h) or cron"],
    },
    Case {
        name: "unknown-time-zone",
        mutate: |p| spec(p)["schedule"] = json!({"cron": "0 3 * * *", "timeZone": "Mars/Olympus_Mons"}),
        expected: &[
            "spec.schedule.timeZone",
            "unknown time zone Mars/Olympus_Mons",
            "use an IANA name such as Asia/Shanghai",
        ],
    },
    Case {
        name: "interval-30s",
        mutate: |p| spec(p)["schedule"] = json!({"interval": "30s"}),
        expected: &["spec.schedule.interval", "schedule.interval must be at least 1m"],
    },
    Case {
        name: "interval-not-a-duration",
        mutate: |p| spec(p)["schedule"] = json!({"interval": "1 hour"}),
        expected: &["spec.schedule.interval", "must be a duration such as 90s, 15m, 24h or 1h30m"],
    },
    Case {
        name: "cron-four-fields",
        mutate: |p| spec(p)["schedule"] = json!({"cron": "0 3 * *"}),
        expected: &["spec.schedule.cron", "must be a five-field cron expression"],
    },
    Case {
        name: "cron-minute-out-of-range",
        mutate: |p| spec(p)["schedule"] = json!({"cron": "75 3 * * *"}),
        expected: &["spec.schedule.cron", "must be a five-field cron expression"],
    },
    Case {
        name: "bad-time-zone",
        mutate: |p| spec(p)["schedule"] = json!({"cron": "0 3 * * *", "timeZone": "Asia Shanghai"}),
        expected: &["spec.schedule.timeZone", "must be an IANA time zone name such as Asia/Shanghai"],
    },
    Case {
        name: "time-zone-without-cron",
        mutate: |p| spec(p)["schedule"] = json!({"interval": "1h", "timeZone": "UTC"}),
        expected: &["spec.schedule.timeZone", "timeZone is only used with schedule.cron"],
    },
    Case {
        name: "jitter-not-shorter-than-interval",
        mutate: |p| spec(p)["schedule"] = json!({"interval": "10m", "jitter": "10m"}),
        expected: &["spec.schedule.jitter", "schedule.jitter must be shorter than schedule.interval"],
    },
    Case {
        name: "bad-project-id",
        mutate: |p| spec(p)["projects"][0]["id"] = json!("0605767B5C00D4BB2F10C01A1E3B3A7E"),
        expected: &["spec.projects[0].id", "must be a Huawei Cloud project id: 32 lowercase hexadecimal"],
    },
    Case {
        name: "duplicate-project-ids",
        mutate: |p| spec(p)["projects"][1]["id"] = json!("0605767b5c00d4bb2f10c01a1e3b3a7e"),
        expected: &["spec.projects", "each project id may appear only once"],
    },
    Case {
        name: "no-projects",
        mutate: |p| spec(p)["projects"] = json!([]),
        expected: &["spec.projects", "should have at least 1 items"],
    },
    Case {
        name: "no-targets",
        mutate: |p| spec(p)["targets"] = json!([]),
        expected: &["spec.targets", "should have at least 1 items"],
    },
    Case {
        name: "bad-region",
        mutate: |p| spec(p)["region"] = json!("north"),
        expected: &["spec.region", "must be a Huawei Cloud region id such as cn-north-4"],
    },
    Case {
        name: "protection-group-ids-with-all",
        mutate: |p| target(p, 0)["protectionGroupIds"] = json!(["897f57b2-6e94-4179-b414-9532726c59f2"]),
        expected: &[
            "spec.targets[0].protectionGroupIds",
            "protectionGroupIds is only allowed with scope ProtectionGroups",
        ],
    },
    Case {
        name: "protection-groups-without-ids",
        mutate: |p| {
            target(p, 1).as_object_mut().map(|t| t.remove("protectionGroupIds"));
        },
        expected: &["spec.targets[1].protectionGroupIds", "scope ProtectionGroups needs protectionGroupIds"],
    },
    Case {
        name: "protection-groups-for-kps",
        mutate: |p| target(p, 1)["service"] = json!("KPS"),
        expected: &["spec.targets[1].scope", "scope ProtectionGroups exists only for service SDRS"],
    },
    Case {
        name: "bad-protection-group-id",
        mutate: |p| target(p, 1)["protectionGroupIds"] = json!(["group-1"]),
        expected: &["spec.targets[1].protectionGroupIds", "must be SDRS protection group ids"],
    },
    Case {
        name: "matching-without-match",
        mutate: |p| {
            target(p, 2).as_object_mut().map(|t| t.remove("match"));
        },
        expected: &["spec.targets[2].match", "scope Matching needs match"],
    },
    Case {
        name: "match-with-all",
        mutate: |p| target(p, 3)["match"] = json!({"namePattern": "^kp-"}),
        expected: &["spec.targets[3].match", "match is only allowed with scope Matching"],
    },
    Case {
        name: "operate-types-on-sdrs",
        mutate: |p| target(p, 2)["match"]["operateTypes"] = json!(["FAILED_RESET"]),
        expected: &[
            "spec.targets[2].match.operateTypes",
            "match.operateTypes is only allowed for service KPS",
        ],
    },
    Case {
        name: "resource-types-on-kps",
        mutate: |p| target(p, 4)["match"]["resourceTypes"] = json!(["replications"]),
        expected: &[
            "spec.targets[4].match.resourceTypes",
            "match.resourceTypes is only allowed for service SDRS",
        ],
    },
    Case {
        name: "failure-statuses-on-kps",
        mutate: |p| target(p, 4)["match"]["failureStatuses"] = json!(["stopFail"]),
        expected: &[
            "spec.targets[4].match.failureStatuses",
            "failureStatuses is only allowed for service SDRS",
        ],
    },
    Case {
        name: "unknown-service",
        mutate: |p| target(p, 0)["service"] = json!("ECS"),
        expected: &[
            "spec.targets[0].service",
            r#"Unsupported value: "ECS""#,
            r#"supported values: "SDRS", "KPS""#,
        ],
    },
    Case {
        name: "unknown-failure-status",
        mutate: |p| target(p, 2)["match"]["failureStatuses"] = json!(["createFailed"]),
        expected: &["spec.targets[2].match.failureStatuses[0]", r#"Unsupported value: "createFailed""#],
    },
    Case {
        name: "http-endpoint",
        mutate: |p| spec(p)["endpoints"]["sdrs"] = json!("http://sdrs.cn-north-4.myhuaweicloud.com"),
        expected: &["spec.endpoints.sdrs", "must be an https:// URL"],
    },
    Case {
        name: "endpoint-with-password",
        mutate: |p| {
            spec(p)["endpoints"]["sdrs"] = json!("https://admin:hunter2@sdrs.cn-north-4.myhuaweicloud.com")
        },
        expected: &[
            "spec.endpoints.sdrs",
            "must not hold a user name or password (user:password@host)",
            "credentials belong in the Secret named by spec.credentialsRef",
        ],
    },
    Case {
        name: "endpoint-with-user",
        mutate: |p| spec(p)["endpoints"]["kps"] = json!("https://admin@kms.cn-north-4.myhuaweicloud.com/"),
        expected: &["spec.endpoints.kps", "must not hold a user name or password"],
    },
    Case {
        name: "endpoint-with-path",
        mutate: |p| spec(p)["endpoints"]["kps"] = json!("https://kms.cn-north-4.myhuaweicloud.com/v3"),
        expected: &["spec.endpoints.kps", "must not have a path (only empty or /)", "give only https://host"],
    },
    Case {
        name: "endpoint-with-query",
        mutate: |p| spec(p)["endpoints"]["sdrs"] = json!("https://sdrs.cn-north-4.myhuaweicloud.com/?a=b"),
        expected: &["spec.endpoints.sdrs", "must not have a query (?...) or a fragment (#...)"],
    },
    Case {
        name: "endpoint-with-fragment",
        mutate: |p| spec(p)["endpoints"]["sdrs"] = json!("https://sdrs.cn-north-4.myhuaweicloud.com#x"),
        expected: &["spec.endpoints.sdrs", "must not have a query (?...) or a fragment (#...)"],
    },
    Case {
        name: "invalid-name-pattern",
        mutate: |p| target(p, 2)["match"]["namePattern"] = json!("(tmp-"),
        expected: &[
            "spec.targets[2].match.namePattern",
            "namePattern must be a valid RE2 regular expression",
        ],
    },
    Case {
        name: "older-than-in-days",
        mutate: |p| target(p, 4)["match"]["olderThan"] = json!("3d"),
        expected: &["spec.targets[4].match.olderThan", "must be a duration such as 90s"],
    },
    Case {
        name: "max-deletions-zero",
        mutate: |p| spec(p)["maxDeletionsPerRun"] = json!(0),
        expected: &["spec.maxDeletionsPerRun", "should be greater than or equal to 1"],
    },
    Case {
        name: "secret-name",
        mutate: |p| spec(p)["credentialsRef"]["name"] = json!("Hw_Cloud"),
        expected: &["spec.credentialsRef.name", "must be the name of a Secret in this namespace"],
    },
    Case {
        name: "two-credential-sources",
        mutate: |p| {
            spec(p)["workloadIdentity"] =
                json!({"serviceAccountName": "cleaner", "identityProviderId": "k8s"})
        },
        expected: &["spec", "give exactly one credential source: credentialsRef"],
    },
    Case {
        name: "no-credential-source",
        mutate: |p| {
            spec(p).as_object_mut().map(|s| s.remove("credentialsRef"));
        },
        expected: &["spec", "give exactly one credential source: credentialsRef"],
    },
    Case {
        name: "service-account-and-controller-token",
        mutate: |p| {
            spec(p).as_object_mut().map(|s| s.remove("credentialsRef"));
            spec(p)["workloadIdentity"] = json!({"serviceAccountName": "cleaner", "useControllerToken": true,
                "identityProviderId": "k8s"});
        },
        expected: &["spec.workloadIdentity", "give either serviceAccountName"],
    },
    Case {
        name: "service-account-of-another-namespace",
        mutate: |p| {
            spec(p).as_object_mut().map(|s| s.remove("credentialsRef"));
            spec(p)["workloadIdentity"] =
                json!({"serviceAccountName": "other-namespace/cleaner", "identityProviderId": "k8s"});
        },
        expected: &[
            "spec.workloadIdentity.serviceAccountName",
            "must be the name of a ServiceAccount in this namespace",
        ],
    },
    Case {
        name: "projects-and-discovery",
        mutate: |p| spec(p)["projectDiscovery"] = json!({"regions": ["cn-north-4"]}),
        expected: &["spec", "give exactly one of projects (a list of project ids) or projectDiscovery"],
    },
    Case {
        name: "neither-projects-nor-discovery",
        mutate: |p| {
            spec(p).as_object_mut().map(|s| s.remove("projects"));
        },
        expected: &["spec", "give exactly one of projects (a list of project ids) or projectDiscovery"],
    },
    Case {
        name: "discovery-without-regions",
        mutate: |p| {
            spec(p).as_object_mut().map(|s| s.remove("projects"));
            spec(p)["projectDiscovery"] = json!({"namePattern": "^cn-"});
        },
        expected: &[
            "spec.projectDiscovery.regions",
            "needs regions (such as [cn-north-4]) unless allProjects is true",
        ],
    },
    Case {
        name: "discovery-region-twice",
        mutate: |p| {
            spec(p).as_object_mut().map(|s| s.remove("projects"));
            spec(p)["projectDiscovery"] = json!({"regions": ["cn-north-4", "cn-north-4"]});
        },
        expected: &["spec.projectDiscovery.regions", "each region may appear only once"],
    },
    Case {
        name: "discovery-bad-region",
        mutate: |p| {
            spec(p).as_object_mut().map(|s| s.remove("projects"));
            spec(p)["projectDiscovery"] = json!({"regions": ["North China"]});
        },
        expected: &["spec.projectDiscovery.regions", "must be Huawei Cloud region ids such as cn-north-4"],
    },
    Case {
        name: "discovery-too-many-projects",
        mutate: |p| {
            spec(p).as_object_mut().map(|s| s.remove("projects"));
            spec(p)["projectDiscovery"] = json!({"regions": ["cn-north-4"], "maxProjects": 300});
        },
        expected: &["spec.projectDiscovery.maxProjects", "less than or equal to 256"],
    },
    Case {
        name: "discovery-bad-name-pattern",
        mutate: |p| {
            spec(p).as_object_mut().map(|s| s.remove("projects"));
            spec(p)["projectDiscovery"] = json!({"allProjects": true, "namePattern": "(unclosed"});
        },
        expected: &["spec.projectDiscovery.namePattern", "must be a valid RE2 regular expression"],
    },
];

#[tokio::test]
async fn invalid_policies_are_rejected_with_actionable_messages() {
    let (api, _ns) = policies("admission-invalid").await;
    let mut failures = Vec::new();
    for case in CASES {
        let mut policy = example(case.name);
        (case.mutate)(&mut policy);
        // The controller's own validation (used without an apiserver) rejects it too.
        if let Ok(typed) = serde_json::from_value::<FailedTaskCleanupPolicy>(policy.clone())
            && typed.spec.validate().is_ok()
        {
            failures.push(format!("{}: FailedTaskCleanupPolicySpec::validate accepts it", case.name));
        }
        match create(&api, policy).await {
            Ok(_) => failures.push(format!("{}: accepted, but should be rejected", case.name)),
            Err(kube::Error::Api(status)) => {
                println!("{}: {}", case.name, status.message);
                let missing: Vec<_> = case.expected.iter().filter(|e| !status.message.contains(*e)).collect();
                if status.code != 422 || !missing.is_empty() {
                    failures.push(format!(
                        "{}: HTTP {} without {missing:?} in:\n    {}",
                        case.name, status.code, status.message
                    ));
                }
            }
            Err(other) => failures.push(format!("{}: unexpected error {other}", case.name)),
        }
    }
    assert!(CASES.len() >= 14);
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n")
    );
}

#[tokio::test]
async fn the_design_example_is_accepted_as_written() {
    let (api, ns) = policies("admission-valid").await;
    let created = create(&api, example("dr-cleanup")).await.expect("the design example is accepted");
    let typed: FailedTaskCleanupPolicy = serde_json::from_value(serde_json::to_value(&created).unwrap())
        .expect("the stored object reads back");
    let expected: FailedTaskCleanupPolicy = serde_saphyr::from_str(EXAMPLE_POLICY).unwrap();
    assert_eq!(typed.spec, expected.spec, "the apiserver stored the spec unchanged");
    assert_eq!(typed.meta().namespace.as_deref(), Some(ns.as_str()));
    typed.spec.validate().expect("what admission accepts, the controller accepts");
}

/// Schedules and filters at the edges of what the rules allow.
type Variant = (&'static str, fn(&mut Value));

const VALID_VARIANTS: &[Variant] = &[
    ("cron-with-names", |p| {
        spec(p)["schedule"] =
            json!({"cron": "0 9-17/2 * * MON-FRI", "timeZone": "America/Argentina/Buenos_Aires"})
    }),
    ("cron-steps-and-lists", |p| {
        spec(p)["schedule"] = json!({"cron": "*/15 0,12 1-15 jan,jul *", "jitter": "2h"})
    }),
    ("interval-minimum", |p| spec(p)["schedule"] = json!({"interval": "1m", "jitter": "59s"})),
    ("interval-compound", |p| spec(p)["schedule"] = json!({"interval": "1h30m15s"})),
    ("utc", |p| spec(p)["schedule"] = json!({"cron": "0 3 * * *", "timeZone": "UTC"})),
    ("match-everything-kps", |p| target(p, 4)["match"] = json!({})),
    ("unicode-name-pattern", |p| target(p, 2)["match"]["namePattern"] = json!("(?i)^tmp-[\\p{L}0-9]+$")),
    ("endpoint-with-port", |p| spec(p)["endpoints"]["kps"] = json!("https://kms.example.internal:8443")),
    ("endpoint-with-slash", |p| spec(p)["endpoints"]["sdrs"] = json!("https://sdrs.example.internal:8443/")),
    ("max-deletions-one", |p| spec(p)["maxDeletionsPerRun"] = json!(1)),
    ("workload-identity-service-account", |p| {
        spec(p).as_object_mut().map(|s| s.remove("credentialsRef"));
        spec(p)["workloadIdentity"] =
            json!({"serviceAccountName": "cleaner", "identityProviderId": "k8s_cluster-1"});
    }),
    ("workload-identity-controller-token", |p| {
        spec(p).as_object_mut().map(|s| s.remove("credentialsRef"));
        spec(p)["workloadIdentity"] = json!({"useControllerToken": true, "identityProviderId": "k8s"});
    }),
    ("discovery-by-region", |p| {
        spec(p).as_object_mut().map(|s| s.remove("projects"));
        spec(p)["projectDiscovery"] =
            json!({"regions": ["cn-north-4", "ap-southeast-1"], "maxProjects": 256});
    }),
    ("discovery-all-projects", |p| {
        spec(p).as_object_mut().map(|s| s.remove("projects"));
        spec(p)["projectDiscovery"] = json!({"allProjects": true, "namePattern": "_team-", "maxProjects": 1});
    }),
    ("dry-run-suspended", |p| {
        spec(p)["dryRun"] = json!(true);
        spec(p)["suspend"] = json!(true);
    }),
];

#[tokio::test]
async fn valid_variants_are_accepted_by_the_apiserver_and_the_controller() {
    let (api, _ns) = policies("admission-variants").await;
    let mut failures = Vec::new();
    for (name, mutate) in VALID_VARIANTS {
        let mut policy = example(name);
        mutate(&mut policy);
        let typed: FailedTaskCleanupPolicy =
            serde_json::from_value(policy.clone()).expect("the variant reads");
        if let Err(errors) = typed.spec.validate() {
            let errors: Vec<_> = errors.iter().map(ToString::to_string).collect();
            failures.push(format!("{name}: validate rejects it: {errors:?}"));
        }
        if let Err(e) = create(&api, policy).await {
            failures.push(format!("{name}: the apiserver rejects it: {e}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn omitted_fields_are_defaulted_and_nulls_pruned() {
    let (api, _ns) = policies("admission-defaults").await;
    let minimal = json!({
        "apiVersion": "taskreaper.io/v1alpha1",
        "kind": "FailedTaskCleanupPolicy",
        "metadata": {"name": "minimal"},
        "spec": {
            "credentialsRef": {"name": "creds"},
            "region": "cn-north-4",
            "projects": [{"id": "0605767b5c00d4bb2f10c01a1e3b3a7e", "region": null}],
            "targets": [{"service": "KPS", "scope": "All", "match": null}],
            "schedule": {"cron": "0 3 * * 1-5", "timeZone": "Asia/Shanghai", "interval": null},
            "endpoints": null,
        }
    });
    let created = create(&api, minimal).await.expect("a minimal policy with nulls is accepted");
    let spec = &created.data["spec"];
    assert_eq!(spec["suspend"], json!(false));
    assert_eq!(spec["dryRun"], json!(false));
    assert_eq!(spec["maxDeletionsPerRun"], json!(1000));
    assert_eq!(spec["schedule"], json!({"cron": "0 3 * * 1-5", "timeZone": "Asia/Shanghai"}));
    assert!(spec.get("endpoints").is_none(), "null endpoints pruned: {spec}");
    assert_eq!(spec["targets"][0], json!({"service": "KPS", "scope": "All"}));
}

/// Runs kubectl as admin against the shared control plane and returns its stdout.
fn kubectl(args: &[&str]) -> Result<String, String> {
    let output = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(ControlPlane::shared().kubeconfig_path(Identity::Admin))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running kubectl (is it installed?): {e}"));
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

#[tokio::test]
async fn kubectl_explain_shows_the_field_documentation() {
    let _ = policies("admission-explain").await;
    // The apiserver publishes a new CRD's OpenAPI a moment after it is Established.
    let deadline = Instant::now() + Duration::from_secs(60);
    let output = loop {
        match kubectl(&["explain", "ftcp.spec.schedule"]) {
            Ok(output) if output.contains("cron") => break output,
            result if Instant::now() > deadline => panic!("kubectl explain ftcp.spec.schedule: {result:?}"),
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    };
    println!("{output}");
    let flat = output.split_whitespace().collect::<Vec<_>>().join(" ");
    for expected in [
        "KIND: FailedTaskCleanupPolicy",
        "When the policy runs: either interval (a fixed period such as 1h) or cron",
        "Run at the times of a five-field cron expression",
        "IANA time zone of cron, such as Asia/Shanghai or UTC",
        "jitter",
        "interval",
    ] {
        assert!(flat.contains(expected), "{expected:?} missing from kubectl explain:\n{output}");
    }
    let policy = kubectl(&["explain", "ftcp.spec.maxDeletionsPerRun"]).expect("kubectl explain");
    assert!(policy.contains("Defaults to 1000"), "{policy}");
    for path in ["ftcp.status.lastRun.unsafeIds", "ftcp.status.lastRun.targets.unsafeIds"] {
        let output = kubectl(&["explain", path]).expect("kubectl explain");
        let flat = output.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(
            flat.contains("not safe in a URL path") && flat.contains("omitted when 0"),
            "{path}: {output}"
        );
    }
}

#[tokio::test]
async fn kubectl_get_shows_the_printer_columns() {
    let (api, ns) = policies("admission-columns").await;
    create(&api, example("columns")).await.expect("the example is accepted");
    let mut paused = example("paused");
    paused["spec"]["suspend"] = json!(true);
    create(&api, paused).await.expect("a suspended policy is accepted");
    let output = kubectl(&["get", "ftcp", "-n", &ns]).expect("kubectl get ftcp");
    let header = output.lines().next().unwrap_or_default();
    let columns: Vec<_> = header.split("  ").map(str::trim).filter(|c| !c.is_empty()).collect();
    assert_eq!(
        columns,
        ["NAME", "READY", "REASON", "SUSPENDED", "LAST RUN", "NEXT RUN", "DELETED", "AGE"],
        "{output}"
    );
    // kubectl aligns the columns: a row's SUSPENDED value starts where the header's does.
    let at = header.find("SUSPENDED").expect("the header has SUSPENDED");
    let suspended: Vec<(&str, &str)> = output
        .lines()
        .skip(1)
        .map(|row| {
            let name = row.split_whitespace().next().unwrap_or_default();
            let value = row.get(at..).and_then(|rest| rest.split_whitespace().next()).unwrap_or_default();
            (name, value)
        })
        .collect();
    assert_eq!(suspended, [("columns", "false"), ("paused", "true")], "{output}");
}

/// Every field path under `prefix` in a CRD schema (`spec.credentialsRef.name`, arrays looked
/// through), with its description.
fn schema_fields(schema: &Value, prefix: &str, out: &mut Vec<(String, String)>) {
    let properties =
        schema.get("properties").or_else(|| schema.get("items").and_then(|i| i.get("properties")));
    for (name, field) in properties.and_then(Value::as_object).into_iter().flatten() {
        let path = format!("{prefix}.{name}");
        out.push((path.clone(), field["description"].as_str().unwrap_or_default().trim().to_string()));
        schema_fields(field, &path, out);
    }
}

/// The field paths of `kubectl explain <root> --recursive`, which indents each level by 2 spaces.
fn recursive_paths(output: &str, root: &str) -> Vec<String> {
    let fields = output.split_once("\nFIELDS:\n").map(|(_, f)| f).unwrap_or_default();
    let mut stack: Vec<&str> = Vec::new();
    let mut paths = Vec::new();
    for line in fields.lines() {
        let name = line.trim_start();
        let depth = (line.len() - name.len()) / 2;
        // Lines such as `enum: KPS, SDRS` describe the field above, not a field.
        let Some(name) = name.split_whitespace().next().filter(|n| !n.ends_with(':')) else { continue };
        assert!(depth >= 1 && depth <= stack.len() + 1, "unexpected indentation in:\n{output}");
        stack.truncate(depth - 1);
        stack.push(name);
        paths.push(format!("{root}.{}", stack.join(".")));
    }
    paths
}

/// The DESCRIPTION section of `kubectl explain` output, on one line.
fn explained_description(output: &str) -> String {
    let text = output.split_once("\nDESCRIPTION:\n").map(|(_, d)| d).unwrap_or_default();
    let text = text.split_once("\nFIELDS:\n").map_or(text, |(d, _)| d);
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[tokio::test]
async fn kubectl_explain_describes_every_field() {
    let _ = policies("admission-explain-all").await;
    let crd: Value = serde_saphyr::from_str(CRD_YAML).expect("the CRD parses");
    let root = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"];
    let mut fields = Vec::new();
    for part in ["spec", "status"] {
        schema_fields(&root[part], part, &mut fields);
    }
    let undocumented: Vec<&str> =
        fields.iter().filter(|(_, d)| d.is_empty()).map(|(p, _)| p.as_str()).collect();
    assert!(
        undocumented.is_empty(),
        "fields without a description (add a /// doc in src/api): {undocumented:?}"
    );
    let spec_fields = fields.iter().filter(|(p, _)| p.starts_with("spec.")).count();
    assert!(spec_fields >= 20 && fields.len() > spec_fields, "the walk found {} fields", fields.len());

    // The apiserver publishes a new CRD's OpenAPI a moment after it is Established.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut published = Vec::new();
    for part in ["spec", "status"] {
        let output = loop {
            match kubectl(&["explain", &format!("ftcp.{part}"), "--recursive"]) {
                Ok(output) if output.contains("\nFIELDS:\n") => break output,
                result if Instant::now() > deadline => {
                    panic!("kubectl explain ftcp.{part} --recursive: {result:?}")
                }
                _ => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        };
        published.extend(recursive_paths(&output, part));
    }
    let mut walked: Vec<&str> = fields.iter().map(|(p, _)| p.as_str()).collect();
    let mut shown: Vec<&str> = published.iter().map(String::as_str).collect();
    walked.sort_unstable();
    shown.sort_unstable();
    assert_eq!(shown, walked, "kubectl explain --recursive lists the schema's fields");

    // Each spec field, and a sample of status fields, as `kubectl explain` shows it.
    let status_sample = ["status.conditions", "status.lastRun.targets.error.class", "status.totalDeleted"];
    let mut checked = 0;
    for (path, description) in &fields {
        if path.starts_with("status.") && !status_sample.contains(&path.as_str()) {
            continue;
        }
        let output = kubectl(&["explain", &format!("ftcp.{path}")])
            .unwrap_or_else(|e| panic!("kubectl explain ftcp.{path}: {e}"));
        let shown = explained_description(&output);
        assert!(!shown.is_empty() && shown != "<empty>", "ftcp.{path} has no description:\n{output}");
        let first_words: String = description.split_whitespace().take(4).collect::<Vec<_>>().join(" ");
        assert!(shown.contains(&first_words), "ftcp.{path}: {first_words:?} not in {shown:?}");
        checked += 1;
    }
    println!("{} fields documented; kubectl explain checked {checked}", fields.len());
}
