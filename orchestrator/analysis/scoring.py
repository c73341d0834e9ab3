"""The migration-risk score of a file, out of 60, and the table it comes from.

The seed scored ModelManagerAgent 55/60 with factors it did not write down; this
module writes them down, so that an operator who disagrees with a score can point
at the threshold they disagree with.

Risk score
----------
Six factors, 0-10 points each, 60 at most. Each measure takes the points of the
highest threshold it reaches. The table, as `scoring_table()` prints it:

factor           measure, threshold for points:      2     4     6     8    10
file size        size in KB (1024 bytes)             5    20    50   100   200
code complexity  code lines                        150   500  1000  2000  3000
                 or largest function complexity     10    15    25    40    60
sockets          ZMQ + raw socket creation sites     1     5    10    20    40
threads          thread/process sites                1     3     6    12    20
GPU operations   GPU operation sites                 1     5    10    20    30
BaseAgent gaps   no BaseAgent class: 10; otherwise missing super().__init__: 6,
                 missing _get_health_status: 4
syntax errors    only for a file that does not parse: 1 error: 6, 2: 8, 5: 10
level            LOW <= 15 < MEDIUM <= 30 < HIGH <= 45 < CRITICAL

Code complexity takes the higher of its two rows. Socket *operations* (bind,
connect, send, recv, close) are reported but not scored: they grow with the
sockets they use, and scoring both would count each socket several times.

A file that does not parse gets a seventh factor, "syntax errors": it cannot be
imported as it is, so any migration of it starts with a repair, and the rest of
its figures are a lower bound (they cover what the tolerant parser recovered).
The score stays capped at 60 so that scores remain comparable with the seed's.

Worked example, a ModelManagerAgent-like file (227 KB, 3557 code lines, 53
sockets, 29 threads, heavy GPU use, BaseAgent compliant): 10 + 10 + 10 + 10 + 10 +
0 = 50/60, CRITICAL. A BaseAgent-compliant file that parses cannot score more than
50: the last 10 points are reserved for agents that are not BaseAgents yet (or do
not parse).
"""

from __future__ import annotations

from typing import Any

RISK_MAX = 60
FACTOR_MAX = 10

# (threshold, points), highest first: the measure gets the points of the first
# threshold it reaches, else 0. Keep in step with the table in the docstring
# (a test checks that `scoring_table()` is in it).
SIZE_KB_STEPS: tuple[tuple[int, int], ...] = ((200, 10), (100, 8), (50, 6), (20, 4), (5, 2))
CODE_LINE_STEPS: tuple[tuple[int, int], ...] = (
    (3000, 10), (2000, 8), (1000, 6), (500, 4), (150, 2),
)
FUNCTION_COMPLEXITY_STEPS: tuple[tuple[int, int], ...] = (
    (60, 10), (40, 8), (25, 6), (15, 4), (10, 2),
)
SOCKET_STEPS: tuple[tuple[int, int], ...] = ((40, 10), (20, 8), (10, 6), (5, 4), (1, 2))
THREAD_STEPS: tuple[tuple[int, int], ...] = ((20, 10), (12, 8), (6, 6), (3, 4), (1, 2))
GPU_STEPS: tuple[tuple[int, int], ...] = ((30, 10), (20, 8), (10, 6), (5, 4), (1, 2))
SYNTAX_ERROR_STEPS: tuple[tuple[int, int], ...] = ((5, 10), (2, 8), (1, 6))
GAP_NOT_BASE_AGENT = 10
GAP_NO_SUPER_INIT = 6
GAP_NO_HEALTH = 4
# (highest score, level), in order; above the last is CRITICAL.
LEVELS: tuple[tuple[int, str], ...] = ((15, "LOW"), (30, "MEDIUM"), (45, "HIGH"))
CRITICAL = "CRITICAL"


def scoring_table() -> str:
    """The scoring thresholds as a text table (the same table as in this module's docstring)."""

    def row(label: str, measure: str, steps: tuple[tuple[int, int], ...]) -> str:
        cells = "".join(f"{threshold:>6}" for threshold, _ in reversed(steps))
        return f"{label:<17}{measure:<31}{cells}".rstrip()

    levels = " < ".join(f"{name} <= {top}" for top, name in LEVELS)
    syntax = ", ".join(f"{count}{' error' if count == 1 else ''}: {points}"
                       for count, points in reversed(SYNTAX_ERROR_STEPS))
    return "\n".join([
        f"{'factor':<17}{'measure, threshold for points:':<31}"
        + "".join(f"{p:>6}" for p in (2, 4, 6, 8, 10)),
        row("file size", "size in KB (1024 bytes)", SIZE_KB_STEPS),
        row("code complexity", "code lines", CODE_LINE_STEPS),
        row("", "or largest function complexity", FUNCTION_COMPLEXITY_STEPS),
        row("sockets", "ZMQ + raw socket creation sites", SOCKET_STEPS),
        row("threads", "thread/process sites", THREAD_STEPS),
        row("GPU operations", "GPU operation sites", GPU_STEPS),
        f"{'BaseAgent gaps':<17}no BaseAgent class: {GAP_NOT_BASE_AGENT}; otherwise missing "
        f"super().__init__: {GAP_NO_SUPER_INIT},",
        f"{'':<17}missing _get_health_status: {GAP_NO_HEALTH}",
        f"{'syntax errors':<17}only for a file that does not parse: {syntax}",
        f"{'level':<17}{levels} < {CRITICAL}",
    ])


def points(value: int, steps: tuple[tuple[int, int], ...]) -> int:
    for threshold, pts in steps:
        if value >= threshold:
            return pts
    return 0


def level(score: int) -> str:
    for top, name in LEVELS:
        if score <= top:
            return name
    return CRITICAL


def risk_score(*, size_bytes: int, code_lines: int, max_function_complexity: int,
               sockets: int, threads: int, gpu_operations: int, inherits: bool,
               super_init: bool, health_method: bool, syntax_errors: int = 0,
               first_syntax_error: str = "", unparsed_lines: int = 0) -> dict[str, Any]:
    """The risk section of a report, from the measures alone (see the module's table)."""
    size_kb = size_bytes // 1024
    size_points = points(size_kb, SIZE_KB_STEPS)
    line_points = points(code_lines, CODE_LINE_STEPS)
    func_points = points(max_function_complexity, FUNCTION_COMPLEXITY_STEPS)
    if func_points > line_points:
        complexity_reason = (f"largest function complexity {max_function_complexity} "
                             f"(code lines {code_lines} alone: {line_points})")
    else:
        complexity_reason = (f"{code_lines} code lines (largest function complexity "
                             f"{max_function_complexity})")
    if not inherits:
        gap_points, gap_reason = GAP_NOT_BASE_AGENT, "no class derives from BaseAgent"
    else:
        missing = []
        gap_points = 0
        if not super_init:
            gap_points += GAP_NO_SUPER_INIT
            missing.append(f"__init__ does not call super().__init__ (+{GAP_NO_SUPER_INIT})")
        if not health_method:
            gap_points += GAP_NO_HEALTH
            missing.append(f"no _get_health_status (+{GAP_NO_HEALTH})")
        gap_reason = "; ".join(missing) or "BaseAgent compliant"
    factors = [
        _factor("file size", size_points, f"{size_kb} KB"),
        _factor("code complexity", max(line_points, func_points), complexity_reason),
        _factor("sockets", points(sockets, SOCKET_STEPS), f"{sockets} socket creation sites"),
        _factor("threads", points(threads, THREAD_STEPS), f"{threads} thread/process sites"),
        _factor("GPU operations", points(gpu_operations, GPU_STEPS),
                f"{gpu_operations} GPU operation sites"),
        _factor("BaseAgent gaps", gap_points, gap_reason),
    ]
    if syntax_errors:
        plural = "s" if syntax_errors != 1 else ""
        reason = f"does not parse: {syntax_errors} syntax error{plural}"
        if first_syntax_error:
            reason += f", first {first_syntax_error}"
        reason += f"; {unparsed_lines} code lines could not be read" if unparsed_lines \
            else "; every code line was still read"
        factors.append(_factor("syntax errors", points(syntax_errors, SYNTAX_ERROR_STEPS),
                               reason))
    total = sum(f["points"] for f in factors)
    score = min(total, RISK_MAX)
    risk: dict[str, Any] = {"score": score, "max": RISK_MAX, "level": level(score),
                            "factors": factors}
    if total > RISK_MAX:
        risk["capped_from"] = total
    return risk


def _factor(name: str, pts: int, reason: str) -> dict[str, Any]:
    return {"name": name, "points": pts, "max": FACTOR_MAX, "reason": reason}
