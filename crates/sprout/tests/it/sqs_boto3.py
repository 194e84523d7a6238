"""boto3 against Sprout's SQS endpoint: every supported operation, and the errors.
Run by worker.rs with ENDPOINT, ACCESS_KEY_ID, SECRET_ACCESS_KEY, REGION, QUEUE_NAME, SUFFIX."""

import hashlib
import os
import time

import boto3
from botocore.exceptions import ClientError, ParamValidationError

E = os.environ["ENDPOINT"]
K = os.environ["ACCESS_KEY_ID"]
S = os.environ["SECRET_ACCESS_KEY"]
R = os.environ["REGION"]
NAME = os.environ["QUEUE_NAME"]
SUFFIX = os.environ["SUFFIX"]


def client(key=K, secret=S):
    return boto3.client("sqs", endpoint_url=E, aws_access_key_id=key,
                        aws_secret_access_key=secret, region_name=R)


def code(err):
    return err.response.get("Error", {}).get("Code", "")


def fails(fn, *codes, status=400):
    try:
        fn()
    except ClientError as e:
        got = code(e)
        assert any(c in got for c in codes), f"expected {codes}, got {got}: {e}"
        assert e.response["ResponseMetadata"]["HTTPStatusCode"] == status, e.response
        return
    raise AssertionError(f"expected an error {codes}")


c = client()

# GetQueueUrl of the worker environment's own queue.
url = c.get_queue_url(QueueName=NAME)["QueueUrl"]
assert url.endswith("/" + NAME), url

# CreateQueue: an extra queue of the same application (idempotent), listed by prefix.
q = c.create_queue(QueueName="extra-" + SUFFIX, Attributes={"VisibilityTimeout": "5"})["QueueUrl"]
assert c.create_queue(QueueName="extra-" + SUFFIX)["QueueUrl"] == q
assert q in c.list_queues(QueueNamePrefix="extra-")["QueueUrls"]
assert NAME in " ".join(c.list_queues()["QueueUrls"])

# SendMessage with attributes; MD5s as SQS computes them.
sent = c.send_message(QueueUrl=q, MessageBody="hello",
                      MessageAttributes={"k": {"DataType": "String", "StringValue": "v"}})
assert sent["MD5OfMessageBody"] == hashlib.md5(b"hello").hexdigest()
assert len(sent["MD5OfMessageAttributes"]) == 32

# SendMessageBatch of 10.
batch = c.send_message_batch(QueueUrl=q, Entries=[
    {"Id": f"e{i}", "MessageBody": f"body {i}"} for i in range(10)])
assert len(batch["Successful"]) == 10 and not batch.get("Failed"), batch

attrs = c.get_queue_attributes(QueueUrl=q, AttributeNames=["All"])["Attributes"]
assert attrs["ApproximateNumberOfMessages"] == "11", attrs
assert attrs["VisibilityTimeout"] == "5", attrs

# ReceiveMessage: 10, then the last one; never the same message twice.
first = c.receive_message(QueueUrl=q, MaxNumberOfMessages=10, AttributeNames=["All"],
                          MessageAttributeNames=["All"])["Messages"]
assert len(first) == 10, len(first)
second = c.receive_message(QueueUrl=q, MaxNumberOfMessages=10)["Messages"]
assert len(second) == 1
ids = {m["MessageId"] for m in first + second}
assert len(ids) == 11
for m in first + second:
    assert m["MD5OfBody"] == hashlib.md5(m["Body"].encode()).hexdigest()
hello = [m for m in first + second if m["Body"] == "hello"]
if hello and "MessageAttributes" in hello[0]:
    assert hello[0]["MessageAttributes"]["k"]["StringValue"] == "v"
assert all(m["Attributes"]["ApproximateReceiveCount"] == "1" for m in first)
attrs = c.get_queue_attributes(QueueUrl=q, AttributeNames=["ApproximateNumberOfMessagesNotVisible"])["Attributes"]
assert attrs == {"ApproximateNumberOfMessagesNotVisible": "11"}, attrs

# DeleteMessage and DeleteMessageBatch.
c.delete_message(QueueUrl=q, ReceiptHandle=second[0]["ReceiptHandle"])
deleted = c.delete_message_batch(QueueUrl=q, Entries=[
    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(first[:5])])
assert len(deleted["Successful"]) == 5 and not deleted.get("Failed"), deleted

# ChangeMessageVisibility to 0: received again, receive count 2.
c.change_message_visibility(QueueUrl=q, ReceiptHandle=first[5]["ReceiptHandle"], VisibilityTimeout=0)
again = c.receive_message(QueueUrl=q, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                          AttributeNames=["ApproximateReceiveCount"])["Messages"]
assert [m["MessageId"] for m in again] == [first[5]["MessageId"]], again
assert again[0]["Attributes"]["ApproximateReceiveCount"] == "2"

# Long poll on an empty queue waits, then answers empty.
t0 = time.monotonic()
empty = c.receive_message(QueueUrl=q, WaitTimeSeconds=2)
assert "Messages" not in empty or not empty["Messages"]
assert time.monotonic() - t0 >= 1.8

# Long poll wakes on a send.
import threading
threading.Timer(0.5, lambda: client().send_message(QueueUrl=q, MessageBody="late")).start()
t0 = time.monotonic()
woke = c.receive_message(QueueUrl=q, WaitTimeSeconds=10)["Messages"]
assert woke[0]["Body"] == "late" and time.monotonic() - t0 < 5

# PurgeQueue.
c.purge_queue(QueueUrl=q)
attrs = c.get_queue_attributes(QueueUrl=q, AttributeNames=["All"])["Attributes"]
assert attrs["ApproximateNumberOfMessages"] == "0" and attrs["ApproximateNumberOfMessagesNotVisible"] == "0", attrs

# Errors, and the queue unchanged by them.
fails(lambda: c.send_message(QueueUrl=E + "/x/no-such-queue", MessageBody="x"),
      "NonExistentQueue", "QueueDoesNotExist")
fails(lambda: c.get_queue_url(QueueName="no-such-queue"), "NonExistentQueue", "QueueDoesNotExist")
fails(lambda: c.delete_message(QueueUrl=q, ReceiptHandle="not-a-receipt"), "ReceiptHandleIsInvalid")
fails(lambda: c.delete_message(QueueUrl=q, ReceiptHandle=first[6]["ReceiptHandle"] + "x"), "ReceiptHandleIsInvalid")
fails(lambda: c.send_message(QueueUrl=q, MessageBody="x" * (256 * 1024 + 1)), "InvalidParameterValue")
fails(lambda: c.send_message_batch(QueueUrl=q, Entries=[
    {"Id": f"e{i}", "MessageBody": "x"} for i in range(11)]), "TooManyEntries")
fails(lambda: c.send_message_batch(QueueUrl=q, Entries=[
    {"Id": "same", "MessageBody": "x"}, {"Id": "same", "MessageBody": "y"}]), "BatchEntryIdsNotDistinct")
fails(lambda: c.send_message_batch(QueueUrl=q, Entries=[
    {"Id": "bad id!", "MessageBody": "x"}]), "InvalidBatchEntryId")
fails(lambda: c.send_message_batch(QueueUrl=q, Entries=[
    {"Id": f"e{i}", "MessageBody": "x" * 30000} for i in range(10)]), "BatchRequestTooLong")
try:
    c.send_message_batch(QueueUrl=q, Entries=[])
    raise AssertionError("an empty batch was accepted")
except ParamValidationError:
    pass  # botocore refuses it before sending
except ClientError as e:
    assert "EmptyBatchRequest" in code(e), e
fails(lambda: c.receive_message(QueueUrl=q, MaxNumberOfMessages=11), "InvalidParameterValue")
attrs = c.get_queue_attributes(QueueUrl=q, AttributeNames=["All"])["Attributes"]
assert attrs["ApproximateNumberOfMessages"] == "0", attrs

# Signatures are verified: a wrong secret and an unknown key are refused.
fails(lambda: client(secret=S + "x").list_queues(), "SignatureDoesNotMatch", status=403)
fails(lambda: client(key="SPRTUNKNOWNKEY000000").list_queues(), "InvalidClientTokenId", status=403)

print("boto3: all operations ok")
