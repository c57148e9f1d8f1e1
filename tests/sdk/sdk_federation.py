"""Drives the official Huawei Cloud SDK's OIDC federation (BasicCredentials with idp_id and
id_token_file) and project discovery against an endpoint (the emulator in tests/sdk_conformance.rs)
and prints, as one JSON object on stdout, what the SDK saw.

    sdk_federation.py --endpoint URL --idp-id ID --id-token-file PATH --region REGION
                      [--project PROJECT_ID] [--calls N]

IAM is reached through HUAWEICLOUD_SDK_IAM_ENDPOINT, which the caller sets to the emulator. Without
--project the SDK discovers the project of --region (GET /v3/projects?name=REGION, signed with the
temporary credentials it got by federation). Then it makes N KPS list calls and one SDRS list call;
before each call the SDK refreshes its temporary credentials when less than 40 minutes remain.
"""

import argparse
import json
import sys

from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.exceptions.exceptions import SdkException
from huaweicloudsdkcore.http.http_config import HttpConfig
from huaweicloudsdkcore.region.region import Region
from huaweicloudsdkkps.v3 import KpsClient, ListFailedTaskRequest
from huaweicloudsdksdrs.v1 import ListFailureJobsRequest, SdrsClient


def build(client_class, credentials, args):
    config = HttpConfig.get_default_config()
    config.timeout = (5, 30)
    builder = client_class.new_builder().with_http_config(config).with_credentials(credentials)
    if args.project:
        return builder.with_endpoints([args.endpoint]).build()
    # Without a project id the SDK asks IAM for the project of the region when the client is built.
    return builder.with_region(Region(args.region, args.endpoint)).build()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--idp-id", required=True)
    parser.add_argument("--id-token-file", required=True)
    parser.add_argument("--region", required=True)
    parser.add_argument("--project")
    parser.add_argument("--calls", type=int, default=1)
    args = parser.parse_args()

    credentials = BasicCredentials().with_idp_id(args.idp_id).with_id_token_file(args.id_token_file)
    if args.project:
        credentials = credentials.with_project_id(args.project)
    out = {}
    try:
        kps = build(KpsClient, credentials, args)
        out["project_id"] = credentials.project_id
        access_keys, totals = [], []
        for _ in range(args.calls):
            response = kps.list_failed_task(ListFailedTaskRequest(limit=10, offset=0))
            totals.append(response.total)
            access_keys.append(credentials.ak)
        sdrs = build(SdrsClient, credentials, args)
        jobs = sdrs.list_failure_jobs(ListFailureJobsRequest(limit=10, offset=0))
        access_keys.append(credentials.ak)
        out.update(
            {
                "kps_totals": totals,
                "sdrs_count": jobs.count,
                "access_keys": access_keys,
                "has_security_token": bool(credentials.security_token),
                "raised": None,
            }
        )
    except SdkException as e:
        out.update({"raised": type(e).__name__, "message": str(e)})
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
