//! Wire types of the SDRS and KPS failed-task APIs, shared by the client and the emulator. No I/O.
//!
//! Decoding is lenient where the documented bodies are: any string may be `null` (read as empty),
//! a time may be a string or a number, counts may be numbers or numeric strings, and enum values
//! outside the documented ones are kept as they are. Encoding writes an empty string as `null`, the
//! way the services show an absent value.

use serde::{Deserialize, Serialize};

/// One failed SDRS job, as `GET /v1/{project_id}/task-center/failure-jobs` returns it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FailureJob {
    #[serde(deserialize_with = "lenient::string", serialize_with = "lenient::empty_as_null")]
    pub job_id: String,
    #[serde(deserialize_with = "lenient::string", serialize_with = "lenient::empty_as_null")]
    pub job_type: String,
    #[serde(deserialize_with = "lenient::string", serialize_with = "lenient::empty_as_null")]
    pub job_status: String,
    /// `2019-04-01T12:00:00.000Z`; a number is kept as its decimal text.
    #[serde(deserialize_with = "lenient::string", serialize_with = "lenient::empty_as_null")]
    pub begin_time: String,
    #[serde(deserialize_with = "lenient::string", serialize_with = "lenient::empty_as_null")]
    pub failure_status: String,
    #[serde(deserialize_with = "lenient::string", serialize_with = "lenient::empty_as_null")]
    pub resource_id: String,
    #[serde(deserialize_with = "lenient::string", serialize_with = "lenient::empty_as_null")]
    pub resource_name: String,
    /// One of [`SDRS_RESOURCE_TYPES`], or another value the service chose to show.
    #[serde(deserialize_with = "lenient::string", serialize_with = "lenient::empty_as_null")]
    pub resource_type: String,
    #[serde(deserialize_with = "lenient::string", serialize_with = "lenient::empty_as_null")]
    pub error_code: String,
    #[serde(deserialize_with = "lenient::string", serialize_with = "lenient::empty_as_null")]
    pub fail_reason: String,
}

/// A page of the SDRS list; `count` is the total number of matching jobs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FailureJobPage {
    #[serde(deserialize_with = "lenient::list")]
    pub failure_jobs: Vec<FailureJob>,
    #[serde(deserialize_with = "lenient::count")]
    pub count: u64,
}

/// Filters of the SDRS list. Empty fields are not sent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FailureJobFilter {
    pub failure_status: Option<String>,
    pub resource_name: Option<String>,
    pub server_group_id: Option<String>,
    pub resource_type: Option<String>,
}

/// One SDRS protection group, as `GET /v1/{project_id}/server-groups` returns it (the fields the
/// controller reads; others are ignored).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProtectionGroup {
    #[serde(deserialize_with = "lenient::string", serialize_with = "lenient::empty_as_null")]
    pub id: String,
    #[serde(deserialize_with = "lenient::string", serialize_with = "lenient::empty_as_null")]
    pub name: String,
    /// `available`, `protected`, `error-creating`, ...
    #[serde(deserialize_with = "lenient::string", serialize_with = "lenient::empty_as_null")]
    pub status: String,
}

/// A page of the protection-group list; `count` is the total number of groups.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProtectionGroupPage {
    #[serde(deserialize_with = "lenient::list")]
    pub server_groups: Vec<ProtectionGroup>,
    #[serde(deserialize_with = "lenient::count")]
    pub count: u64,
}

/// One failed KPS task, as `GET /v3/{project_id}/failed-tasks` returns it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FailedTask {
    #[serde(deserialize_with = "lenient::string", serialize_with = "lenient::empty_as_null")]
    pub task_id: String,
    /// FAILED_RESET, FAILED_REPLACE or FAILED_UNBIND, or another value the service chose to show
    /// (the documented example has `RUNNING_RESET`).
    #[serde(deserialize_with = "lenient::string", serialize_with = "lenient::empty_as_null")]
    pub operate_type: String,
    /// Epoch milliseconds as a string in the documented example (`"1523342130000"`); a number is
    /// kept as its decimal text.
    #[serde(deserialize_with = "lenient::string", serialize_with = "lenient::empty_as_null")]
    pub task_time: String,
    #[serde(deserialize_with = "lenient::string", serialize_with = "lenient::empty_as_null")]
    pub task_error_code: String,
    #[serde(deserialize_with = "lenient::string", serialize_with = "lenient::empty_as_null")]
    pub task_error_msg: String,
    #[serde(deserialize_with = "lenient::string", serialize_with = "lenient::empty_as_null")]
    pub server_name: String,
    #[serde(deserialize_with = "lenient::string", serialize_with = "lenient::empty_as_null")]
    pub server_id: String,
    #[serde(deserialize_with = "lenient::string", serialize_with = "lenient::empty_as_null")]
    pub keypair_name: String,
}

/// A page of the KPS list; `total` is the total number of failed tasks.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FailedTaskPage {
    #[serde(deserialize_with = "lenient::count")]
    pub total: u64,
    #[serde(deserialize_with = "lenient::list")]
    pub tasks: Vec<FailedTask>,
}

/// SDRS `resource_type` values.
pub const SDRS_RESOURCE_TYPES: [&str; 4] =
    ["server_groups", "protected_instances", "replications", "disaster_recovery_drills"];
/// The resource type of a protection-group-level failure.
pub const SERVER_GROUPS: &str = "server_groups";
/// SDRS `failure_status` values.
pub const SDRS_FAILURE_STATUSES: [&str; 11] = [
    "createFail",
    "deleteFail",
    "attachFail",
    "detachFail",
    "expandFail",
    "resizeFail",
    "startFail",
    "stopFail",
    "reverseFail",
    "failoverFail",
    "reprotectFail",
];
/// KPS `operate_type` values.
pub const KPS_OPERATE_TYPES: [&str; 3] = ["FAILED_RESET", "FAILED_REPLACE", "FAILED_UNBIND"];
/// Largest page both list calls accept.
pub const MAX_PAGE: u32 = 1000;

/// Below this magnitude an epoch number counts as seconds, from it on as milliseconds: 10^11
/// seconds is the year 5138, 10^11 milliseconds is March 1973.
pub const EPOCH_MILLIS_FROM: i64 = 100_000_000_000;

/// Parses a task time as the services write it: RFC 3339 (`2019-04-01T12:00:00.000Z`), or an epoch
/// number in seconds or milliseconds, told apart by magnitude ([`EPOCH_MILLIS_FROM`]).
pub fn parse_task_time(value: &str) -> Option<jiff::Timestamp> {
    let value = value.trim();
    if let Ok(t) = value.parse::<jiff::Timestamp>() {
        return Some(t);
    }
    let n = value.parse::<i64>().ok()?;
    if n.unsigned_abs() < EPOCH_MILLIS_FROM.unsigned_abs() {
        jiff::Timestamp::from_second(n).ok()
    } else {
        jiff::Timestamp::from_millisecond(n).ok()
    }
}

/// Serde helpers for the lenient reading of the wire types.
mod lenient {
    use serde::de::{self, Deserializer, Visitor};
    use serde::{Deserialize, Serializer};
    use std::fmt;

    /// A string, or `null` (empty), or a number or boolean (its text).
    pub fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        struct Text;
        impl Visitor<'_> for Text {
            type Value = String;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string, a number or null")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
                Ok(v.to_string())
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<String, E> {
                Ok(v)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
                Ok(v.to_string())
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
                Ok(v.to_string())
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
                Ok(v.to_string())
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<String, E> {
                Ok(v.to_string())
            }
            fn visit_none<E: de::Error>(self) -> Result<String, E> {
                Ok(String::new())
            }
            fn visit_unit<E: de::Error>(self) -> Result<String, E> {
                Ok(String::new())
            }
        }
        d.deserialize_any(Text)
    }

    /// A count: a non-negative number, a numeric string, or `null` (0).
    pub fn count<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        let text = string(d)?;
        if text.trim().is_empty() {
            return Ok(0);
        }
        text.trim().parse::<u64>().map_err(|_| de::Error::custom(format!("expected a count, got {text:?}")))
    }

    /// A list, or `null` (empty).
    pub fn list<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
        Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
    }

    /// An empty string is written as `null`.
    pub fn empty_as_null<S: Serializer>(value: &str, s: S) -> Result<S::Ok, S::Error> {
        if value.is_empty() { s.serialize_none() } else { s.serialize_str(value) }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    // Retyped from https://support.huaweicloud.com/en-us/api-dew/ListFailedTask.html (example response, status 200).
    /// The documented example response of `GET /v3/{project_id}/failed-tasks`.
    pub(crate) const KPS_EXAMPLE: &str = r#"{
      "total" : 1,
      "tasks" : [ {
        "task_id" : "aee8d2fe-5484-4753-9177-5a38dc15546c",
        "operate_type" : "RUNNING_RESET",
        "task_time" : "1523342130000",
        "task_error_code" : null,
        "task_error_msg" : "Update public key error",
        "server_name" : "Test",
        "server_id" : "c9aa197b-a6b6-4c33-b3a6-fa0b4ec50006",
        "keypair_name" : "KeyPair-xt"
      } ]
    }"#;

    // Retyped from https://docs.otc.t-systems.com/storage-disaster-recovery-service/api-ref/sdrs_apis/task_center/querying_failed_tasks.html (sdrs_05_0901).
    /// The documented example response of `GET /v1/{project_id}/task-center/failure-jobs`.
    pub(crate) const SDRS_EXAMPLE: &str = r#"{
        "count": 2,
        "failure_jobs": [
            {
                "job_status": "FAIL",
                "resource_id": "17984002-ad8a-438b-8ba6-b850224634c5",
                "resource_name": "Protected-Instance-ab14",
                "resource_type": "protectedInstance",
                "failure_status": "createFail",
                "job_id": "ff808082686f229a0168707beaab014e",
                "job_type": "createProtectedInstance",
                "begin_time": "2019-01-21T12:56:35.754Z",
                "error_code": "EVS.2024",
                "fail_reason": "SdrsGenerateNativeServerParamsTask-fail:volume is error!"
            },
            {
                "job_status": "FAIL",
                "resource_id": "897f57b2-6e94-4179-b414-9532726c59f2",
                "resource_name": "Protected-Instance-5e2e",
                "resource_type": "protectedInstance",
                "failure_status": "createFail",
                "job_id": "ff808082686f229a0168707b9be9013e",
                "job_type": "createProtectedInstance",
                "begin_time": "2019-01-21T12:56:15.591Z",
                "error_code": "EVS.2024",
                "fail_reason": "SdrsGenerateNativeServerParamsTask-fail:volume is error!"
            }
        ]
    }"#;

    // Retyped from https://docs.otc.t-systems.com/storage-disaster-recovery-service/api-ref/apis/protection_group/querying_protection_groups.html
    // (sdrs_05_0402, "Querying Protection Groups", example response, status 200; source
    // opentelekomcloud-docs/storage-disaster-recovery-service,
    // api-ref/source/apis/protection_group/querying_protection_groups.rst at commit fd61ebcc).
    // The documented text is not valid JSON, so exactly two corrections were made, nothing else:
    // 1. first group: the comma missing after `"server_type":"ECS"` (before `"created_at"`) was added;
    // 2. second group: the unquoted value in `"server_type":ECS,` was quoted as `"server_type":"ECS",`.
    /// The documented example response of `GET /v1/{project_id}/server-groups`.
    pub(crate) const GROUPS_EXAMPLE: &str = r#"{
        "count": 2,
        "server_groups": [
            {
                "id": "40df180b-9fe2-471a-8c64-1b758dc84189",
                "name": "testname",
                "description": "description",
                "source_availability_zone": "eu-de-01",
                "target_availability_zone": "eu-de-02",
                "domain_id": "fb4bb8e3-a574-4437-a156-78c916aeea4d",
                "domain_name": "ActiveactiveDomain",
                "status": "available",
                "protected_status": null,
                "replication_status": null,
                "health_status": null,
                "progress": 0,
                "priority_station": "source",
                "protected_instance_num": 0,
                "replication_num": 0,
                "disaster_recovery_drill_num": 0,
                "source_vpc_id": "046852ef-c49d-409b-8389-546aaaa5701f",
                "target_vpc_id": "046852ef-c49d-409b-8389-546aaaa5701f",
                "test_vpc_id": null,
                "dr_type": "migration",
                "server_type":"ECS",
                "created_at": "2019-05-23 03:51:58.256",
                "updated_at": "2019-05-23 07:48:12.484",
                "protection_type": "replication-pair",
                "replication_model": null
            },
            {
                "id": "decf224d-87fe-403a-8721-037a1a45c287",
                "name": "Protection-Group-lwx",
                "description": null,
                "source_availability_zone": "eu-de-01",
                "target_availability_zone": "eu-de-02",
                "domain_id": "fb4bb8e3-a574-4437-a156-78c916aeea4d",
                "domain_name": "ActiveactiveDomain",
                "status": "available",
                "protected_status": null,
                "replication_status": null,
                "health_status": null,
                "progress": 0,
                "priority_station": "source",
                "protected_instance_num": 0,
                "replication_num": 0,
                "disaster_recovery_drill_num": 0,
                "source_vpc_id": "046852ef-c49d-409b-8389-546aaaa5701f",
                "target_vpc_id": "046852ef-c49d-409b-8389-546aaaa5701f",
                "test_vpc_id": null,
                "dr_type": "migration",
                "server_type":"ECS",
                "created_at": "2019-05-22 08:16:54.413",
                "updated_at": "2019-05-23 07:48:12.493",
                "protection_type": "replication-pair",
                "replication_model": null
            }
        ]
    }"#;

    #[test]
    fn the_documented_kps_example_decodes() {
        let page: FailedTaskPage = serde_json::from_str(KPS_EXAMPLE).unwrap();
        assert_eq!(page.total, 1);
        assert_eq!(page.tasks.len(), 1);
        let task = &page.tasks[0];
        assert_eq!(task.task_id, "aee8d2fe-5484-4753-9177-5a38dc15546c");
        assert_eq!(task.operate_type, "RUNNING_RESET", "values outside the enum are kept");
        assert!(!KPS_OPERATE_TYPES.contains(&task.operate_type.as_str()));
        assert_eq!(task.task_time, "1523342130000", "a time as a string of epoch milliseconds");
        assert_eq!(parse_task_time(&task.task_time).unwrap().as_millisecond(), 1_523_342_130_000);
        assert_eq!(task.task_error_code, "", "null reads as empty");
        assert_eq!(task.task_error_msg, "Update public key error");
        assert_eq!(task.server_name, "Test");
        assert_eq!(task.server_id, "c9aa197b-a6b6-4c33-b3a6-fa0b4ec50006");
        assert_eq!(task.keypair_name, "KeyPair-xt");
    }

    #[test]
    fn the_documented_sdrs_example_decodes() {
        let page: FailureJobPage = serde_json::from_str(SDRS_EXAMPLE).unwrap();
        assert_eq!(page.count, 2);
        assert_eq!(page.failure_jobs.len(), 2);
        let job = &page.failure_jobs[0];
        assert_eq!(job.job_id, "ff808082686f229a0168707beaab014e");
        assert_eq!(job.job_type, "createProtectedInstance");
        assert_eq!(job.job_status, "FAIL");
        assert_eq!(job.failure_status, "createFail");
        assert!(SDRS_FAILURE_STATUSES.contains(&job.failure_status.as_str()));
        assert_eq!(job.resource_id, "17984002-ad8a-438b-8ba6-b850224634c5");
        assert_eq!(job.resource_name, "Protected-Instance-ab14");
        assert_eq!(job.resource_type, "protectedInstance", "values outside the enum are kept");
        assert!(!SDRS_RESOURCE_TYPES.contains(&job.resource_type.as_str()));
        assert_eq!(job.error_code, "EVS.2024");
        assert_eq!(job.fail_reason, "SdrsGenerateNativeServerParamsTask-fail:volume is error!");
        assert_eq!(parse_task_time(&job.begin_time).unwrap().as_millisecond(), 1_548_075_395_754);
        assert_eq!(page.failure_jobs[1].job_id, "ff808082686f229a0168707b9be9013e");
        assert_eq!(
            parse_task_time(&page.failure_jobs[1].begin_time).unwrap().as_millisecond(),
            1_548_075_375_591
        );
    }

    #[test]
    fn the_documented_protection_group_example_decodes() {
        let page: ProtectionGroupPage = serde_json::from_str(GROUPS_EXAMPLE).unwrap();
        assert_eq!(page.count, 2);
        assert_eq!(page.server_groups.len(), 2);
        let first = &page.server_groups[0];
        assert_eq!(first.id, "40df180b-9fe2-471a-8c64-1b758dc84189");
        assert_eq!(first.name, "testname");
        assert_eq!(first.status, "available");
        let second = &page.server_groups[1];
        assert_eq!(second.id, "decf224d-87fe-403a-8721-037a1a45c287");
        assert_eq!(second.name, "Protection-Group-lwx");
        assert_eq!(second.status, "available");
    }

    #[test]
    fn times_as_numbers_and_counts_as_strings_decode() {
        let page: FailedTaskPage = serde_json::from_str(
            r#"{"total":"2","tasks":[{"task_id":"a","task_time":1523342130000},{"task_id":"b","task_time":1523342130}]}"#,
        )
        .unwrap();
        assert_eq!(page.total, 2);
        let ms = |i: usize| parse_task_time(&page.tasks[i].task_time).unwrap().as_millisecond();
        assert_eq!(ms(0), 1_523_342_130_000, "milliseconds");
        assert_eq!(ms(1), 1_523_342_130_000, "seconds");
        let empty: FailureJobPage = serde_json::from_str(r#"{"failure_jobs":null,"count":null}"#).unwrap();
        assert_eq!(empty, FailureJobPage::default());
    }

    #[test]
    fn epoch_magnitude_decides_seconds_or_milliseconds() {
        let secs = |v: &str| parse_task_time(v).map(|t| t.as_second());
        assert_eq!(secs("1523342130"), Some(1_523_342_130), "seconds");
        assert_eq!(secs("1523342130000"), Some(1_523_342_130), "milliseconds");
        assert_eq!(secs("99999999999"), Some(99_999_999_999), "just below the line: seconds");
        assert_eq!(secs("100000000000"), Some(100_000_000), "on the line: milliseconds");
        assert_eq!(secs(" 2019-04-01T12:00:00.000Z "), Some(1_554_120_000), "RFC 3339");
        assert_eq!(secs("yesterday"), None);
        assert_eq!(secs(""), None);
    }

    #[test]
    fn wrong_shapes_still_fail_and_empty_strings_encode_as_null() {
        assert!(serde_json::from_str::<FailedTaskPage>(r#"{"tasks":[{"task_id":{"x":1}}]}"#).is_err());
        assert!(serde_json::from_str::<FailedTaskPage>(r#"{"total":-1}"#).is_err());
        let wire = serde_json::to_value(FailedTask { task_id: "t".into(), ..FailedTask::default() }).unwrap();
        assert_eq!(wire["task_id"], "t");
        assert!(wire["task_error_code"].is_null(), "{wire}");
    }
}
