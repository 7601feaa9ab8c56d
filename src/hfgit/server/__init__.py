"""The gatekeeper: a WSGI application serving git smart HTTP behind access tokens."""

from .app import create_app

__all__ = ["create_app"]
