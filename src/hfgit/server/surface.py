"""What the application needs of each surface: git, LFS, the API, the pages, the site."""

from __future__ import annotations

from abc import ABC, abstractmethod

from werkzeug.wrappers import Request, Response

from .refusal import Refusal


class Surface(ABC):
    """One dialect of HTTP: the handlers of its routes and how it says no."""

    request_class: type[Request] = Request

    @abstractmethod
    def refuse(self, refusal: Refusal, request: Request) -> Response:
        """Render ``refusal`` as this surface's clients expect to read it."""

    def finish(self, request: Request, response: Response) -> Response:
        """Last touches on every answer of this surface, refusals included."""
        return response
