"""utcp: an async userspace TCP stack over Linux TUN devices."""

__version__ = "0.1.0"
