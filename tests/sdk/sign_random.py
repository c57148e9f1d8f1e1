"""Signs requests with the official Huawei Cloud Python SDK's own signer, for tests/sdk_conformance.rs.

stdin: a JSON list of requests, each
    {"method", "host", "path", "query": [[name, value], ...], "headers": [[name, value], ...],
     "body": str | null, "date": "YYYYMMDDTHHMMSSZ", "ak", "sk",
     "security_token": str | null, "project_id": str | null}
A query value is a string, a boolean, an integer, or a list of strings (a repeated name, as the SDK's
"multi" collection format passes it). `path` is the resource path exactly as the SDK sends it.
`headers` go to the SDK as given, an explicit X-Sdk-Content-Sha256 (blank, padded or UNSIGNED-PAYLOAD)
included; a `body` of "" or null is no body, for which the SDK signs the empty hash whatever that
header says.

stdout: a JSON list, one object per request, in order:
    {"authorization", "x_sdk_date", "uri", "header_names"}
where `uri` is the path and query the SDK puts on the wire and `header_names` every header it sends
besides Authorization.

The request goes through `BasicCredentials.sign_request`, the same entry the SDK's HTTP client uses,
so X-Project-Id and X-Security-Token are added by the SDK itself. The date is fixed by presetting the
X-Sdk-Date header, which the signer then reads instead of the clock.
"""

import json
import sys

from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.sdk_request import SdkRequest


def sign(case):
    credentials = BasicCredentials(case["ak"], case["sk"], case.get("project_id"))
    if case.get("security_token") is not None:
        credentials = credentials.with_security_token(case["security_token"])

    headers = {name: value for name, value in case["headers"]}
    headers["X-Sdk-Date"] = case["date"]
    query = [(name, value) for name, value in case["query"]]
    body = case.get("body")

    request = SdkRequest(
        method=case["method"],
        schema="https",
        host=case["host"],
        resource_path=case["path"],
        query_params=query,
        header_params=headers,
        body=body,
    )
    signed = credentials.sign_request(request)
    return {
        "authorization": signed.header_params["Authorization"],
        "x_sdk_date": signed.header_params["X-Sdk-Date"],
        "uri": signed.uri,
        "header_names": [name for name in signed.header_params if name != "Authorization"],
    }


def main():
    cases = json.load(sys.stdin)
    json.dump([sign(case) for case in cases], sys.stdout, ensure_ascii=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
