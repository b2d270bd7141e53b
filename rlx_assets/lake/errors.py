"""S3 and file-system errors as one clear sentence naming the file (`LakeAccessError`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

DENIED = "access denied (check the AWS credentials; RLX_S3_ANON=true reads public buckets)"


_BOTO_ERRORS = {
    "NoCredentialsError": "no AWS credentials found (set AWS_ACCESS_KEY_ID and"
    " AWS_SECRET_ACCESS_KEY, or RLX_S3_ANON=true for a public bucket)",
    "PartialCredentialsError": "incomplete AWS credentials (an access key id needs its secret)",
    "EndpointConnectionError": "cannot reach the S3 endpoint",
    "ConnectTimeoutError": "timed out connecting to the S3 endpoint",
    "ReadTimeoutError": "timed out reading from the S3 endpoint",
    "ProfileNotFound": "the AWS profile named by AWS_PROFILE does not exist",
}


# What an S3 error code means to the person fixing it. Fixed texts only: server messages are never
# copied, so nothing the request carried can leak into an error.
_S3_ERRORS = {
    "NoSuchBucket": "the S3 bucket does not exist",
    "AccessDenied": DENIED,
    "AllAccessDisabled": "access to this bucket is disabled",
    "AccountProblem": "the AWS account behind these credentials has a problem",
    "InvalidAccessKeyId": "the AWS access key id is not recognized",
    "SignatureDoesNotMatch": "the AWS secret access key was rejected",
    "ExpiredToken": "the AWS session token has expired",
    "InvalidToken": "the AWS session token is invalid",
    "TokenRefreshRequired": "the AWS session token has expired",
    "PermanentRedirect": "the bucket lives in another region (set RLX_S3_REGION)",
    "AuthorizationHeaderMalformed": "wrong region for this bucket (set RLX_S3_REGION)",
    "PreconditionFailed": "the object changed while it was being read; run again",
    "SlowDown": "S3 kept throttling the requests (SlowDown) through every retry"
    " (RLX_S3_MAX_ATTEMPTS)",
    "InternalError": "S3 kept failing (InternalError) through every retry (RLX_S3_MAX_ATTEMPTS)",
    "ServiceUnavailable": "S3 kept answering ServiceUnavailable through every retry"
    " (RLX_S3_MAX_ATTEMPTS)",
    "NoSuchKey": "the object disappeared while it was being read",
    "403": DENIED,
    "404": "not found",
}


class LakeAccessError(OSError):
    """The lake cannot be reached or read: missing bucket or folder, refused credentials, network.

    The message names the URL and the reason, never a credential.
    """


def s3_error_code(error: BaseException) -> str | None:
    """The S3 error code behind an exception (s3fs keeps the botocore error as the cause)."""
    seen: BaseException | None = error
    for _ in range(8):  # cause chains are short; the bound guards against cycles
        if seen is None:
            return None
        response = getattr(seen, "response", None)
        if isinstance(response, dict):
            code = response.get("Error", {}).get("Code")
            if code:
                return str(code)
        seen = seen.__cause__ or seen.__context__
    return None


def is_boto_error(error: BaseException) -> bool:
    return type(error).__module__.split(".")[0] in ("botocore", "aiobotocore")


def describe_error(error: BaseException) -> str:
    code = s3_error_code(error)
    if code is not None:
        return _S3_ERRORS.get(code, f"S3 request refused ({code})")
    if is_boto_error(error):
        return _BOTO_ERRORS.get(type(error).__name__, f"S3 client error ({type(error).__name__})")
    if isinstance(error, PermissionError):
        return "permission denied"
    if isinstance(error, FileNotFoundError):
        return "not found"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return type(error).__name__


@contextmanager
def lake_access(uri: str) -> Iterator[None]:
    """Turn storage errors into a `LakeAccessError` naming the URL and the reason."""
    try:
        yield
    except LakeAccessError:
        raise
    except OSError as error:
        raise LakeAccessError(f"{uri}: {describe_error(error)}") from error
    except Exception as error:
        if not is_boto_error(error):
            raise
        raise LakeAccessError(f"{uri}: {describe_error(error)}") from error
