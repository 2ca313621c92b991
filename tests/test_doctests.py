"""The examples in docstrings run as written."""

import doctest
import importlib

import pytest

MODULES = [
    "sesim.training.chores",
    "sesim.losses.precision",
    "sesim.losses.spatial",
    "sesim.losses.info_nce",
    "sesim.losses.adversarial",
    "sesim.evaluation.layout",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0 and result.failed == 0
