"""The dashboard: server-rendered pages over the same services and authorization as the API.

- ``session``: logging in and out, the caller's account;
- ``views``: the overview, the apps table, an app's page, a version's spec, a diff of two versions;
- ``actions``: deploy, roll back, promote, delete, restart, refresh, run a job, read logs;
- ``admin``: users, role bindings, API tokens, clusters and their install steps, workspaces, the audit log;
- ``spec_repos``: the admin pages of spec repositories: registering one, its webhook, settings and syncs;
- ``webhooks``: the admin pages of status webhooks: subscribing, state, the secret, deliveries;
- ``live``: what keeps an open page current without reloading it, and the pages' CSS and JS.

Pages read through gitops (``gitops.dashboard`` for what only the pages show) with the
caller's principal, exactly as the API does; a page someone may not read is a 404 or 403
page, never a partial one. Forms carry a CSRF token (flask-wtf); actions the pages offer
call the JSON API with the session and its CSRF token (webapp.auth), so they are
authorized exactly like the API.
"""

from webapp.pages import actions, admin, live, session, spec_repos, views, webhooks  # noqa: F401 - each registers its routes on the blueprint
from webapp.pages.blueprint import bp

__all__ = ["bp"]
