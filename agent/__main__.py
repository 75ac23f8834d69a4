"""``python -m agent``: the agent process, settings from the environment (agent.settings)."""

import sys

from agent.main import main

sys.exit(main())
