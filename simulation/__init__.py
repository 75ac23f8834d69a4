"""The simulated compute plane: ArgoCD and a cluster played in-process, for demos, end-to-end and load tests.

No Kubernetes API server, ArgoCD or container runtime runs on these machines,
so this package plays their part, and says so wherever it shows (heartbeats
carry ``simulated: true`` and agent version ``simulated-<version>``, nodes are
named ``simulated-node-<n>``, log lines start with ``[simulated]``).

What is real: it reads the cluster repository exactly as ArgoCD would, with
``git fetch`` over smart HTTP from ``/git/<tenant>/<cluster>.git`` and the
cluster's read token, polling (by default every 3 minutes, as ArgoCD does) and
at once on the refresh the control plane sends after each commit; and it
reports through the agent's own code (agent.report: Tracker, Outbox,
Reporter; agent.summaries; agent.backoff), so the control plane sees the very
protocol, endpoints and compact states a real agent sends.

What is simulated: each Application's sync and its workload's rollout, with
faults switched on per app.

It lives outside ``agent/`` because it is not the agent: the agent's image
ships ``agent/`` alone, and the agent never imports this package. It imports
the agent, never gitops or webapp.

=====================  =======================================================
module                 what it is
=====================  =======================================================
``settings``           ``SimulationSettings``: one simulated cluster
``errors``             ``SimulationError``
``switches``           fault switches, in code or a file re-read on change
``repository``         the cluster repository as ArgoCD reads it (git)
``workloads``          one app's state and the objects it shows
``cluster``            ``SimulatedCluster``: ArgoCD's loop, the state machine,
                       the agent's side (reports, heartbeats, commands)
``running``            threads: one cluster for ``shipyard up``, many for
                       load tests
=====================  =======================================================
"""

from simulation.cluster import AGENT_VERSION, SimulatedCluster, states_by_kind
from simulation.errors import SimulationError
from simulation.repository import AppSource, GitMirror
from simulation.running import run_many, start_in_background
from simulation.settings import ARGOCD_POLL_SECONDS, SimulationSettings
from simulation.switches import POD_FAULTS, Fault, Switches

__all__ = [
    "AGENT_VERSION",
    "ARGOCD_POLL_SECONDS",
    "POD_FAULTS",
    "SimulationSettings",
    "SimulationError",
    "Fault",
    "Switches",
    "AppSource",
    "GitMirror",
    "SimulatedCluster",
    "run_many",
    "start_in_background",
    "states_by_kind",
]
