"""A real S3 server (moto) on loopback for tests, with dummy AWS credentials.

Register the fixtures in a test module by name:

    from rlx_assets_tests import s3_server as s3

    aws_env, s3_client, s3_server = s3.aws_env, s3.s3_client, s3.s3_server
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

ACCESS_KEY_ID = "AKIARLXTESTKEY000000"
# Distinctive, so a test can prove it never appears in an error or in provenance.
SECRET_ACCESS_KEY = "rlx-test-secret-5f3a9c0e-never-printed"
REGION = "us-east-1"


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """Start moto's S3 server on 127.0.0.1 (a free port) and yield its endpoint URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Dummy credentials in the environment; no profile, config file or instance metadata."""
    missing = tmp_path_factory.mktemp("aws") / "absent"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(missing))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(missing))
    # Without this, botocore may probe 169.254.169.254 and stall for seconds.
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def s3_client(s3_server: str, aws_env: None) -> Any:
    """A boto3 S3 client talking to the loopback server."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=s3_server,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY_ID,
        aws_secret_access_key=SECRET_ACCESS_KEY,
    )


def unique_bucket(prefix: str = "rlx-test") -> str:
    """A bucket name no other test uses (the server's state lives for the whole session)."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"
