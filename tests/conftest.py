"""Shared test set-up: Hypothesis profiles and headless rendering."""

import os

from hypothesis import HealthCheck, settings

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")

# CI replays the same examples every run (derandomize), so a red build is reproducible;
# locally Hypothesis explores new examples each run. DQNKIT_HYPOTHESIS_PROFILE overrides.
settings.register_profile(
    "ci",
    derandomize=True,
    max_examples=200,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", max_examples=100, deadline=None)
settings.load_profile(
    os.environ.get("DQNKIT_HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev")
)
