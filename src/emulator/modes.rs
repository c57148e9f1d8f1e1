//! How literally the emulator reads the API reference where it leaves room: which SDRS failures the
//! unfiltered list shows, and how KPS writes `task_time`. Changeable at runtime. Pure; no I/O.

use serde::{Deserialize, Serialize};

/// Which failures `GET /v1/{project_id}/task-center/failure-jobs` shows without `server_group_id`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SdrsListing {
    /// Only protection-group-level failures, as the reference says; in-group failures need
    /// `server_group_id`.
    #[default]
    Strict,
    /// Every failure of the project, group-level and in-group alike.
    Loose,
}

/// How `task_time` of a KPS failed task is written on the wire.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KpsTaskTime {
    /// Epoch milliseconds as a JSON string (`"1523342130000"`), as in the documented example.
    #[default]
    String,
    /// Epoch milliseconds as a JSON number (`1523342130000`), as the Go SDK types it.
    Number,
}

/// The readings in force.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Modes {
    pub sdrs_listing: SdrsListing,
    pub kps_task_time: KpsTaskTime,
}

/// A change to [`Modes`]: absent fields stay as they are.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModesPatch {
    pub sdrs_listing: Option<SdrsListing>,
    pub kps_task_time: Option<KpsTaskTime>,
}

impl Modes {
    /// These modes with `patch` applied.
    pub fn patched(self, patch: ModesPatch) -> Self {
        Self {
            sdrs_listing: patch.sdrs_listing.unwrap_or(self.sdrs_listing),
            kps_task_time: patch.kps_task_time.unwrap_or(self.kps_task_time),
        }
    }
}

/// A KPS list body with `task_time` written as `mode` says. The store keeps times as epoch-ms
/// strings; a time that is not an integer is left as it is.
pub fn render_kps_times(mut body: serde_json::Value, mode: KpsTaskTime) -> serde_json::Value {
    if mode == KpsTaskTime::Number
        && let Some(tasks) = body.get_mut("tasks").and_then(serde_json::Value::as_array_mut)
    {
        for task in tasks {
            if let Some(time) = task.get_mut("task_time")
                && let Some(n) = time.as_str().and_then(|s| s.trim().parse::<i64>().ok())
            {
                *time = serde_json::Value::from(n);
            }
        }
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_are_the_strict_reading() {
        assert_eq!(
            Modes::default(),
            Modes { sdrs_listing: SdrsListing::Strict, kps_task_time: KpsTaskTime::String }
        );
        assert_eq!(
            serde_json::to_value(Modes::default()).unwrap(),
            json!({"sdrs_listing": "strict", "kps_task_time": "string"})
        );
    }

    #[test]
    fn patches_change_only_what_they_name() {
        let patch: ModesPatch = serde_json::from_value(json!({"sdrs_listing": "loose"})).unwrap();
        let modes = Modes::default().patched(patch);
        assert_eq!(modes, Modes { sdrs_listing: SdrsListing::Loose, kps_task_time: KpsTaskTime::String });
        let patch: ModesPatch = serde_json::from_value(json!({"kps_task_time": "number"})).unwrap();
        assert_eq!(modes.patched(patch).kps_task_time, KpsTaskTime::Number);
        assert_eq!(modes.patched(ModesPatch::default()), modes);
        assert!(serde_json::from_value::<ModesPatch>(json!({"sdrs_listing": "lax"})).is_err());
        assert!(serde_json::from_value::<ModesPatch>(json!({"other": 1})).is_err());
    }

    #[test]
    fn kps_times_become_numbers_only_in_number_mode() {
        let body = json!({"total": 3, "tasks": [
            {"task_id": "a", "task_time": "1523342130000"},
            {"task_id": "b", "task_time": null},
            {"task_id": "c", "task_time": "2026-11-01T12:00:00Z"}
        ]});
        assert_eq!(render_kps_times(body.clone(), KpsTaskTime::String), body);
        let numbers = render_kps_times(body, KpsTaskTime::Number);
        assert_eq!(numbers["tasks"][0]["task_time"], json!(1_523_342_130_000_i64));
        assert!(numbers["tasks"][1]["task_time"].is_null());
        assert_eq!(numbers["tasks"][2]["task_time"], "2026-11-01T12:00:00Z");
    }
}
