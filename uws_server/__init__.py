"""uws-server: an IVOA UWS 1.1 job execution service."""

__version__ = "0.1.0"
