"""The baseline of benches/bench.py: the sequential loop a platform team would write with the official
Huawei Cloud Python SDK to purge every failed SDRS and KPS task of some projects.

    sdk_baseline.py --endpoint URL --ca-file PEM --projects P1,P2 [--kps by-id|delete-all]
                    [--page-size N] --out FILE.json

Per project, in order:
  SDRS: list_protection_groups (paged); list_failure_jobs without a filter (the protection-group-level
        failures) and with server_group_id=<group> for every group (paged; the whole list is read before
        any delete, since deleting while paging by offset would skip tasks); delete_failure_job by id.
  KPS:  list_failed_task (paged), then delete_failed_task by id (`--kps by-id`, the default, the same
        calls as taskreaper's KPS Matching) or one delete_all_failed_task (`--kps delete-all`).

A 429 is retried after its Retry-After (1 s without one), as a careful script would; it is counted.
Every SDK call is timed on the client (time.perf_counter around the SDK method). The access key and
secret key come from TASKREAPER_SDK_AK / TASKREAPER_SDK_SK. Writes one JSON object to --out.
"""

import argparse
import json
import os
import time

from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.exceptions.exceptions import ServiceResponseException
from huaweicloudsdkcore.http.http_config import HttpConfig
from huaweicloudsdkkps.v3 import (
    DeleteAllFailedTaskRequest,
    DeleteFailedTaskRequest,
    KpsClient,
    ListFailedTaskRequest,
)
from huaweicloudsdksdrs.v1 import (
    DeleteFailureJobRequest,
    ListFailureJobsRequest,
    ListProtectionGroupsRequest,
    SdrsClient,
)

stats = {"calls": 0, "deletes": 0, "throttled": 0, "errors": 0, "latencies_ms": []}


def call(fn, request):
    """One SDK call, timed; a 429 waits its Retry-After and goes again."""
    while True:
        stats["calls"] += 1
        started = time.perf_counter()
        try:
            response = fn(request)
            stats["latencies_ms"].append((time.perf_counter() - started) * 1000.0)
            return response
        except ServiceResponseException as e:
            stats["latencies_ms"].append((time.perf_counter() - started) * 1000.0)
            if e.status_code != 429:
                stats["errors"] += 1
                return None
            stats["throttled"] += 1
            retry_after = 1.0
            try:
                retry_after = float((getattr(e, "response_headers", None) or {}).get("Retry-After", 1))
            except (TypeError, ValueError):
                pass
            time.sleep(retry_after)


def paged(fn, request_class, items_of, total_of, page_size, **filters):
    items, offset = [], 0
    while True:
        response = call(fn, request_class(limit=page_size, offset=offset, **filters))
        if response is None:
            return items
        page = items_of(response) or []
        items.extend(page)
        offset += len(page)
        if not page or offset >= (total_of(response) or 0):
            return items


def client(client_class, args, project):
    config = HttpConfig.get_default_config()
    config.ignore_ssl_verification = False
    config.ssl_ca_cert = args.ca_file
    config.timeout = (5, 30)
    credentials = BasicCredentials(os.environ["TASKREAPER_SDK_AK"], os.environ["TASKREAPER_SDK_SK"], project)
    return client_class.new_builder().with_http_config(config).with_credentials(credentials).with_endpoints(
        [args.endpoint]
    ).build()


def purge_project(args, project):
    sdrs = client(SdrsClient, args, project)
    kps = client(KpsClient, args, project)
    size = args.page_size

    groups = paged(sdrs.list_protection_groups, ListProtectionGroupsRequest, lambda r: r.server_groups,
                   lambda r: r.count, size)
    jobs = paged(sdrs.list_failure_jobs, ListFailureJobsRequest, lambda r: r.failure_jobs, lambda r: r.count, size)
    for group in groups:
        jobs += paged(sdrs.list_failure_jobs, ListFailureJobsRequest, lambda r: r.failure_jobs, lambda r: r.count,
                      size, server_group_id=group.id)
    for job in jobs:
        if call(sdrs.delete_failure_job, DeleteFailureJobRequest(failure_job_id=job.job_id)) is not None:
            stats["deletes"] += 1

    tasks = paged(kps.list_failed_task, ListFailedTaskRequest, lambda r: r.tasks, lambda r: r.total, size)
    if args.kps == "delete-all":
        if tasks and call(kps.delete_all_failed_task, DeleteAllFailedTaskRequest()) is not None:
            stats["deletes"] += 1
    else:
        for task in tasks:
            if call(kps.delete_failed_task, DeleteFailedTaskRequest(task_id=task.task_id)) is not None:
                stats["deletes"] += 1


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--ca-file", required=True)
    parser.add_argument("--projects", required=True)
    parser.add_argument("--kps", choices=["by-id", "delete-all"], default="by-id")
    parser.add_argument("--page-size", type=int, default=100)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    started = time.time()
    for project in args.projects.split(","):
        purge_project(args, project)
    stats["loop_seconds"] = time.time() - started
    with open(args.out, "w") as f:
        json.dump(stats, f)


if __name__ == "__main__":
    main()
