"""A tiny SQS client (standard library only): SendMessage over the AWS JSON 1.0 protocol,
signed with Signature Version 4. Sprout gives every instance AWS_ENDPOINT_URL_SQS,
AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION and SPROUT_QUEUE_URL; boto3 or any
other SDK works the same way (`boto3.client("sqs").send_message(...)`)."""

import hashlib
import hmac
import json
import os
import urllib.request
from datetime import datetime, timezone
from urllib.parse import urlsplit


def _hmac(key, text):
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).digest()


def send_message(body, attributes=None):
    endpoint = os.environ["AWS_ENDPOINT_URL_SQS"]
    queue_url = os.environ["SPROUT_QUEUE_URL"]
    key_id = os.environ["AWS_ACCESS_KEY_ID"]
    secret = os.environ["AWS_SECRET_ACCESS_KEY"]
    region = os.environ.get("AWS_REGION", "us-east-1")

    request = {"QueueUrl": queue_url, "MessageBody": body}
    if attributes:
        request["MessageAttributes"] = {
            k: {"DataType": "String", "StringValue": v} for k, v in attributes.items()
        }
    payload = json.dumps(request).encode("utf-8")
    now = datetime.now(timezone.utc)
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    date = now.strftime("%Y%m%d")
    host = urlsplit(endpoint).netloc
    headers = {
        "content-type": "application/x-amz-json-1.0",
        "host": host,
        "x-amz-date": amz_date,
        "x-amz-target": "AmazonSQS.SendMessage",
    }
    signed = ";".join(sorted(headers))
    canonical = "\n".join([
        "POST", "/", "",
        "".join(f"{k}:{headers[k]}\n" for k in sorted(headers)),
        signed,
        hashlib.sha256(payload).hexdigest(),
    ])
    scope = f"{date}/{region}/sqs/aws4_request"
    to_sign = "\n".join([
        "AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()
    ])
    key = _hmac(_hmac(_hmac(_hmac(("AWS4" + secret).encode(), date), region), "sqs"), "aws4_request")
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={key_id}/{scope}, SignedHeaders={signed}, Signature={signature}"
    )
    req = urllib.request.Request(endpoint + "/", data=payload, headers=headers, method="POST")
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read() or b"{}")
