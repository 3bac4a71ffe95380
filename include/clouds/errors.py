"""Reading cloud errors without importing any SDK: the error code, and what kind of failure it is.

Every module that needs an AWS error code or a failure class calls these (one copy of the rules).
"""

from __future__ import annotations

import re
from typing import Literal

FailureKind = Literal["unreachable", "access_denied", "error"]

_ACCESS_DENIED_CODES = {
    "AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "AuthorizationError",
    "AuthorizationFailure", "InvalidClientTokenId", "UnrecognizedClientException", "Forbidden",
    "SignatureDoesNotMatch", "ExpiredToken", "ExpiredTokenException", "InvalidAccessKeyId",
    "AuthorizationPermissionMismatch", "InsufficientAccountPermissions",
}
_NOT_FOUND_CODES = {
    "NoSuchBucket", "NoSuchKey", "NotFound", "404", "DBInstanceNotFound", "DBInstanceNotFoundFault",
    "ResourceNotFoundException", "InvalidInstanceID.NotFound", "InvalidVolume.NotFound", "NoSuchHostedZone",
    "ContainerNotFound", "BlobNotFound", "ResourceNotFound",
}
_THROTTLED_CODES = {
    "Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequestsException", "SlowDown",
    "ProvisionedThroughputExceededException", "RequestThrottled", "PriorRequestNotComplete",
}
_UNREACHABLE_NAMES = {
    "EndpointConnectionError", "ConnectTimeoutError", "ConnectionClosedError", "ReadTimeoutError",
    "ConnectionError", "ConnectionRefusedError", "ServiceRequestError", "ServiceResponseError",
    "NewConnectionError", "MaxRetryError", "RetryError", "TransportError", "ServiceUnavailable",
    "timeout", "TimeoutError",
}
_DENIED_NAMES = {"Forbidden", "PermissionDenied", "Unauthorized", "ClientAuthenticationError", "NoCredentialsError"}
_NOT_FOUND_NAMES = {"NotFound", "ResourceNotFoundError"}


def error_code(exc: BaseException) -> str:
    """The cloud's error code: botocore ``response["Error"]["Code"]``, Azure ``error_code``, else ``""``."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    code = getattr(exc, "error_code", None)
    return str(code) if code else ""


def http_status(exc: BaseException) -> int | None:
    """The HTTP status of a cloud error when it carries one."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return int(status) if isinstance(status, int) else None
    for attr in ("status_code", "code"):
        value = getattr(exc, attr, None)
        if isinstance(value, int):
            return value
    return None


def is_not_found(exc: BaseException) -> bool:
    """The resource (or its sub-configuration) does not exist."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    return error_code(exc) in _NOT_FOUND_CODES or bool(names & _NOT_FOUND_NAMES) or http_status(exc) == 404


def is_throttled(exc: BaseException) -> bool:
    """The cloud asked us to slow down (worth a retry with back-off)."""
    return error_code(exc) in _THROTTLED_CODES or http_status(exc) == 429


def classify(exc: BaseException) -> FailureKind:
    """``unreachable`` | ``access_denied`` | ``error``, from the exception alone (no SDK imports)."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    if error_code(exc) in _ACCESS_DENIED_CODES or names & _DENIED_NAMES or http_status(exc) in (401, 403):
        return "access_denied"
    if names & _UNREACHABLE_NAMES:
        return "unreachable"
    cause = exc.__cause__ or exc.__context__
    if cause is not None and cause is not exc:
        inner = classify(cause)
        if inner != "error":
            return inner
    return "error"


# ---- access denied: name the missing permission -------------------------------------------------------------
#: S3 API operations whose IAM action has another name (AWS's "Actions, resources and condition keys for S3").
_S3_ACTIONS = {
    "ListObjects": "ListBucket", "ListObjectsV2": "ListBucket", "HeadBucket": "ListBucket",
    "ListObjectVersions": "ListBucketVersions", "ListBuckets": "ListAllMyBuckets",
    "HeadObject": "GetObject", "CopyObject": "PutObject", "CreateMultipartUpload": "PutObject",
    "UploadPart": "PutObject", "UploadPartCopy": "PutObject", "CompleteMultipartUpload": "PutObject",
    "DeleteObjects": "DeleteObject", "ListMultipartUploads": "ListBucketMultipartUploads",
    "ListParts": "ListMultipartUploadParts",
    "GetBucketEncryption": "GetEncryptionConfiguration", "PutBucketEncryption": "PutEncryptionConfiguration",
    "DeleteBucketEncryption": "PutEncryptionConfiguration",
    "GetPublicAccessBlock": "GetBucketPublicAccessBlock", "PutPublicAccessBlock": "PutBucketPublicAccessBlock",
    "DeletePublicAccessBlock": "PutBucketPublicAccessBlock",
    "GetBucketLifecycleConfiguration": "GetLifecycleConfiguration",
    "PutBucketLifecycleConfiguration": "PutLifecycleConfiguration", "DeleteBucketLifecycle": "PutLifecycleConfiguration",
    "GetObjectLockConfiguration": "GetBucketObjectLockConfiguration",
    "PutObjectLockConfiguration": "PutBucketObjectLockConfiguration",
    "DeleteBucketTagging": "PutBucketTagging",
}


#: S3 operations that need another IAM action when they name a ``VersionId`` (one version, not the current one).
_S3_VERSION_ACTIONS = {
    "GetObject": "GetObjectVersion", "HeadObject": "GetObjectVersion", "DeleteObject": "DeleteObjectVersion",
    "GetObjectTagging": "GetObjectVersionTagging", "PutObjectTagging": "PutObjectVersionTagging",
    "GetObjectAcl": "GetObjectVersionAcl", "PutObjectAcl": "PutObjectVersionAcl",
}
#: The key under which :func:`remember_version` marks, in botocore's request context, a call naming a version.
_VERSIONED_CALL = "runbooks_names_version"


#: Services whose signing name (botocore's) differs from their IAM action prefix.
_IAM_PREFIX = {"monitoring": "cloudwatch", "email": "ses"}


def iam_action(service: str, operation: str, versioned: bool = False) -> str:
    """The IAM action an AWS API operation needs (``s3``, ``HeadObject`` -> ``s3:GetObject``).

    ``service`` is botocore's signing name (``monitoring`` for CloudWatch, whose actions are ``cloudwatch:*``).
    ``versioned``: the call names a ``VersionId`` (``GetObject`` of one version needs ``s3:GetObjectVersion``).
    """
    service = _IAM_PREFIX.get(service, service)
    if service == "s3":
        if versioned and operation in _S3_VERSION_ACTIONS:
            return f"s3:{_S3_VERSION_ACTIONS[operation]}"
        return f"s3:{_S3_ACTIONS.get(operation, operation)}"
    return f"{service}:{operation}"


def denied_message(message: str, service: str, operation: str, versioned: bool = False) -> str:
    """An access-denied message that names the IAM permission the call needs (unchanged when it already does)."""
    action = iam_action(service, operation, versioned)
    if action in message:
        return message
    return f"{message} (missing permission {action}: {operation} needs it)"


def remember_version(params: dict[str, object] | None = None, context: dict[str, object] | None = None,
                     **_: object) -> None:
    """botocore ``before-parameter-build`` handler: mark a call that names a ``VersionId`` (see
    :func:`name_denied_permission`, which reads the mark from the same request context)."""
    if isinstance(context, dict) and isinstance(params, dict) and params.get("VersionId"):
        context[_VERSIONED_CALL] = True


def name_denied_permission(parsed: dict[str, object] | None = None, model: object = None,
                           context: dict[str, object] | None = None, **_: object) -> None:
    """botocore ``after-call`` handler: an access-denied answer names the IAM permission the call needs.

    S3 answers a denial with a bare "Access Denied" (and a denied ``HeadObject``, which has no body, with a
    bare 403 "Forbidden"); the message raised to the runbook (and shown in the task log and the run's
    report) then says e.g. "Access Denied (missing permission s3:ListBucket: ListObjectsV2 needs it)".
    Registered on every session :func:`include.clouds.aws.clients.client_for` builds.
    """
    error = parsed.get("Error") if isinstance(parsed, dict) else None
    if not isinstance(error, dict):
        return
    code = str(error.get("Code", ""))
    if code not in _ACCESS_DENIED_CODES and code != "403":
        return
    service_model = getattr(model, "service_model", None)
    service = str(getattr(service_model, "signing_name", None) or getattr(service_model, "endpoint_prefix", ""))
    operation = str(getattr(model, "name", ""))
    if service and operation:
        message = str(error.get("Message") or error.get("Code"))
        if code == "403":  # a body botocore could not parse (none, or XML from a JSON service): its message
            found = re.search(r"<Message>(.*?)</Message>", message, re.S)
            detail = found.group(1).strip() if found else ("" if message in ("403", "Forbidden") else message)
            message = f"Access Denied (HTTP 403{': ' + detail if detail else ''})"
        versioned = isinstance(context, dict) and bool(context.get(_VERSIONED_CALL))
        error["Message"] = denied_message(message, service, operation, versioned)
