"""nep.util.registry: names, a one-line refusal with a did-you-mean, and lazy imports."""

from __future__ import annotations

import sys

import pytest

from nep.util.registry import Registry


def test_names_membership_and_lazy_get():
    registry = Registry("things.kind", {"dumps": "json:dumps", "colorsys": "colorsys:rgb_to_hsv"})
    assert registry.names() == ["dumps", "colorsys"] and "dumps" in registry and "loads" not in registry
    sys.modules.pop("colorsys", None)
    assert registry.get("dumps")({"a": 1}) == '{"a": 1}'
    assert "colorsys" not in sys.modules  # a name's module is imported only when that name is used
    assert registry.get("colorsys").__name__ == "rgb_to_hsv" and "colorsys" in sys.modules


def test_an_unknown_name_is_one_line_naming_the_param():
    registry = Registry("generate.predictors.p.kind", {"identity": "json:dumps", "propagate": "json:loads"})
    with pytest.raises(ValueError) as info:
        registry.get("identiy")
    assert str(info.value) == ("generate.predictors.p.kind: unknown 'identiy' (choose one of identity, propagate); "
                               "did you mean 'identity'?")
    with pytest.raises(ValueError, match=r"unknown 'zzz' \(choose one of identity, propagate\)$"):
        registry.check("zzz")
