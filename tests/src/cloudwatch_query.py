"""Calls one AWS API operation with boto3 against moto and prints the answer as JSON.

Usage: cloudwatch_query.py ENDPOINT SERVICE OPERATION PARAMS_JSON
Datetime parameters are given as ISO strings or epoch seconds; boto3 takes both.
"""
import json
import sys

import boto3


def main():
    endpoint, service, operation, params = sys.argv[1:5]
    client = boto3.client(service, endpoint_url=endpoint, region_name="us-east-1")
    params = json.loads(params)
    if operation.startswith("paginate:"):
        pages = client.get_paginator(operation.split(":", 1)[1]).paginate(**params)
        out = {}
        for page in pages:
            for k, v in page.items():
                if isinstance(v, list):
                    out.setdefault(k, []).extend(v)
        print(json.dumps(out, default=str))
        return
    answer = getattr(client, operation)(**params)
    answer.pop("ResponseMetadata", None)
    print(json.dumps(answer, default=str))


if __name__ == "__main__":
    main()
