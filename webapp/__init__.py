"""The Flask control plane: API, login, pages, git for ArgoCD, metrics.

``create_app(test_config=None)`` builds an app; configuration comes from the
defaults (webapp.config), then the file named by ``SHIPYARD_CONFIG``, then
``SHIPYARD_*`` environment variables, then ``test_config``. Nothing is read at
import time.
"""

from __future__ import annotations

from flask import Flask

from webapp import config as config_module


def create_app(test_config: dict | None = None) -> Flask:
    # No static folder: Flask would otherwise serve /static/ with no authorization declared (tests/test_authz.py).
    app = Flask(__name__, static_folder=None)
    config_module.load(app, test_config)
    config_module.configure_logging(app)

    from webapp import agent_api, api, auth, errors, githttp_routes, hooks, observability, oidc, pages, request_text
    from webapp.plane import ControlPlane

    # First of the before-request functions: text no database can hold is refused before CSRF,
    # authentication or any view looks at it.
    request_text.init_app(app)
    ControlPlane().init_app(app)
    auth.init_app(app)
    oidc.init_app(app)
    errors.init_app(app)
    observability.init_app(app)
    # The API checks CSRF itself, and only for session-authenticated changes (webapp.auth).
    auth.csrf.exempt(api.bp)
    app.register_blueprint(api.bp)
    githttp_routes.init_app(app)
    agent_api.init_app(app)
    hooks.init_app(app)
    app.register_blueprint(pages.bp)
    pages.live.init_app(app)
    return app


__all__ = ["create_app"]
