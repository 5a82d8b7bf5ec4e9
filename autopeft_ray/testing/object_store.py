"""A real S3 API on loopback for tests and benchmarks: moto's ``ThreadedMotoServer``.

The way Ray's own storage tests exercise Tune against S3: the
server runs in a thread of this process, every client (pyarrow, boto3, the
Ray workers of a local or loopback cluster) reaches it at
``http://127.0.0.1:<port>``, and fake credentials sit in the environment.
moto is a development dependency (``pip install -e '.[dev]'``).

Example:
    >>> with moto_s3() as s3:
    ...     run_search(replace(options, output=s3.uri("runs/first")))
"""

from __future__ import annotations

import contextlib
import json
import os
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

#: Credentials moto accepts (it checks none until :meth:`MotoS3.enforce_auth`).
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-west-2",
}


@dataclass
class MotoS3:
    """A running moto S3 server with one bucket."""

    endpoint: str
    bucket: str
    region: str

    def uri(self, path: str = "", bucket: str | None = None) -> str:
        """``s3://bucket/path?region=...&endpoint_override=...``: what ``--output`` takes."""
        where = f"{bucket or self.bucket}/{path}".rstrip("/")
        return f"s3://{where}?region={self.region}&endpoint_override={self.endpoint}"

    def client(self, **credentials: str) -> Any:
        import boto3

        return boto3.client(
            "s3", endpoint_url=self.endpoint, region_name=self.region, **credentials
        )

    def keys(self, prefix: str = "") -> list[str]:
        """Every object key under ``prefix`` in the bucket."""
        pages = (
            self.client()
            .get_paginator("list_objects_v2")
            .paginate(Bucket=self.bucket, Prefix=prefix)
        )
        return [item["Key"] for page in pages for item in page.get("Contents", [])]

    def read(self, key: str) -> bytes:
        return bytes(self.client().get_object(Bucket=self.bucket, Key=key)["Body"].read())

    def user(self, name: str, actions: list[str]) -> dict[str, str]:
        """An IAM user allowed only ``actions`` on the bucket; returns its credentials."""
        import boto3

        iam = boto3.client("iam", endpoint_url=self.endpoint, region_name=self.region)
        iam.create_user(UserName=name)
        policy = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": actions,
                    "Resource": [f"arn:aws:s3:::{self.bucket}", f"arn:aws:s3:::{self.bucket}/*"],
                }
            ],
        }
        iam.put_user_policy(UserName=name, PolicyName="scoped", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName=name)["AccessKey"]
        return {
            "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
        }

    @contextlib.contextmanager
    def enforce_auth(self) -> Iterator[None]:
        """Check credentials and IAM policies on every request while inside (moto's switch
        is process-wide: it applies to every moto server of this process)."""
        self._post("/moto-api/reset-auth", b"0")
        try:
            yield
        finally:
            self._post("/moto-api/reset-auth", b"inf")

    def _post(self, path: str, data: bytes) -> None:
        request = urllib.request.Request(
            self.endpoint + path, data=data, method="POST", headers={"Content-Type": "text/plain"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()


@contextlib.contextmanager
def moto_s3(bucket: str = "autopeft-runs", region: str = "us-west-2") -> Iterator[MotoS3]:
    """Start a moto S3 server with ``bucket`` and fake credentials; stop it after.

    The credentials are put in ``os.environ`` (and taken out after), so that
    Ray workers started inside inherit them. moto keeps its buckets in this
    process, not in the server: each start resets them, so use one at a time.
    """
    from moto.server import ThreadedMotoServer

    saved = {name: os.environ.get(name) for name in FAKE_CREDENTIALS}
    os.environ.update(FAKE_CREDENTIALS)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        s3 = MotoS3(f"http://{host}:{port}", bucket, region)
        s3._post("/moto-api/reset", b"")  # an earlier server's buckets and users are still here
        s3.client().create_bucket(
            Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region}
        )
        yield s3
    finally:
        server.stop()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
