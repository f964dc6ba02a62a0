"""policyhub: SpaceONE-compatible policy repository and authorization service."""

__version__ = "0.1.0"
