"""Does an uploaded result really parse as a PDF? Checked in a child process with hard limits.

A hostile PDF must not hang or exhaust the worker, so pypdf never runs in the worker's own process:
``check_pdf`` starts ``python -m file_processor.pdf_check``, hands it the bytes on stdin and reads a one-line JSON
verdict. The child
- gets an address-space limit (RLIMIT_AS, ``memory_mb``) and a CPU-time limit before pypdf is even imported: a
  decompression bomb ends in MemoryError (or the kernel's SIGKILL), never in the pod's OOM kill;
- is killed after ``timeout`` seconds of wall-clock time (the parent's ``subprocess.run`` timeout);
- runs with an environment of PATH and PYTHONPATH only: no AWS or database setting reaches the parser.
pypdf's own limits apply inside (75 MB per decoded stream, bounded xref recovery). What counts as readable: pypdf
opens it (lenient about small defects real lab printers produce, not about structure), it is not encrypted (a patient
could not open it), it has 1 to ``max_pages`` pages, and every page's content stream decodes.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

APPS_DIR = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str
    """`ok`, or why the file is refused: `not_pdf`, `unreadable`, `encrypted`, `no_pages`, `too_many_pages`,
    `too_large`, `too_complex` (out of memory), `timeout`."""
    pages: int = 0


def check_pdf(data: bytes, *, max_pages: int, timeout: float, memory_mb: int) -> Verdict:
    """The verdict on ``data``. Raises OSError only when the child cannot be started (the worker's problem, retried)."""
    if not data.startswith(b"%PDF-"):
        return Verdict(False, "not_pdf")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(APPS_DIR), "PYTHONDONTWRITEBYTECODE": "1"}
    command = [
        sys.executable,
        "-m",
        "file_processor.pdf_check",
        f"--max-pages={max_pages}",
        f"--memory-mb={memory_mb}",
        f"--cpu-seconds={max(1, int(timeout))}",
    ]
    try:
        done = subprocess.run(command, input=data, capture_output=True, timeout=timeout, env=env, check=False)
    except subprocess.TimeoutExpired:  # run() has killed the child
        return Verdict(False, "timeout")
    try:
        answer = json.loads(done.stdout.decode("utf-8").strip().splitlines()[-1])
        return Verdict(bool(answer["ok"]), str(answer["reason"]), int(answer.get("pages", 0)))
    except (ValueError, KeyError, IndexError):
        # No verdict: killed by a signal (SIGKILL past RLIMIT_AS, SIGXCPU past the CPU limit) or crashed inside the
        # parser. Either way the file made the parser fail.
        return Verdict(False, "too_complex" if done.returncode < 0 else "unreadable")


def _inspect(data: bytes, max_pages: int) -> Verdict:
    """Runs in the child, under its limits."""
    import logging

    import pypdf
    from pypdf.errors import PyPdfError

    logging.disable(logging.WARNING)  # pypdf warns on stderr about every repaired defect; nobody reads them here
    try:
        reader = pypdf.PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            return Verdict(False, "encrypted")
        pages = len(reader.pages)
        if pages == 0:
            return Verdict(False, "no_pages")
        if pages > max_pages:
            return Verdict(False, "too_many_pages", pages)
        for page in reader.pages:
            contents = page.get_contents()
            if contents is not None:
                contents.get_data()
    except MemoryError:
        return Verdict(False, "too_complex")
    except RecursionError:
        return Verdict(False, "unreadable")
    except (PyPdfError, ValueError, TypeError, KeyError, AttributeError, IndexError, AssertionError, OSError):
        # pypdf raises its own errors for what it recognises as broken, and plain ones from deeper inside on input
        # it did not foresee: any of them means the file does not parse.
        return Verdict(False, "unreadable")
    return Verdict(True, "ok", pages)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Check a PDF read from stdin; print a JSON verdict.")
    parser.add_argument("--max-pages", type=int, required=True)
    parser.add_argument("--memory-mb", type=int, required=True)
    parser.add_argument("--cpu-seconds", type=int, required=True)
    args = parser.parse_args(argv)
    data = sys.stdin.buffer.read()
    # Limits first, the parser after: nothing the file makes pypdf do escapes them.
    limit = args.memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    resource.setrlimit(resource.RLIMIT_CPU, (args.cpu_seconds, args.cpu_seconds + 1))
    verdict = _inspect(data, args.max_pages)
    print(json.dumps({"ok": verdict.ok, "reason": verdict.reason, "pages": verdict.pages}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
