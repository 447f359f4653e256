"""The one exception type parsing raises."""


class WireError(ValueError):
    """Bytes that are not a valid packet; the message names the field at fault."""


class ChecksumError(WireError):
    """A header checksum did not verify."""
