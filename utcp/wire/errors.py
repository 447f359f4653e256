"""The one exception type parsing raises."""


class WireError(ValueError):
    """Bytes that are not a valid packet; the message names the field at fault."""


class ChecksumError(WireError):
    """A header checksum did not verify."""


class EncodeError(WireError):
    """A value that cannot be encoded (field out of range, options over 40 bytes, ...).

    Raised by the builders: the caller, not a peer, is at fault. A subclass of WireError so
    code that handles any wire problem in one place still can.
    """
