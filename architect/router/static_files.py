"""Twisted's static File, kept from faulting on odd input.

- A NUL in a path segment: `os.stat` raises on it, which Twisted answers 500.
- A Range header it serves wrong: a suffix longer than the file (`bytes=-N`, N > size)
  gets a negative offset and an impossible Content-Length (the client then waits for
  ever), ranges that overlap or go backwards break its producer, and a header that is
  not UTF-8 breaks its log line. Only a single range is honoured here; with any other
  the whole file is served, as a server may (RFC 9110 section 14.2).
"""

from __future__ import annotations

import re
from typing import IO, Any

from twisted.web.iweb import IRequest
from twisted.web.resource import IResource
from twisted.web.static import File

# One range of bytes: first-last, first- (to the end), or -suffix (the last bytes).
_SINGLE_RANGE = re.compile(rb"bytes=(\d*)-(\d*)")


def is_served_range(header: bytes, size: int) -> bool:
    """Whether a Range header is one this router honours for a file of `size` bytes."""
    match = _SINGLE_RANGE.fullmatch(header.strip())
    if match is None:
        return False
    first, last = match.groups()
    if first:
        return True
    return bool(last) and int(last) <= size  # a suffix of at most the whole file


class SafeFile(File):
    def getChild(self, path: bytes, request: IRequest) -> IResource:
        if b"\x00" in path:
            return self.childNotFound  # no file has such a name
        child: IResource = super().getChild(path, request)
        return child

    def makeProducer(self, request: IRequest, fileForReading: IO[bytes]) -> Any:
        header = request.getHeader(b"range")
        if header is not None and not is_served_range(header, self.getFileSize()):
            request.requestHeaders.removeHeader(b"range")  # the whole file, then
        return super().makeProducer(request, fileForReading)
