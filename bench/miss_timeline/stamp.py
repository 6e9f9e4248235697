"""The timeline's stamps put into an exported tree by anchors, not by a patch.

``stamps.patch`` stopped applying whenever a stamped line or its neighbours moved (each pass
had to write its own). Here each stamp is a line inserted before or after the first line that
matches a pattern, at that line's indentation, in the function it belongs to; a stamp whose
anchor is not found is reported and left out (its gaps merge with the neighbours', which the
timeline shows as a missing row), so one moved line never costs the whole run.

    python bench/miss_timeline/stamp.py TREE        # used by run.py (the default, no --patch)
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

STAMP_MODULE = '''import os, time, atexit
_D = os.environ.get("SWIFTSHOT_STAMPS")
_buf = []
def st(name):
    if _D:
        _buf.append(f"{time.monotonic_ns()} {name}\\n")
        if len(_buf) >= 200:
            flush()
def flush():
    if _D and _buf:
        with open(os.path.join(_D, f"{os.getpid()}.txt"), "a") as f:
            f.writelines(_buf)
        _buf.clear()
atexit.register(flush)
'''

ST = "from swiftshot._stamp import st; st({name!r})"
FLUSH = "__import__('swiftshot._stamp', fromlist=['flush']).flush()"

# (file, function whose body holds the anchor ("" = anywhere), anchor regex,
#  "before" | "after" | "first" (first line of the function's body), stamp name, extra code)
ANCHORS: list[tuple[str, str, str, str, str, str]] = [
    ("api/routes_images.py", "async def generations(", r"stages0 = telemetry\.Stages\(\)", "before", "F0_handler", ""),
    ("api/routes_images.py", "async def generations(", r"spec, fmt = to_spec\(req, request\)", "before", "Fa_validated", ""),
    ("api/routes_images.py", "async def generations(", r"spec, fmt = to_spec\(req, request\)", "after", "Fb_spec", ""),
    ("api/routes_images.py", "async def generations(", r"durations = finish\(request,", "before", "F8_finish", ""),
    ("api/routes_images.py", "async def _one(", r"r = await svc\.render\(", "before", "Fc_one", ""),
    ("service.py", "    async def render(", r"spec, key = self\.normalise_and_key\(spec, worker\)", "before", "Fd_render", ""),
    ("service.py", "    async def render(", r"spec, key = self\.normalise_and_key\(spec, worker\)", "after", "Fe_keyed", ""),
    ("service.py", "    async def render(", r"hit = await self\.lookup\(key, stages", "after", "Ff_probed", ""),
    ("service.py", "        async def lead(", r"with self\.gate\.hold\(priority\):", "before", "Fg_lead", ""),
    ("service.py", "    async def generate(", r"", "first", "F1_generate", ""),
    ("service.py", "    async def generate(", r"variants = \[\(variant_key\(key", "before", "F6_submit_back", ""),
    ("service.py", "    async def generate(", r"return _Made\(", "before", "F7_generated", ""),
    ("runtime/worker.py", "    async def submit(", r"self\._start_due\(\)", "before", "Fh_admitted", ""),
    ("runtime/worker.py", "    async def _run(", r"", "first", "Fi_run_task", ""),
    ("runtime/worker.py", "    async def _run(", r"round_trip = self\.clock\(\) - sent", "after", "F5_run_resumed", ""),
    ("runtime/process.py", "    async def submit(", r"p\.lowered = p\.lower_conn is not None", "before", "F2_send", ""),
    ("runtime/process.py", "    async def submit(", r"# A timer, not asyncio\.wait", "before", "F3_sent", ""),
    # the eleventh session's send-first experiment (ProcessExecutor._dispatch, Worker._launch;
    # landed as 2b9d631, reverted: docs/PERFORMANCE.md) sent from _dispatch: on other commits
    # these three are left out
    ("runtime/process.py", "    def _dispatch(", r"p\.lowered = p\.lower_conn is not None", "before", "F2_send", ""),
    ("runtime/process.py", "    def _dispatch(", r"# A timer, not asyncio\.wait", "before", "F3_sent", ""),
    ("runtime/worker.py", "    def _launch(", r"", "first", "Fi_launch", ""),
    ("runtime/process.py", "    def _on_pipe(", r"", "first", "=\"F4_on_pipe_\" + msg[0]", ""),
    ("runtime/process.py", "    def pump(", r"if msg\[0\] == \"batch\":", "before", "W0_recv", ""),
    ("runtime/process.py", "    def run_one(", r"", "first", "W1_run_one", ""),
    ("runtime/executor.py", "def run_items(", r"t0 = time\.perf_counter\(\)", "after", "W1a_work_from", ""),
    ("runtime/executor.py", "def run_items(", r"return BatchResult\(results, infer_s", "before", "W1b_work_to", ""),
    ("runtime/process.py", "    def run_one(", r"result\.worker = f\"\{info\.name\}/process-\{index\}\"", "before", "W2_ran", ""),
    ("runtime/process.py", "    def run_one(", r"send\(\(\"done\", batch_id", "before", "W3_put", ""),
    ("runtime/process.py", "    def run_one(", r"send\(\(\"done\", batch_id", "after", "W4_sent", FLUSH),
]


def _body(lines: list[str], header: str) -> tuple[int, int] | None:
    """(first line of the body, end) of the def that starts with ``header`` (its indentation
    included), the body's end at the first later line indented no deeper than the def."""
    for i, line in enumerate(lines):
        if line.startswith(header):
            indent = len(line) - len(line.lstrip())
            j = i + 1
            while j < len(lines) and not lines[j - 1].rstrip().endswith(":"):
                j += 1  # a signature over several lines
            k = j
            while k < len(lines) and (not lines[k].strip() or
                                      len(lines[k]) - len(lines[k].lstrip()) > indent):
                k += 1
            return j, k
    return None


def stamp_tree(tree: Path) -> list[str]:
    """Insert the stamps under ``tree/src/swiftshot``; the names of those left out."""
    src = tree / "src" / "swiftshot"
    (src / "_stamp.py").write_text(STAMP_MODULE)
    missing: list[str] = []
    placed: set[str] = set()
    by_file: dict[str, list[tuple[str, str, str, str, str]]] = {}
    for f, fn, pat, where, name, extra in ANCHORS:
        by_file.setdefault(f, []).append((fn, pat, where, name, extra))
    for f, entries in by_file.items():
        path = src / f
        lines = path.read_text().splitlines(keepends=True)
        inserts: list[tuple[int, str]] = []
        for fn, pat, where, name, extra in entries:
            span = _body(lines, fn)
            if span is None:
                missing.append(name)
                continue
            a, b = span
            if where == "first":
                a = _past_docstring(lines, a, b)
                at, ref = a, a
            else:
                rx = re.compile(pat)
                hit = next((i for i in range(a, b) if rx.search(lines[i])), None)
                if hit is None:
                    missing.append(name)
                    continue
                ref = hit
                at = hit if where == "before" else _statement_end(lines, hit) + 1
            indent = lines[ref][: len(lines[ref]) - len(lines[ref].lstrip())]
            call = f"from swiftshot._stamp import st; st({name[1:]})" if name.startswith("=") \
                else ST.format(name=name)
            code = call + (f"; {extra}" if extra else "")
            inserts.append((at, f"{indent}{code}\n"))
            placed.add(name)
        for at, text in sorted(inserts, key=lambda x: x[0], reverse=True):
            lines.insert(at, text)
        path.write_text("".join(lines))
    # a name anchored in two places (an old and a new home of the same step) is left out
    # only when neither was found
    return [name for name in dict.fromkeys(missing) if name not in placed]


def _past_docstring(lines: list[str], a: int, b: int) -> int:
    """The first line of a body after its docstring and blank or comment lines."""
    while a < b and (not lines[a].strip() or lines[a].lstrip().startswith("#")):
        a += 1
    if a < b and lines[a].lstrip().startswith('"""'):
        if lines[a].count('"""') >= 2:
            return _past_docstring(lines, a + 1, b)
        a += 1
        while a < b and '"""' not in lines[a]:
            a += 1
        return _past_docstring(lines, a + 1, b)
    return a


def _statement_end(lines: list[str], i: int) -> int:
    """The last line of the statement that starts at line ``i`` (brackets balanced)."""
    depth = 0
    j = i
    while j < len(lines):
        code = lines[j].split("#", 1)[0]
        depth += sum(code.count(c) for c in "([{") - sum(code.count(c) for c in ")]}")
        if depth <= 0:
            return j
        j += 1
    return i


if __name__ == "__main__":
    left = stamp_tree(Path(sys.argv[1]))
    print("left out:", ", ".join(left) if left else "none")
