"""Reading cloud errors without importing any SDK: the error code, and what kind of failure it is.

Every module that needs an AWS error code or a failure class calls these (one copy of the rules).
"""

from __future__ import annotations

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
