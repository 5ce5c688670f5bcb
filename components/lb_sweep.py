"""Moved to ops/lb_sweep.py (operator code, not a component). This path stays importable for what was serialized
against it before the move (a stack's state holds the janitor's pickled provider and dill follows module paths):
the old module name is the new module itself, so every name, public or private, resolves to the same object."""

import importlib
import sys

sys.modules[__name__] = importlib.import_module("ops.lb_sweep")
