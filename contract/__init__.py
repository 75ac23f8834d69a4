"""What every layer of Shipyard agrees on, and nothing else; it imports nothing of Shipyard.

- ``contract.errors``: the one exception tree, each error with its stable code
  (the web app answers it as HTTP status, the command line as an exit code,
  each in one table of its own).
- ``contract.labels``: the labels and annotations Shipyard puts on what it
  renders, and the ones the agent and the status ingest match on.
- ``contract.layout``: the cluster repository's paths and file names, and the
  ``<workspace>.<app>`` name of an app's ArgoCD Application, built and parsed.
- ``contract.addons``: which CRDs each cluster addon installs, and the CRD of
  each custom kind Shipyard renders.
- ``contract.protocol``: the wire protocol between a cluster's agent and the
  control plane, with its limits.

Every other package may import these modules; they import only the standard
library, so the agent, the renderer and the command line's light start pay
nothing for them.
"""
