"""Files through the official SDK with the platform's object store on a real S3 server (SeaweedFS).

The rest of tests/e2e/ runs the platform as ``make up`` does, on the filesystem object
store. Here ``python -m services.local_stack`` is started with ``TAILOR_OBJECT_STORE_*``
pointing every service at a SeaweedFS bucket, as a deployment on MinIO or S3 would be
configured, with 5 MiB parts so that a few MiB already make a multipart upload. An upload
must come back byte for byte through the API, and be found in the bucket itself, where
the SDK cannot see: a stack that quietly kept files on its local disk would fail.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass

import openai
import pytest

from tests.e2e.conftest import KEY_A
from tests.support.local_stack import running_stack
from tests.support.s3_server import ACCESS_KEY, REGION, SECRET_KEY, S3Server
from tests.support.seaweedfs_server import require_weed, seaweedfs_s3_server

pytestmark = pytest.mark.slow

BUCKET = "tailor-e2e"
PART_SIZE_MIB = 5
MiB = 1 << 20
EXAMPLE = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Ahoy!"}]}


@dataclass
class StackOnS3:
    """The platform's gateway, and the S3 server holding its objects."""

    url: str
    s3: S3Server

    def client(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=KEY_A)


@pytest.fixture(scope="module")
def stack_on_seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackOnS3]:
    with contextlib.ExitStack() as cleanup:
        require_weed()
        s3 = cleanup.enter_context(seaweedfs_s3_server())
        platform = cleanup.enter_context(
            running_stack(
                tmp_path_factory.mktemp("e2e-s3") / "data",
                TAILOR_API_KEYS=f"{KEY_A}=org-a",
                TAILOR_OBJECT_STORE_ENDPOINT=s3.endpoint,
                TAILOR_OBJECT_STORE_BUCKET=BUCKET,  # missing: the services create it
                TAILOR_OBJECT_STORE_ACCESS_KEY=ACCESS_KEY,
                TAILOR_OBJECT_STORE_SECRET_KEY=SECRET_KEY,
                TAILOR_OBJECT_STORE_REGION=REGION,
                TAILOR_OBJECT_STORE_PART_SIZE_MIB=str(PART_SIZE_MIB),
            )
        )
        yield StackOnS3(platform.url, s3)


def test_uploads_are_stored_in_the_s3_bucket_and_downloaded_byte_for_byte(
    stack_on_seaweedfs: StackOnS3,
) -> None:
    client = stack_on_seaweedfs.client()
    bucket = stack_on_seaweedfs.s3.boto3_client()
    training = "\n".join(json.dumps(EXAMPLE) for _ in range(10)).encode()
    # Two 5 MiB parts and a short third: a multipart upload, completed on the server.
    large = random.Random(7).randbytes(2 * PART_SIZE_MIB * MiB + 12345)

    uploaded = client.files.create(file=("train.jsonl", training), purpose="fine-tune")
    processed = client.files.wait_for_processing(uploaded.id, poll_interval=0.5)
    blob = client.files.create(file=("blob.bin", large), purpose="user_data")

    assert processed.status == "processed" and processed.bytes == len(training)
    assert blob.bytes == len(large)
    for file_id, content in ((uploaded.id, training), (blob.id, large)):
        assert client.files.content(file_id).content == content
        stored = bucket.get_object(Bucket=BUCKET, Key=f"orgs/org-a/files/{file_id}")["Body"].read()
        assert hashlib.sha256(stored).hexdigest() == hashlib.sha256(content).hexdigest()
    assert bucket.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []

    client.files.delete(blob.id)
    keys = [o["Key"] for o in bucket.list_objects_v2(Bucket=BUCKET).get("Contents", [])]
    assert keys == [f"orgs/org-a/files/{uploaded.id}"]

