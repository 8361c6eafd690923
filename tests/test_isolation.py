"""The autouse fixture in conftest.py isolates tests: whatever a test does to the
backend, floatx or layer-name counters, the next test starts from the suite's
starting state, in any order; and a leak from a module-scoped fixture, which the
per-test restore cannot undo in time, fails the next test with a message naming it.

Each case runs a small suite in a subprocess (pytester) with this conftest."""

import shutil
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent

CHANGE = '''
import convnet as cn
from convnet import layers as L

def test_changes_the_global_state():
    other = next(b for b in cn.available_backends() if b != cn.get_backend())
    cn.set_backend(other)
    cn.set_floatx("float64")
    L.Dense(2), L.Dense(2)
'''

CHECK = '''
import convnet as cn
from convnet import layers as L
from conftest import SESSION_BACKEND

def test_sees_the_starting_state():
    assert cn.get_backend() == SESSION_BACKEND
    assert cn.get_floatx() == "float32"
    assert L.Dense(2).name == "dense"
'''

NO_FIXTURE = '''
import pytest

@pytest.fixture(autouse=True)
def _isolated_global_state():      # overrides conftest's: no isolation
    yield
'''

LEAKING_MODULE_FIXTURE = '''
import pytest
import convnet as cn

@pytest.fixture(scope="module", autouse=True)
def leaks():
    cn.set_backend(next(b for b in cn.available_backends() if b != cn.get_backend()))

def test_innocent():
    pass
'''


@pytest.fixture
def suite(pytester):
    if len([b for b in ("numpy", "numba") if b in __import__("convnet").available_backends()]) < 2:
        pytest.skip("needs two CPU backends to switch between")
    for name in ("conftest.py", "strict_cupy.py"):
        shutil.copy(HERE / name, pytester.path / name)
    return pytester


@pytest.mark.parametrize("order", [("test_a.py", "test_b.py"), ("test_b.py", "test_a.py")])
def test_no_state_crosses_from_one_test_to_the_next(suite, order):
    suite.makepyfile(test_a=CHANGE, test_b=CHECK)
    result = suite.runpytest_subprocess("-p", "no:cacheprovider", *order)
    result.assert_outcomes(passed=2)


def test_without_the_fixture_the_state_leaks(suite):
    """The control: the same two tests fail when the fixture is switched off,
    so the passing case above is the fixture's doing."""
    suite.makepyfile(test_a=CHANGE + NO_FIXTURE, test_b=CHECK + NO_FIXTURE)
    result = suite.runpytest_subprocess("-p", "no:cacheprovider", "test_a.py", "test_b.py")
    result.assert_outcomes(passed=1, failed=1)


def test_a_leak_from_a_module_fixture_fails_the_test_and_names_it(suite):
    suite.makepyfile(test_leak=LEAKING_MODULE_FIXTURE)
    result = suite.runpytest_subprocess("-p", "no:cacheprovider", "test_leak.py")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*global state leaked into this test*backend*"])
