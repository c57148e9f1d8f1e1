"""Drives the official Huawei Cloud SDK's SdrsClient and KpsClient against an endpoint (the emulator in
tests/sdk_conformance.rs) and prints, as one JSON object on stdout, what the SDK saw at every step.

    sdk_client.py --endpoint URL --project PROJECT_ID --scenario purge|wrong-key|list
                  [--page-size N] [--server-group ID] [--missing-group ID] [--delete-job ID ...]
                  [--delete-task ID ...] [--ca-file PEM]

The access key and secret key come from the environment (TASKREAPER_SDK_AK, TASKREAPER_SDK_SK), so they
never show in a process listing.

Scenario `purge`, in order: SDRS protection groups (paged, and by status), the list without a filter
(protection-group-level failures) and with `server_group_id` for every listed group, with filters;
delete all protection-group-level jobs, delete the jobs of one protection group, try the per-group
delete on a group that does not exist, delete single jobs by id; KPS list (paged), delete single
tasks by id, delete all. Every list is read page by page with limit/offset.

Scenario `wrong-key`: every call once; each is expected to fail, and the status code, error code,
error message and request id the SDK raised are printed.

Scenario `list`: one SDRS and one KPS list (with every task as the SDK decoded it), or the exception
the SDK raised (e.g. on a TLS failure).

TLS certificates are always verified, against `--ca-file` when given.
"""

import argparse
import collections
import json
import os
import sys

from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.exceptions.exceptions import SdkException, ServiceResponseException
from huaweicloudsdkcore.http.http_config import HttpConfig
from huaweicloudsdkkps.v3 import (
    DeleteAllFailedTaskRequest,
    DeleteFailedTaskRequest,
    KpsClient,
    ListFailedTaskRequest,
)
from huaweicloudsdksdrs.v1 import (
    DeleteAllServerGroupFailureJobsRequest,
    DeleteFailureJobRequest,
    DeleteServerGroupFailureJobsRequest,
    ListFailureJobsRequest,
    ListProtectionGroupsRequest,
    SdrsClient,
)

MAX_PAGES = 1000
# The values the list call accepts as `resource_type` filter; listed jobs may show others.
DOCUMENTED_RESOURCE_TYPES = {"server_groups", "protected_instances", "replications", "disaster_recovery_drills"}


def build(client_class, args):
    credentials = BasicCredentials(os.environ["TASKREAPER_SDK_AK"], os.environ["TASKREAPER_SDK_SK"], args.project)
    config = HttpConfig.get_default_config()
    config.ignore_ssl_verification = False
    if args.ca_file:
        config.ssl_ca_cert = args.ca_file
    config.timeout = (5, 30)
    return (
        client_class.new_builder()
        .with_http_config(config)
        .with_credentials(credentials)
        .with_endpoints([args.endpoint])
        .build()
    )


def list_jobs(sdrs, page_size, **filters):
    """Every job matching `filters`, page by page. Returns the jobs, the `count` of the first page and
    the number of pages read."""
    jobs, counts, pages, offset = [], [], 0, 0
    while pages < MAX_PAGES:
        response = sdrs.list_failure_jobs(ListFailureJobsRequest(limit=page_size, offset=offset, **filters))
        pages += 1
        page = response.failure_jobs or []
        counts.append(response.count)
        jobs.extend(page)
        offset += len(page)
        if not page or offset >= response.count:
            break
    return jobs, counts, pages


def jobs_summary(sdrs, page_size, **filters):
    jobs, counts, pages = list_jobs(sdrs, page_size, **filters)
    return {
        "filters": filters,
        "count": counts[0],
        "counts_consistent": len(set(counts)) == 1,
        "listed": len(jobs),
        "pages": pages,
        "ids": [job.job_id for job in jobs],
        "by_resource_type": dict(collections.Counter(job.resource_type for job in jobs)),
        "jobs": [job.to_dict() for job in jobs],
    }


def in_groups(sdrs, page_size, group_ids):
    """The in-group failures of every group, one filtered list each."""
    return {group: brief(jobs_summary(sdrs, page_size, server_group_id=group)) for group in group_ids}


def groups_summary(sdrs, page_size, **filters):
    """Every protection group matching `filters`, page by page."""
    groups, counts, pages, offset = [], [], 0, 0
    while pages < MAX_PAGES:
        response = sdrs.list_protection_groups(
            ListProtectionGroupsRequest(limit=page_size, offset=offset, **filters)
        )
        pages += 1
        page = response.server_groups or []
        counts.append(response.count)
        groups.extend(page)
        offset += len(page)
        if not page or offset >= response.count:
            break
    return {
        "filters": filters,
        "count": counts[0],
        "counts_consistent": len(set(counts)) == 1,
        "listed": len(groups),
        "pages": pages,
        "ids": [group.id for group in groups],
        "names": [group.name for group in groups],
        "statuses": [group.status for group in groups],
    }


def list_tasks(kps, page_size):
    tasks, totals, pages, offset = [], [], 0, 0
    while pages < MAX_PAGES:
        response = kps.list_failed_task(ListFailedTaskRequest(limit=page_size, offset=offset))
        pages += 1
        page = response.tasks or []
        totals.append(response.total)
        tasks.extend(page)
        offset += len(page)
        if not page or offset >= response.total:
            break
    return {
        "total": totals[0],
        "totals_consistent": len(set(totals)) == 1,
        "listed": len(tasks),
        "pages": pages,
        "ids": [task.task_id for task in tasks],
        "by_operate_type": dict(collections.Counter(task.operate_type for task in tasks)),
        "task_time_types": sorted({type(task.task_time).__name__ for task in tasks}),
        "tasks": [task.to_dict() for task in tasks],
    }


def brief(summary):
    """A list summary without the per-job detail."""
    return {k: v for k, v in summary.items() if k != "jobs"}


def purge(args):
    sdrs = build(SdrsClient, args)
    kps = build(KpsClient, args)
    size = args.page_size
    out = {"sdrs": {}, "kps": {}}

    groups = groups_summary(sdrs, size)
    out["sdrs"]["groups"] = groups
    out["sdrs"]["groups_by_status"] = {
        status: groups_summary(sdrs, size, status=status) for status in sorted(set(groups["statuses"]))
    }
    group_ids = groups["ids"]

    initial = jobs_summary(sdrs, size)
    out["sdrs"]["initial"] = initial
    out["sdrs"]["in_group"] = in_groups(sdrs, size, group_ids)
    out["sdrs"]["filtered"] = {
        "resource_type": {
            t: brief(jobs_summary(sdrs, size, resource_type=t))
            for t in sorted(initial["by_resource_type"])
            if t in DOCUMENTED_RESOURCE_TYPES
        },
        "failure_status": {
            s: brief(jobs_summary(sdrs, size, failure_status=s))
            for s in sorted({job["failure_status"] for job in initial["jobs"]})
        },
    }
    if args.server_group:
        in_group = jobs_summary(sdrs, size, server_group_id=args.server_group)
        out["sdrs"]["filtered"]["server_group_id"] = brief(in_group)
        out["sdrs"]["filtered"]["server_group_resource_type"] = {
            t: brief(jobs_summary(sdrs, size, server_group_id=args.server_group, resource_type=t))
            for t in sorted(in_group["by_resource_type"])
            if t in DOCUMENTED_RESOURCE_TYPES
        }
    if initial["jobs"]:
        name = initial["jobs"][0]["resource_name"]
        out["sdrs"]["filtered"]["resource_name"] = brief(jobs_summary(sdrs, size, resource_name=name))

    response = sdrs.delete_all_server_group_failure_jobs(DeleteAllServerGroupFailureJobsRequest())
    out["sdrs"]["delete_all"] = {
        "status": response.status_code,
        "after": brief(jobs_summary(sdrs, size)),
        "in_group_after": in_groups(sdrs, size, group_ids),
    }

    if args.server_group:
        response = sdrs.delete_server_group_failure_jobs(
            DeleteServerGroupFailureJobsRequest(server_group_id=args.server_group)
        )
        out["sdrs"]["delete_server_group"] = {
            "server_group_id": args.server_group,
            "status": response.status_code,
            "group_after": brief(jobs_summary(sdrs, size, server_group_id=args.server_group)),
            "after": brief(jobs_summary(sdrs, size)),
            "in_group_after": in_groups(sdrs, size, group_ids),
        }

    if args.missing_group:
        out["sdrs"]["delete_missing_group"] = failure(
            lambda: sdrs.delete_server_group_failure_jobs(
                DeleteServerGroupFailureJobsRequest(server_group_id=args.missing_group)
            )
        )

    statuses = []
    for job_id in args.delete_job:
        statuses.append(sdrs.delete_failure_job(DeleteFailureJobRequest(failure_job_id=job_id)).status_code)
    out["sdrs"]["delete_jobs"] = {
        "ids": args.delete_job,
        "statuses": statuses,
        "after": brief(jobs_summary(sdrs, size)),
        "in_group_after": in_groups(sdrs, size, group_ids),
    }

    out["kps"]["initial"] = list_tasks(kps, size)
    statuses = []
    for task_id in args.delete_task:
        statuses.append(kps.delete_failed_task(DeleteFailedTaskRequest(task_id=task_id)).status_code)
    out["kps"]["delete_tasks"] = {"ids": args.delete_task, "statuses": statuses, "after": list_tasks(kps, size)}
    response = kps.delete_all_failed_task(DeleteAllFailedTaskRequest())
    out["kps"]["delete_all"] = {"status": response.status_code, "after": list_tasks(kps, size)}
    return out


def failure(call):
    try:
        response = call()
    except ServiceResponseException as e:
        return {
            "raised": type(e).__name__,
            "status_code": e.status_code,
            "error_code": e.error_code,
            "error_msg": e.error_msg,
            "request_id": e.request_id,
        }
    return {"raised": None, "status_code": response.status_code}


def wrong_key(args):
    sdrs = build(SdrsClient, args)
    kps = build(KpsClient, args)
    some_job = args.delete_job[0] if args.delete_job else "897f57b2-6e94-4179-b414-9532726c59f2"
    some_task = args.delete_task[0] if args.delete_task else "0"
    group = args.server_group or "00000000-0000-0000-0000-000000000000"
    return {
        "sdrs": {
            "list_protection_groups": failure(
                lambda: sdrs.list_protection_groups(ListProtectionGroupsRequest(limit=10, offset=0))
            ),
            "list_failure_jobs": failure(lambda: sdrs.list_failure_jobs(ListFailureJobsRequest(limit=10, offset=0))),
            "delete_all_server_group_failure_jobs": failure(
                lambda: sdrs.delete_all_server_group_failure_jobs(DeleteAllServerGroupFailureJobsRequest())
            ),
            "delete_server_group_failure_jobs": failure(
                lambda: sdrs.delete_server_group_failure_jobs(
                    DeleteServerGroupFailureJobsRequest(server_group_id=group)
                )
            ),
            "delete_failure_job": failure(
                lambda: sdrs.delete_failure_job(DeleteFailureJobRequest(failure_job_id=some_job))
            ),
        },
        "kps": {
            "list_failed_task": failure(lambda: kps.list_failed_task(ListFailedTaskRequest(limit=10, offset=0))),
            "delete_all_failed_task": failure(lambda: kps.delete_all_failed_task(DeleteAllFailedTaskRequest())),
            "delete_failed_task": failure(lambda: kps.delete_failed_task(DeleteFailedTaskRequest(task_id=some_task))),
        },
    }


def listing(args):
    sdrs = build(SdrsClient, args)
    kps = build(KpsClient, args)
    out = {}
    for name, call in [
        ("sdrs", lambda: brief(jobs_summary(sdrs, args.page_size))),
        ("kps", lambda: list_tasks(kps, args.page_size)),
    ]:
        try:
            out[name] = {"raised": None, "listing": call()}
        except SdkException as e:
            out[name] = {"raised": type(e).__name__, "error_msg": str(e.error_msg)}
    return out


SCENARIOS = {"purge": purge, "wrong-key": wrong_key, "list": listing}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--project", required=True)
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), required=True)
    parser.add_argument("--page-size", type=int, default=7)
    parser.add_argument("--server-group")
    parser.add_argument("--missing-group")
    parser.add_argument("--delete-job", action="append", default=[])
    parser.add_argument("--delete-task", action="append", default=[])
    parser.add_argument("--ca-file")
    args = parser.parse_args()
    out = SCENARIOS[args.scenario](args)
    json.dump(out, sys.stdout, ensure_ascii=False, default=str)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
