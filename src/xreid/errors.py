"""The domain errors xreid's code raises when a request or a file cannot be served: what went wrong,
never how a transport reports it. The server maps each kind to an HTTP status at its edge
(``xreid.serve.app``); the CLI prints the message. All are ``ValueError`` so callers that catch bad
input keep working.
"""

from __future__ import annotations


class XreidError(ValueError):
    """Something xreid was asked to do cannot be done; the message says what and why."""


class InvalidInput(XreidError):
    """The input is malformed or out of range (a bad filter, k, mark, map kind, a corrupt image)."""


class NotFound(XreidError, LookupError):
    """What was named (a gallery item, an upload, a search, an image under the data root) does not exist."""


class TooLarge(InvalidInput):
    """The input is larger than the limits allow (bytes or pixels)."""


class UnsupportedMedia(InvalidInput):
    """The content is not of an accepted kind (not an image, or a format that is not accepted)."""


class Gone(NotFound):
    """What was named existed but can no longer be served (a damaged part of an index)."""


class Unavailable(XreidError):
    """What was named cannot be served now (a damaged file that a rebuild or repair would fix)."""


class NotStored(XreidError):
    """Something could not be written (no space, no permission): nothing was changed."""
