"""The API's blueprint, ``/api/v1``, which every module of webapp.api adds its routes to."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("api", __name__, url_prefix="/api/v1")

__all__ = ["bp"]
