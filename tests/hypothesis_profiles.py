"""Hypothesis settings for the property-based and malformed-call tests.

Two profiles, chosen with the environment variable CONVNET_HYPOTHESIS_PROFILE:

    default  a few examples per test, derandomized (the same examples on every run,
             so `make test` is repeatable and fits the suite's time budget)
    slow     many more examples, drawn afresh on each run (a search for new bugs):
                 CONVNET_HYPOTHESIS_PROFILE=slow .venv/bin/python -m pytest -q \\
                     tests/test_properties.py tests/test_malformed.py

No example database is written (database=None): a failure prints the falsifying
example, which is what to paste into a regression test.
"""

import os

from hypothesis import HealthCheck, settings

_COMMON = dict(
    deadline=None,         # the first example of a test pays Numba's cache load
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                           HealthCheck.filter_too_much],
)

settings.register_profile("convnet-default", max_examples=30, derandomize=True, **_COMMON)
settings.register_profile("convnet-slow", max_examples=1000, **_COMMON)

PROFILE_NAME = os.environ.get("CONVNET_HYPOTHESIS_PROFILE", "default")
if PROFILE_NAME not in ("default", "slow"):
    raise ValueError(f"CONVNET_HYPOTHESIS_PROFILE must be 'default' or 'slow', got {PROFILE_NAME!r}")


def profile(scale=1.0):
    """The chosen profile's settings, with max_examples multiplied by `scale`
    (cheap tests take more examples, a gradient check fewer)."""
    base = settings.get_profile(f"convnet-{PROFILE_NAME}")
    return settings(base, max_examples=max(1, int(base.max_examples * scale)))
