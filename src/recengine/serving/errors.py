"""Errors only the service raises; the API maps them, with the rest of the error tree, to HTTP statuses."""

from recengine.errors import RecengineError


class AuthenticationError(RecengineError):
    """No API key, or one the store does not know (or has revoked)."""


class PermissionDeniedError(RecengineError):
    """A valid API key without the scope the operation needs."""


class RequestTooLargeError(RecengineError):
    """A request body over the configured size limit."""
