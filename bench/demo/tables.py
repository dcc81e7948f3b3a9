"""The markdown the demo's bench scripts write beside what they print (`--table FILE`), for README to show as is:
the machine and threads a run had, and tables with a figure's mean and range over seeds."""

import os
import platform
import time


def machine(threads: str) -> str:
    """One line: when, on what machine, with how many torch threads, and the load at the end of the run."""
    with open("/proc/meminfo") as f:
        mem_gib = int(f.readline().split()[1]) / 2**20
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (f"{time.strftime('%Y-%m-%d')}, {platform.machine()}, {os.cpu_count()} cores, {mem_gib:.0f} GiB, "
            f"{threads}; load average at the end {load}")  # fmt: skip


def markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows]) + "\n"


def spread(values: list[float], percent: bool = False, signed: bool = False) -> str:
    """`mean (min to max)`, or the one value when there is one."""

    def fmt(v: float) -> str:
        text = f"{100 * v:.1f}" if percent else f"{v:+.3f}" if signed else f"{v:.3f}"
        return text.replace("-0.000", "+0.000").replace("-", "−")  # a typographic minus; no negative zero

    unit = "%" if percent else ""
    mean = sum(values) / len(values)
    if len(values) == 1:
        return fmt(mean) + unit
    return f"{fmt(mean)}{unit} ({fmt(min(values))} to {fmt(max(values))})"
