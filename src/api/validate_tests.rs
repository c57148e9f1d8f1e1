use std::time::Duration;

use super::*;
use crate::api::EXAMPLE_POLICY;
use crate::api::policy::{
    CredentialsRef, Endpoints, FailedTaskCleanupPolicy, KpsOperateType, Project, SdrsFailureStatus,
    SdrsResourceType,
};

fn example() -> FailedTaskCleanupPolicy {
    serde_saphyr::from_str(EXAMPLE_POLICY).expect("the example policy parses")
}

fn errors_of(mutate: impl FnOnce(&mut FailedTaskCleanupPolicySpec)) -> Vec<SpecError> {
    let mut spec = example().spec;
    mutate(&mut spec);
    match spec.validate() {
        Ok(_) => panic!("the mutated spec should be rejected: {spec:#?}"),
        Err(errors) => errors,
    }
}

fn messages(errors: &[SpecError]) -> String {
    errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")
}

#[test]
fn example_validates_and_is_parsed() {
    let spec = example().spec;
    let valid = spec.validate().unwrap_or_else(|e| panic!("{}", messages(&e)));
    assert!(matches!(valid.schedule.kind, ScheduleKind::Interval(d) if d == Duration::from_secs(3600)));
    assert_eq!(valid.schedule.jitter, Duration::from_secs(300));
    assert_eq!(valid.targets.len(), spec.targets.len());
    assert!(matches!(valid.targets[0], ValidTarget::SdrsAll));
    assert!(matches!(&valid.targets[1], ValidTarget::SdrsProtectionGroups(ids) if ids.len() == 2));
    assert!(matches!(valid.targets[3], ValidTarget::KpsAll));
    let ValidTarget::SdrsMatching { resource_types, failure_statuses, filter: sdrs } = &valid.targets[2]
    else {
        panic!("expected an SDRS Matching target")
    };
    assert_eq!(resource_types, &[SdrsResourceType::ProtectedInstances]);
    assert_eq!(failure_statuses.len(), 1);
    assert!(sdrs.name_pattern.as_ref().unwrap().is_match("tmp-vm-1"));
    assert!(!sdrs.name_pattern.as_ref().unwrap().is_match("prod-tmp-1"));
    assert_eq!(sdrs.older_than, Some(Duration::from_secs(24 * 3600)));
    let ValidTarget::KpsMatching { operate_types, filter: kps } = &valid.targets[4] else {
        panic!("expected a KPS Matching target")
    };
    assert_eq!(operate_types.len(), 1);
    assert_eq!(kps.older_than, Some(Duration::from_secs(72 * 3600)));
    // Projects carry their region, the rest of the spec its parsed values.
    let regions: Vec<&str> = valid.projects.iter().map(|p| p.region.as_str()).collect();
    assert_eq!(regions, ["cn-north-4", "cn-east-3"]);
    assert_eq!(valid.endpoints, spec.endpoints.clone().unwrap());
    assert_eq!(valid.credentials, crate::api::CredentialSource::Secret("hwcloud-credentials".into()));
    assert_eq!((valid.max_deletions, valid.dry_run, valid.suspend), (1000, false, false));
}

#[test]
fn example_round_trips_through_serde() {
    let policy = example();
    assert_eq!(policy.metadata.name.as_deref(), Some("dr-cleanup"));
    assert_eq!(policy.metadata.namespace.as_deref(), Some("platform"));
    let spec = &policy.spec;
    assert_eq!(spec.credentials_ref, Some(CredentialsRef { name: "hwcloud-credentials".into() }));
    assert_eq!(
        spec.endpoints,
        Some(Endpoints {
            sdrs: Some("https://sdrs.cn-north-4.myhuaweicloud.com".into()),
            kps: Some("https://kms.cn-north-4.myhuaweicloud.com".into()),
        })
    );
    assert_eq!(
        spec.projects[1],
        Project { id: "1a2b3c4d5e6f708192a3b4c5d6e7f809".into(), region: Some("cn-east-3".into()) }
    );
    let m = spec.targets[2].filter.as_ref().unwrap();
    assert_eq!(m.resource_types, Some(vec![SdrsResourceType::ProtectedInstances]));
    assert_eq!(m.failure_statuses, Some(vec![SdrsFailureStatus::CreateFail]));
    assert_eq!(
        spec.targets[4].filter.as_ref().unwrap().operate_types,
        Some(vec![KpsOperateType::FailedUnbind])
    );
    assert_eq!(spec.max_deletions_per_run, 1000);

    // Serializing gives back the same document, field for field.
    let original: serde_json::Value = serde_saphyr::from_str(EXAMPLE_POLICY).unwrap();
    let written = serde_json::to_value(&policy).unwrap();
    assert_eq!(written, original);
    let again: FailedTaskCleanupPolicy = serde_json::from_value(written).unwrap();
    assert_eq!(again, policy);
}

#[test]
fn omitted_fields_take_their_defaults() {
    let yaml = r#"
credentialsRef: {name: creds}
region: cn-north-4
projects: [{id: 0605767b5c00d4bb2f10c01a1e3b3a7e}]
targets: [{service: KPS, scope: All}]
schedule: {cron: "0 3 * * *"}
"#;
    let spec: FailedTaskCleanupPolicySpec = serde_saphyr::from_str(yaml).unwrap();
    assert!(!spec.suspend && !spec.dry_run);
    assert_eq!(spec.max_deletions_per_run, 1000);
    assert_eq!(spec.endpoints, None);
    let valid = spec.validate().unwrap_or_else(|e| panic!("{}", messages(&e)));
    assert!(
        matches!(&valid.schedule.kind, ScheduleKind::Cron { time_zone, .. } if *time_zone == jiff::tz::TimeZone::UTC)
    );
    assert_eq!(valid.schedule.jitter, Duration::ZERO);
    // Nothing optional is written back as null.
    let written = serde_json::to_value(&spec).unwrap();
    assert!(written.get("endpoints").is_none() && written["schedule"].get("interval").is_none());
}

#[test]
fn unknown_enum_values_are_rejected_when_reading() {
    let bad = EXAMPLE_POLICY.replace("service: KPS\n      scope: All", "service: ECS\n      scope: All");
    let error = serde_saphyr::from_str::<FailedTaskCleanupPolicy>(&bad).unwrap_err().to_string();
    assert!(error.contains("ECS"), "{error}");
    let bad = EXAMPLE_POLICY.replace("[createFail]", "[createFailed]");
    assert!(serde_saphyr::from_str::<FailedTaskCleanupPolicy>(&bad).is_err());
}

#[test]
fn cron_with_time_zone_is_parsed() {
    let mut spec = example().spec;
    spec.schedule = Schedule {
        cron: Some("30 2 * * MON-FRI".into()),
        time_zone: Some("Asia/Shanghai".into()),
        jitter: Some("10m".into()),
        ..Schedule::default()
    };
    let valid = spec.validate().unwrap_or_else(|e| panic!("{}", messages(&e)));
    let ScheduleKind::Cron { cron, time_zone } = valid.schedule.kind else { panic!("expected cron") };
    assert_eq!(time_zone.iana_name(), Some("Asia/Shanghai"));
    // 2025-01-06 is a Monday: 02:30 Shanghai is 2025-01-05T18:30:00Z.
    let start: jiff::Zoned = "2025-01-06T00:00:00+08:00[Asia/Shanghai]".parse().unwrap();
    let next = cron.find_next_occurrence(&start, false).unwrap();
    assert_eq!(next.timestamp().to_string(), "2025-01-05T18:30:00Z");
}

#[test]
fn schedule_problems_are_reported() {
    let both = errors_of(|s| s.schedule.cron = Some("0 3 * * *".into()));
    assert!(matches!(both[..], [SpecError::ChooseScheduleKind]), "{}", messages(&both));

    let neither = errors_of(|s| s.schedule.interval = None);
    assert!(matches!(neither[..], [SpecError::ChooseScheduleKind]), "{}", messages(&neither));

    let short = errors_of(|s| s.schedule = Schedule { interval: Some("30s".into()), ..Schedule::default() });
    assert!(matches!(&short[..], [SpecError::CheckIntervalMinimum { value }] if value == "30s"));
    assert!(short[0].to_string().contains("at least 1m"));

    let garbled = errors_of(|s| s.schedule.interval = Some("1 hour".into()));
    assert!(matches!(garbled[..], [SpecError::ParseInterval { .. }]), "{}", messages(&garbled));

    let jitter = errors_of(|s| s.schedule.jitter = Some("2h".into()));
    assert!(matches!(jitter[..], [SpecError::CheckJitterBound]), "{}", messages(&jitter));

    let bad_jitter = errors_of(|s| s.schedule.jitter = Some("5 minutes".into()));
    assert!(matches!(bad_jitter[..], [SpecError::ParseJitter { .. }]), "{}", messages(&bad_jitter));

    let tz_without_cron = errors_of(|s| s.schedule.time_zone = Some("UTC".into()));
    assert!(matches!(tz_without_cron[..], [SpecError::CheckTimeZoneUse]), "{}", messages(&tz_without_cron));
}

#[test]
fn cron_and_time_zone_problems_are_reported() {
    let cron = |expr: &str, tz: Option<&str>| {
        let (expr, tz) = (expr.to_owned(), tz.map(str::to_owned));
        errors_of(move |s| s.schedule = Schedule { cron: Some(expr), time_zone: tz, ..Schedule::default() })
    };
    for bad in ["0 3 * *", "0 0 3 * * *", "61 * * * *", "@daily", "0 0 L * *", "every day"] {
        let errors = cron(bad, None);
        assert!(
            matches!(&errors[..], [SpecError::ParseCron { value, .. }] if value == bad),
            "{bad}: {}",
            messages(&errors)
        );
        assert!(errors[0].to_string().contains("five-field cron expression"));
    }
    // The pattern lets a reversed range through; the cron parser catches it.
    let reversed = cron("0 5-2 * * *", None);
    assert!(
        matches!(&reversed[..], [SpecError::ParseCron { detail: Some(_), .. }]),
        "{}",
        messages(&reversed)
    );

    for bad in ["Mars/Olympus_Mons", "Asia/Shang hai", "+08:00"] {
        let errors = cron("0 3 * * *", Some(bad));
        assert!(matches!(&errors[..], [SpecError::LookupTimeZone { value, .. }] if value == bad), "{bad}");
        assert!(errors[0].to_string().contains("IANA time zone"));
    }
}

#[test]
fn project_problems_are_reported() {
    let none = errors_of(|s| s.projects.clear());
    assert!(matches!(none[..], [SpecError::CountProjects { count: 0 }]), "{}", messages(&none));

    let bad_id = errors_of(|s| s.projects[0].id = "0605767B5C00D4BB2F10C01A1E3B3A7E".into());
    assert!(matches!(bad_id[..], [SpecError::ParseProjectId { index: 0, .. }]), "{}", messages(&bad_id));

    let duplicate = errors_of(|s| s.projects[1].id = s.projects[0].id.clone());
    assert!(
        matches!(duplicate[..], [SpecError::DuplicateProjectId { index: 1, .. }]),
        "{}",
        messages(&duplicate)
    );

    let region = errors_of(|s| s.projects[1].region = Some("east".into()));
    assert!(
        matches!(&region[..], [SpecError::ParseRegion { path, .. }] if path == "spec.projects[1].region"),
        "{}",
        messages(&region)
    );

    let spec_region = errors_of(|s| s.region = "CN_NORTH_4".into());
    assert!(matches!(&spec_region[..], [SpecError::ParseRegion { path, .. }] if path == "spec.region"));

    let too_many = errors_of(|s| {
        s.projects = (0..65).map(|i| Project { id: format!("{i:032x}"), region: None }).collect();
    });
    assert!(matches!(too_many[..], [SpecError::CountProjects { count: 65 }]), "{}", messages(&too_many));
}

#[test]
fn target_problems_are_reported() {
    let problem = |errors: &[SpecError]| match errors {
        [SpecError::CheckTargetFields { problem, .. }] => *problem,
        other => panic!("expected one target problem, got:\n{}", messages(other)),
    };
    let none = errors_of(|s| s.targets.clear());
    assert!(matches!(none[..], [SpecError::CountTargets { count: 0 }]));

    assert_eq!(
        problem(&errors_of(
            |s| s.targets[0].protection_group_ids = Some(vec!["897f57b2-6e94-4179-b414-9532726c59f2".into()])
        )),
        TargetProblem::ProtectionGroupIdsNotAllowed
    );
    assert_eq!(
        problem(&errors_of(|s| s.targets[1].protection_group_ids = None)),
        TargetProblem::ProtectionGroupIdsMissing
    );
    let kps_groups = errors_of(|s| s.targets[1].service = Service::Kps);
    assert!(matches!(
        kps_groups[..],
        [SpecError::CheckTargetFields { index: 1, problem: TargetProblem::ProtectionGroupsNeedSdrs }]
    ));
    assert_eq!(problem(&errors_of(|s| s.targets[2].filter = None)), TargetProblem::MatchMissing);
    assert_eq!(
        problem(&errors_of(|s| s.targets[0].filter = Some(TaskMatch::default()))),
        TargetProblem::MatchNotAllowed
    );
    assert_eq!(
        problem(&errors_of(|s| {
            s.targets[2].filter.as_mut().unwrap().operate_types = Some(vec![KpsOperateType::FailedReset]);
        })),
        TargetProblem::OperateTypesNeedKps
    );
    assert_eq!(
        problem(&errors_of(|s| {
            s.targets[4].filter.as_mut().unwrap().resource_types = Some(vec![SdrsResourceType::Replications]);
        })),
        TargetProblem::ResourceTypesNeedSdrs
    );
    assert_eq!(
        problem(&errors_of(|s| {
            s.targets[4].filter.as_mut().unwrap().failure_statuses = Some(vec![SdrsFailureStatus::StopFail]);
        })),
        TargetProblem::FailureStatusesNeedSdrs
    );
    assert_eq!(
        problem(&errors_of(|s| s.targets[1].protection_group_ids = Some(vec![]))),
        TargetProblem::CountProtectionGroupIds
    );

    let bad_group = errors_of(|s| s.targets[1].protection_group_ids = Some(vec!["group-1".into()]));
    assert!(
        matches!(bad_group[..], [SpecError::ParseProtectionGroupId { index: 1, .. }]),
        "{}",
        messages(&bad_group)
    );
    let dup_group = errors_of(|s| {
        let id = "897f57b2-6e94-4179-b414-9532726c59f2".to_owned();
        s.targets[1].protection_group_ids = Some(vec![id.clone(), id]);
    });
    assert!(matches!(dup_group[..], [SpecError::DuplicateProtectionGroupId { index: 1, .. }]));
}

#[test]
fn match_problems_are_reported() {
    let pattern = errors_of(|s| s.targets[2].filter.as_mut().unwrap().name_pattern = Some("(tmp-".into()));
    assert!(
        matches!(pattern[..], [SpecError::CompileNamePattern { index: 2, .. }]),
        "{}",
        messages(&pattern)
    );
    assert!(std::error::Error::source(&pattern[0]).is_some(), "the regex error is kept as the source");

    let older = errors_of(|s| s.targets[4].filter.as_mut().unwrap().older_than = Some("3d".into()));
    assert!(matches!(older[..], [SpecError::ParseOlderThan { index: 4, .. }]), "{}", messages(&older));
    assert!(older[0].to_string().starts_with("spec.targets[4].match.olderThan: "));
}

#[test]
fn other_problems_are_reported() {
    let http = errors_of(|s| {
        s.endpoints.as_mut().unwrap().kps = Some("http://kms.cn-north-4.myhuaweicloud.com".into())
    });
    assert!(
        matches!(&http[..], [SpecError::ParseEndpoint { path, .. }] if path == "spec.endpoints.kps"),
        "{}",
        messages(&http)
    );
    let hostless = errors_of(|s| s.endpoints.as_mut().unwrap().sdrs = Some("https://".into()));
    assert!(matches!(hostless[..], [SpecError::ParseEndpoint { .. }]));

    let zero = errors_of(|s| s.max_deletions_per_run = 0);
    assert!(matches!(zero[..], [SpecError::CheckMaxDeletions { value: 0 }]));

    let secret = errors_of(|s| s.credentials_ref = Some(CredentialsRef { name: "Bad_Name".into() }));
    assert!(matches!(secret[..], [SpecError::ParseSecretName { .. }]));
}

#[test]
fn every_problem_is_reported_at_once() {
    let errors = errors_of(|s| {
        s.region = "nowhere".into();
        s.projects[0].id = "x".into();
        s.schedule.interval = Some("10s".into());
        s.max_deletions_per_run = 0;
    });
    assert_eq!(errors.len(), 4, "{}", messages(&errors));
}

#[test]
fn enum_names_match_the_cloud_model() {
    use crate::cloud::model::{KPS_OPERATE_TYPES, SDRS_FAILURE_STATUSES, SDRS_RESOURCE_TYPES};
    let names = |values: Vec<&str>| values.into_iter().map(str::to_owned).collect::<Vec<_>>();
    assert_eq!(
        names(SdrsResourceType::ALL.iter().map(|v| v.as_str()).collect()),
        names(SDRS_RESOURCE_TYPES.to_vec())
    );
    assert_eq!(
        names(SdrsFailureStatus::ALL.iter().map(|v| v.as_str()).collect()),
        names(SDRS_FAILURE_STATUSES.to_vec())
    );
    assert_eq!(
        names(KpsOperateType::ALL.iter().map(|v| v.as_str()).collect()),
        names(KPS_OPERATE_TYPES.to_vec())
    );
    // as_str agrees with serde.
    for v in SdrsResourceType::ALL {
        assert_eq!(serde_json::to_value(v).unwrap(), v.as_str());
    }
    for v in SdrsFailureStatus::ALL {
        assert_eq!(serde_json::to_value(v).unwrap(), v.as_str());
    }
    for v in KpsOperateType::ALL {
        assert_eq!(serde_json::to_value(v).unwrap(), v.as_str());
    }
    for v in [Service::Sdrs, Service::Kps] {
        assert_eq!(serde_json::to_value(v).unwrap(), v.as_str());
    }
    for v in [Scope::All, Scope::ProtectionGroups, Scope::Matching] {
        assert_eq!(serde_json::to_value(v).unwrap(), v.as_str());
    }
}

#[test]
fn endpoint_overrides_must_be_bare_https_origins() {
    let problems = |value: &str| endpoint_problems(value);
    for ok in [
        "https://sdrs.cn-north-4.myhuaweicloud.com",
        "https://sdrs.cn-north-4.myhuaweicloud.com/",
        "https://kms.example.internal:8443",
        "https://[::1]:8443/",
    ] {
        assert_eq!(problems(ok), [], "{ok}");
    }
    use EndpointProblem::*;
    for (value, expected) in [
        ("https://user:pass@sdrs.example.com", vec![UserInfo]),
        ("https://user@sdrs.example.com/", vec![UserInfo]),
        ("https://:pass@sdrs.example.com", vec![UserInfo]),
        ("https://sdrs.example.com/v1", vec![Path]),
        ("https://sdrs.example.com//", vec![Path]),
        ("https://sdrs.example.com/%2F", vec![Path]),
        ("https://sdrs.example.com?x=1", vec![QueryOrFragment]),
        ("https://sdrs.example.com/?", vec![QueryOrFragment]),
        ("https://sdrs.example.com#top", vec![QueryOrFragment]),
        ("https://u:p@sdrs.example.com/api?x#y", vec![UserInfo, Path, QueryOrFragment]),
    ] {
        assert_eq!(problems(value), expected, "{value}");
    }
    // An @ after the authority is no user info (it is a path, which is refused for that).
    assert_eq!(problems("https://sdrs.example.com/a@b"), [Path]);
}

#[test]
fn an_endpoint_password_is_refused_without_being_echoed() {
    let errors = errors_of(|s| {
        s.endpoints.as_mut().unwrap().sdrs = Some("https://admin:hunter2@sdrs.example.com/api".into())
    });
    let text = messages(&errors);
    assert!(!text.contains("hunter2") && !text.contains("admin"), "{text}");
    assert!(
        text.contains("spec.endpoints.sdrs must not hold a user name or password (user:password@host)"),
        "{text}"
    );
    assert!(text.contains("spec.endpoints.sdrs must not have a path (only empty or /)"), "{text}");
    let errors = errors_of(|s| {
        s.endpoints.as_mut().unwrap().kps = Some("http://admin:hunter2@kms.example.com".into())
    });
    let text = messages(&errors);
    assert!(!text.contains("hunter2") && text.contains("http://***@kms.example.com"), "{text}");
    let errors =
        errors_of(|s| s.endpoints.as_mut().unwrap().kps = Some("https://kms.example.com?a=b".into()));
    assert!(matches!(
        &errors[..],
        [SpecError::CheckEndpointOrigin { path, problem: EndpointProblem::QueryOrFragment }] if path == "spec.endpoints.kps"
    ));
}

#[test]
fn exactly_one_credential_source() {
    use crate::api::{CredentialSource, WorkloadIdentity};
    let identity = |sa: Option<&str>, controller: Option<bool>| WorkloadIdentity {
        service_account_name: sa.map(str::to_string),
        use_controller_token: controller,
        identity_provider_id: "k8s".into(),
    };
    let with = |wi: WorkloadIdentity| {
        let mut spec = example().spec;
        spec.credentials_ref = None;
        spec.workload_identity = Some(wi);
        spec
    };
    let valid = with(identity(Some("cleaner"), None)).validate().unwrap();
    assert_eq!(
        valid.credentials,
        CredentialSource::ServiceAccount { name: "cleaner".into(), identity_provider_id: "k8s".into() }
    );
    assert_eq!(valid.credentials.describe(), "ServiceAccount cleaner via identity provider k8s");
    let valid = with(identity(None, Some(true))).validate().unwrap();
    assert_eq!(valid.credentials, CredentialSource::ControllerToken { identity_provider_id: "k8s".into() });

    let both = errors_of(|s| s.workload_identity = Some(identity(Some("cleaner"), None)));
    assert!(messages(&both).contains("give exactly one credential source"), "{}", messages(&both));
    let none = errors_of(|s| s.credentials_ref = None);
    assert!(messages(&none).contains("give exactly one credential source"));
    for wi in [identity(Some("cleaner"), Some(true)), identity(None, None), identity(None, Some(false))] {
        let errors = with(wi).validate().unwrap_err();
        assert!(messages(&errors).contains("either serviceAccountName"), "{}", messages(&errors));
    }
    let other_namespace = with(identity(Some("ns/cleaner"), None)).validate().unwrap_err();
    assert!(messages(&other_namespace).contains("must be the name of a ServiceAccount in this namespace"));
    let bad_idp =
        with(WorkloadIdentity { identity_provider_id: "k8s cluster".into(), ..identity(Some("a"), None) });
    assert!(messages(&bad_idp.validate().unwrap_err()).contains("identity provider id"));
}

#[test]
fn projects_or_project_discovery() {
    use crate::api::ProjectDiscovery;
    let discovery = |regions: &[&str], all: Option<bool>| ProjectDiscovery {
        regions: regions.iter().map(|r| r.to_string()).collect(),
        all_projects: all,
        name_pattern: None,
        max_projects: 64,
    };
    let with = |d: ProjectDiscovery| {
        let mut spec = example().spec;
        spec.projects.clear();
        spec.project_discovery = Some(d);
        spec
    };
    let valid = with(discovery(&["cn-north-4", "cn-east-3"], None)).validate().unwrap();
    assert!(valid.projects.is_empty());
    let d = valid.discovery.unwrap();
    assert_eq!((d.regions.len(), d.all_projects, d.max_projects), (2, false, 64));
    let all = with(ProjectDiscovery { name_pattern: Some("_team-".into()), ..discovery(&[], Some(true)) });
    let d = all.validate().unwrap().discovery.unwrap();
    assert!(d.all_projects && d.name_pattern.unwrap().is_match("cn-north-4_team-a"));

    let both = errors_of(|s| s.project_discovery = Some(discovery(&["cn-north-4"], None)));
    assert!(matches!(both[..], [SpecError::ChooseProjectSource]), "{}", messages(&both));
    let no_regions = with(discovery(&[], None)).validate().unwrap_err();
    assert!(
        matches!(no_regions[..], [SpecError::CountDiscoveryRegions { count: 0 }]),
        "{}",
        messages(&no_regions)
    );
    assert!(messages(&no_regions).contains("or set allProjects: true"));
    let twice = with(discovery(&["cn-north-4", "cn-north-4"], None)).validate().unwrap_err();
    assert!(matches!(twice[..], [SpecError::DuplicateDiscoveryRegion { .. }]), "{}", messages(&twice));
    let bad = with(discovery(&["North"], None)).validate().unwrap_err();
    assert!(
        matches!(&bad[..], [SpecError::ParseRegion { path, .. }] if path == "spec.projectDiscovery.regions[0]"),
        "{}",
        messages(&bad)
    );
    let pattern =
        with(ProjectDiscovery { name_pattern: Some("(".into()), ..discovery(&["cn-north-4"], None) });
    let errors = pattern.validate().unwrap_err();
    assert!(matches!(errors[..], [SpecError::CompileDiscoveryNamePattern { .. }]), "{}", messages(&errors));
    for max in [0, 257] {
        let errors = with(ProjectDiscovery { max_projects: max, ..discovery(&["cn-north-4"], None) })
            .validate()
            .unwrap_err();
        assert!(matches!(errors[..], [SpecError::CheckMaxProjects { .. }]), "{}", messages(&errors));
    }
    let read: FailedTaskCleanupPolicySpec = serde_saphyr::from_str(
        "credentialsRef: {name: c}\nregion: cn-north-4\nprojectDiscovery: {regions: [cn-north-4]}\n\
         targets: [{service: KPS, scope: All}]\nschedule: {interval: 1h}\n",
    )
    .unwrap();
    assert_eq!(read.project_discovery.unwrap().max_projects, 64, "maxProjects defaults to 64");
}
