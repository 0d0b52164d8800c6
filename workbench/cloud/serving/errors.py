"""One error type for caller mistakes, carrying TensorFlow Serving's status code.

The same :class:`RequestError` is raised by the registry, the decoder and the batcher;
the REST API turns it into an HTTP status with ``{"error": ...}``, the gRPC API into the
gRPC status of the same name (``NOT_FOUND``, ``INVALID_ARGUMENT``, ...), as TF Serving does.
"""

from __future__ import annotations

# TensorFlow Serving's mapping of its (gRPC / tensorflow.error) codes to HTTP statuses.
HTTP_STATUS = {
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "OUT_OF_RANGE": 400,
    "NOT_FOUND": 404,
    "RESOURCE_EXHAUSTED": 413,
    "UNIMPLEMENTED": 501,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
    "INTERNAL": 500,
}


class RequestError(Exception):
    """A request the server refuses: bad input, unknown model, over a limit, overloaded.

    Args:
        message: what went wrong and what to do, shown to the caller.
        code: TensorFlow Serving's status code name (``INVALID_ARGUMENT``, ``NOT_FOUND``, ...).
        http_status: the HTTP status, when it differs from the code's usual one.
        retry_after_s: for ``UNAVAILABLE``: when the client may try again (``Retry-After``).
    """

    def __init__(
        self,
        message: str,
        code: str = "INVALID_ARGUMENT",
        *,
        http_status: int | None = None,
        retry_after_s: int | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.http_status = http_status or HTTP_STATUS.get(code, 400)
        self.retry_after_s = retry_after_s
