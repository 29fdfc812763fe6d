"""Upload a generated model repository to S3 (or an S3-compatible store) for tritonserver replicas to load."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .preflight import check_repository

_S3_URL = re.compile(r"^s3://(?P<bucket>[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9])(?:/(?P<prefix>.*?))?/?$")
SKIPPED_PARTS = ("__pycache__",)


@dataclass(frozen=True)
class S3Location:
    bucket: str
    prefix: str  # no leading or trailing slash; "" for the bucket root

    def key(self, relative: str) -> str:
        return f"{self.prefix}/{relative}" if self.prefix else relative

    def triton_url(self, endpoint: str | None = None) -> str:
        """The --model-repository value: s3://bucket/prefix, or s3://http://host:port/bucket/prefix off AWS."""
        path = f"{self.bucket}/{self.prefix}" if self.prefix else self.bucket
        return f"s3://{endpoint.rstrip('/')}/{path}" if endpoint else f"s3://{path}"


def parse_s3_url(url: str) -> S3Location:
    match = _S3_URL.match(url)
    if not match:
        raise ValueError(f"{url!r} is not s3://BUCKET[/PREFIX] (bucket: 3-63 lower-case letters, digits, '.', '-')")
    return S3Location(match["bucket"], (match["prefix"] or "").strip("/"))


def repository_objects(root: Path) -> dict[str, Path | None]:
    """Relative key -> file; an empty folder becomes a `.keep` object (object stores have no folders)."""
    objects: dict[str, Path | None] = {}
    for path in sorted(root.rglob("*")):
        if any(part in SKIPPED_PARTS for part in path.relative_to(root).parts):
            continue
        if path.is_file():
            objects[path.relative_to(root).as_posix()] = path
        elif path.is_dir() and not any(path.iterdir()):
            objects[(path.relative_to(root) / ".keep").as_posix()] = None
    return objects


def s3_client(endpoint: str | None):
    try:
        import boto3
    except ImportError as error:
        raise RuntimeError("publishing needs boto3: pip install 'mxbai-triton[publish]'") from error
    from botocore.config import Config

    # Credentials and region come from the standard AWS chain (env, profile, instance role).
    return boto3.client("s3", endpoint_url=endpoint, config=Config(retries={"max_attempts": 5, "mode": "standard"}))


def publish(repository: str | Path, url: str, *, endpoint: str | None = None, delete_extra: bool = False) -> dict:
    """Upload every file of `repository` under s3://BUCKET/PREFIX and check the listing matches.

    Args:
        repository: A generated model repository (checked first, as `serve` would).
        url: s3://BUCKET/PREFIX.
        endpoint: S3-compatible endpoint URL (MinIO, moto, ...); None for AWS.
        delete_extra: Delete objects under PREFIX that the repository does not have.

    Returns:
        Counts: uploaded files and bytes, extra objects found (and deleted when asked).
    """
    root = Path(repository)
    problems = check_repository(root)
    if problems:
        raise ValueError(f"{root} is not ready to publish:\n  " + "\n  ".join(problems))
    location = parse_s3_url(url)
    client = s3_client(endpoint)
    objects = repository_objects(root)
    uploaded_bytes = 0
    for relative, path in objects.items():
        key = location.key(relative)
        if path is None:
            client.put_object(Bucket=location.bucket, Key=key, Body=b"")
        else:
            client.upload_file(str(path), location.bucket, key)  # multipart above 8 MiB
            uploaded_bytes += path.stat().st_size
    listed = _list(client, location)
    expected = {location.key(r): (0 if p is None else p.stat().st_size) for r, p in objects.items()}
    wrong = [k for k, size in expected.items() if listed.get(k) != size]
    if wrong:
        raise RuntimeError(f"upload incomplete: {len(wrong)} objects missing or of the wrong size, e.g. {wrong[0]}")
    extra = sorted(set(listed) - set(expected))
    if extra and delete_extra:
        for start in range(0, len(extra), 1000):
            client.delete_objects(Bucket=location.bucket, Delete={"Objects": [{"Key": k} for k in extra[start:start + 1000]]})
    return {"files": len(objects), "bytes": uploaded_bytes, "extra": len(extra), "deleted": len(extra) if delete_extra else 0}


def _list(client, location: S3Location) -> dict[str, int]:
    prefix = f"{location.prefix}/" if location.prefix else ""
    sizes: dict[str, int] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=location.bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            sizes[item["Key"]] = item["Size"]
    return sizes
