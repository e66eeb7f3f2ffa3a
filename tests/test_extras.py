"""A missing optional extra is an error that names what needed it and the extra that installs it."""

from __future__ import annotations

import sys

import pytest

from realesr_core import RealESRError
from realesr_core.extras import EXTRAS, import_extra


def test_an_installed_module_is_returned() -> None:
    assert import_extra("json", "video", "parsing").dumps([]) == "[]"


@pytest.mark.parametrize("extra", list(EXTRAS))
def test_a_missing_module_names_the_extra(monkeypatch: pytest.MonkeyPatch, extra: str) -> None:
    monkeypatch.setitem(sys.modules, "not_installed_here", None)  # `import` now fails as for a missing package
    with pytest.raises(RealESRError, match=rf"^doing it needs {EXTRAS[extra][0]}: pip install 'realesr\[{extra}\]'"):
        import_extra("not_installed_here", extra, "doing it")
