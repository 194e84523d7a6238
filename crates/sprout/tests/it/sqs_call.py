"""One SQS call through boto3, for the attack tests (sqs_attacks.rs).

    sqs_call.py call OP JSON   -> {"ok": response} or {"error": code, "status": n, "message": m}
    sqs_call.py sign OP JSON   -> {"url", "headers", "body"}: the request botocore signed, not sent

Reads ENDPOINT, ACCESS_KEY_ID, SECRET_ACCESS_KEY, REGION."""

import json
import os
import sys

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError


class Captured(Exception):
    pass


def client():
    return boto3.client("sqs", endpoint_url=os.environ["ENDPOINT"],
                        aws_access_key_id=os.environ["ACCESS_KEY_ID"],
                        aws_secret_access_key=os.environ["SECRET_ACCESS_KEY"],
                        region_name=os.environ["REGION"],
                        config=Config(retries={"max_attempts": 1}))


def method(c, op):
    names = {api: py for py, api in c.meta.method_to_api_mapping.items()}
    return getattr(c, names[op])


mode, op, params = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
c = client()
call = method(c, op)
if mode == "sign":
    def capture(request, **_):
        body = request.body
        if isinstance(body, bytes):
            body = body.decode()
        raise Captured(json.dumps({
            "url": request.url,
            "headers": {k: (v.decode() if isinstance(v, bytes) else v)
                        for k, v in request.headers.items()},
            "body": body,
        }))
    c.meta.events.register("before-send.sqs.*", capture)
    try:
        call(**params)
    except Captured as e:
        print(e.args[0])
        sys.exit(0)
    sys.exit("the request was not captured")
try:
    out = call(**params)
    out.pop("ResponseMetadata", None)
    print(json.dumps({"ok": out}))
except ClientError as e:
    print(json.dumps({
        "error": e.response.get("Error", {}).get("Code", ""),
        "message": e.response.get("Error", {}).get("Message", ""),
        "status": e.response["ResponseMetadata"]["HTTPStatusCode"],
    }))
