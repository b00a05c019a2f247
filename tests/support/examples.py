"""Import a file of `examples/` as a module, for tests that use what an example defines.

`examples/` is not a package (each file is a script a reader runs), so tests load a
file by path: ``load_example("custom_transport").MeteredTransport``. The module is
registered in `sys.modules` under ``examples_<name>`` (dataclasses need that) and loaded
once per process.
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

from support.node import REPO_ROOT

__all__ = ["EXAMPLES", "load_example"]

EXAMPLES = REPO_ROOT / "examples"


def load_example(name: str) -> ModuleType:
    """Return `examples/<name>.py` as a module (its ``__main__`` block does not run).

    Raises:
        FileNotFoundError: there is no such example.
    """
    module_name = f"examples_{name}"
    loaded = sys.modules.get(module_name)
    if loaded is not None:
        return loaded
    path = EXAMPLES / f"{name}.py"
    if not path.is_file():
        raise FileNotFoundError(path)
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module
