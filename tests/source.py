"""Parsing the project's own source in tests, safe from a CPython 3.11 race.

CPython 3.11 keeps one AST recursion counter per interpreter (see cpython gh-106905): when another thread works with
ASTs at the same moment (a likely one here: werkzeug builds URL rules from ASTs inside the moto servers' threads),
`ast.parse` can raise `SystemError: AST constructor recursion depth mismatch` on perfectly valid source. The race is
transient, so one retry parses; any real syntax error raises again, unchanged."""

import ast


def parse(source: str) -> ast.Module:
    try:
        return ast.parse(source)
    except SystemError as error:
        if "recursion depth mismatch" not in str(error):
            raise
        return ast.parse(source)
