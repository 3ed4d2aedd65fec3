"""A variant's process: ``python -m bench.child`` reads its spec on stdin (see :func:`bench.harness.run_once`).

With ``BENCH_KPL_ROOT`` set (``python -m bench.ab``), ``kpl`` is imported from that directory, ahead of
the editable install (whose import hook PYTHONPATH cannot override), so two kpl trees can be compared.
"""

import importlib.util
import os
import sys
from pathlib import Path


def _import_kpl_from(root: Path) -> None:
    package = root / "kpl"
    spec = importlib.util.spec_from_file_location("kpl", package / "__init__.py",
                                                  submodule_search_locations=[str(package)])
    if spec is None or spec.loader is None:
        raise ImportError(f"no kpl package under {root}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["kpl"] = module
    spec.loader.exec_module(module)


if __name__ == "__main__":
    if os.environ.get("BENCH_KPL_ROOT"):
        _import_kpl_from(Path(os.environ["BENCH_KPL_ROOT"]))
    from bench.harness import child_main

    sys.exit(child_main())
