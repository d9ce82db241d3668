"""Shared test plumbing: moto resources wired as template.yaml wires them, and a real
HTTP callback receiver on 127.0.0.1."""
from __future__ import annotations

import http.server
import json
import threading


def wire_bucket_to_queue(s3, sqs, events, bucket: str, queue_name: str = "jobs") -> str:
    """Bucket -> EventBridge Object Created (results excluded) -> SQS; returns the queue URL."""
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={"EventBridgeConfiguration": {}})
    queue = sqs.create_queue(QueueName=queue_name)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="audio-uploaded", EventPattern=json.dumps({
        "source": ["aws.s3"], "detail-type": ["Object Created"],
        "detail": {"bucket": {"name": [bucket]}, "object": {"key": [{"anything-but": {"suffix": ".json"}}]}},
    }))
    events.put_targets(Rule="audio-uploaded", Targets=[{"Id": "queue", "Arn": queue_arn}])
    return queue


def create_tables(dynamodb, tables: dict[str, str]) -> None:
    """{table name: hash key attribute}, all string keys, on-demand."""
    for table, key in tables.items():
        dynamodb.create_table(TableName=table, KeySchema=[{"AttributeName": key, "KeyType": "HASH"}],
                              AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"}],
                              BillingMode="PAY_PER_REQUEST")


class Receiver:
    """A real HTTP callback receiver answering a scripted list of statuses (the last one repeats)."""

    def __init__(self, statuses):
        self.statuses = list(statuses)
        self.requests: list[tuple[dict, bytes]] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                status = receiver.statuses.pop(0) if len(receiver.statuses) > 1 else receiver.statuses[0]
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def load_handler(relative_path: str, name: str):
    """Import a Lambda handler file (functions/*/app.py) as its own module."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parents[1] / relative_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
