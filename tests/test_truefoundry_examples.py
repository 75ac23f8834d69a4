"""Published TrueFoundry specs come in as they are (fixtures/truefoundry/, each file names its source).

Every example is loaded and rendered for every cluster profile under
fixtures/clusters/, its workspace_fqn pointed at that cluster. It must render
(its objects checked against the Kubernetes and CRD schemas), or be refused
only for what that cluster lacks (a message naming the cluster), for building
its image (Shipyard has no build pipeline), or for what its header says is a
placeholder in the published text. An example Shipyard can run at all renders
on at least one profile.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from contract.errors import SpecError
from renderer.profiles import load_profile
from renderer.render import render
from renderer.spec import load_specs

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "fixtures" / "truefoundry").glob("*.yaml"))
PROFILES = sorted((ROOT / "fixtures" / "clusters").glob("*.yaml"))

BUILD_REFUSAL = 'image type "build" is not supported yet'
# What each example's header says is a placeholder of the published text, refused as written.
PLACEHOLDERS = {
    "batch-inference-job.yaml": ['env "AWS_ACCESS_KEY_ID": malformed secret reference',
                                 'env "AWS_SECRET_ACCESS_KEY": malformed secret reference'],
}
_WORKSPACE_FQN = re.compile(r"^(workspace_fqn:[ \t]*[\"']?)[a-z0-9-]+:", re.MULTILINE)


def _on_cluster(text: str, cluster: str) -> str:
    return _WORKSPACE_FQN.sub(rf"\g<1>{cluster}:", text)


def _outcome(example: Path, profile_path: Path, kube_schemas) -> list[str]:
    """The problems of one example on one cluster: [] when it renders."""
    profile = load_profile(profile_path)
    try:
        specs = load_specs(_on_cluster(example.read_text(), profile.name), example.name)
        for spec in specs:
            render(spec, profile, kube_schemas)
    except SpecError as exc:
        return [problem.message for problem in exc.problems]
    return []


def test_every_example_names_its_source():
    assert len(EXAMPLES) >= 6
    for example in EXAMPLES:
        header = example.read_text().split("\n", 1)[0]
        assert header.startswith("# Source: "), f"{example.name} does not say where it came from"


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda path: path.stem)
def test_example_renders_or_is_refused_only_for_what_a_cluster_lacks(example: Path, kube_schemas):
    placeholders = PLACEHOLDERS.get(example.name, [])
    rendered_on = []
    for profile_path in PROFILES:
        profile = load_profile(profile_path)
        problems = _outcome(example, profile_path, kube_schemas)
        if not problems:
            rendered_on.append(profile.name)
        for message in problems:
            allowed = (BUILD_REFUSAL in message or f'cluster "{profile.name}"' in message
                       or any(message.startswith(text) for text in placeholders))
            assert allowed, f"{example.name} on {profile.name}: {message}"
    builds = re.search(r"^image:\n  type: build$", example.read_text(), re.MULTILINE)
    if not builds and not placeholders:
        assert rendered_on, f"{example.name} renders on no cluster profile"


def test_a_build_example_is_refused_for_the_build_alone(kube_schemas):
    """An exported spec that builds its image is refused with one message saying so, not a list of
    "unknown field" errors for build_spec and build_source."""
    example = ROOT / "fixtures" / "truefoundry" / "deep-agent-backend.yaml"
    eks = next(path for path in PROFILES if path.stem == "eks")
    problems = _outcome(example, eks, kube_schemas)
    assert problems and all(BUILD_REFUSAL in message for message in problems), problems
