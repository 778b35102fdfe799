"""The llama.cpp build check: a build with ggml's AMX kernels is named before its first evaluation.

Default tier (no llama-cpp-python needed): `warn_if_amx` reads the string llama.cpp's
``llama_print_system_info`` returns.
"""

from __future__ import annotations

import logging

import pytest

from rationalyst.lm import llamacpp

WITH_AMX = "CPU : SSE3 = 1 | AVX2 = 1 | AVX512_VNNI = 1 | AVX512_BF16 = 1 | AMX_INT8 = 1 | OPENMP = 1 | REPACK = 1 | "
WITHOUT_AMX = "CPU : SSE3 = 1 | AVX2 = 1 | AVX512_VNNI = 1 | AVX512_BF16 = 1 | OPENMP = 1 | REPACK = 1 | "


@pytest.fixture(autouse=True)
def fresh_process(monkeypatch):
    monkeypatch.setattr(llamacpp, "_amx_warned", False)


def test_an_amx_build_is_warned_about_once_with_the_rebuild_command(caplog):
    with caplog.at_level(logging.WARNING, logger="rationalyst.lm.llamacpp"):
        assert llamacpp.warn_if_amx(WITH_AMX) is True
        assert llamacpp.warn_if_amx(WITH_AMX) is True
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1
    assert "-mno-amx-int8" in warnings[0] and "--force-reinstall" in warnings[0]


def test_a_build_without_amx_is_not_warned_about(caplog):
    with caplog.at_level(logging.WARNING, logger="rationalyst.lm.llamacpp"):
        assert llamacpp.warn_if_amx(WITHOUT_AMX) is False
        assert llamacpp.warn_if_amx(WITHOUT_AMX.replace("AVX2 = 1", "AMX_INT8 = 0")) is False
    assert caplog.records == []
