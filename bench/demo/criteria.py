"""The demo's criteria (issue 21) on one seed's evaluation, and the per-seed table that `bench/demo/seeds.py` and
`bench/gpu/demo.py` print and write: held-out problems, greedy decoding, the SFT model against the scripted
reference (the compressor's own rewrite that fits each budget)."""

from tables import markdown, spread  # bench/demo/tables.py, beside this file

MIN_SPEARMAN = 0.9
MIN_ACCURACY_GAIN = 0.40  # best budget's accuracy over the smallest budget's
MAX_OVER_BUDGET = 0.10  # at the budgets SFT trained on
MAX_RELERR_GAP = 0.05  # mean relative error above the scripted reference's, at every budget
CRITERIA = ("rho", "accuracy gain", "over budget", "relative error")


def seed_row(seed: int, sft_s: float, metrics: list[dict], rho: float | None, holdout: list[int], model: str = "sft") -> dict:
    """One seed's figures and its pass or fail per criterion. `metrics`: `eval_metrics` rows (model, budget,
    pass1_mean, over_budget, relerr_mean) of `model` and of `reference`; `rho`: the model's Spearman(length, budget)."""
    ours = {m["budget"]: m for m in metrics if m["model"] == model}
    reference = {m["budget"]: m["relerr_mean"] for m in metrics if m["model"] == "reference"}
    budgets = sorted(ours)
    trained = [b for b in budgets if b not in holdout]
    row = {
        "seed": seed,
        "sft_s": sft_s,
        "spearman": float("nan") if rho is None else rho,  # None: every length equal (a collapsed student)
        "acc_small": ours[budgets[0]]["pass1_mean"],
        "acc_best": max(m["pass1_mean"] for m in ours.values()),
        "over_max": max(ours[b]["over_budget"] for b in trained),
        "relerr_gap": max(ours[b]["relerr_mean"] - reference[b] for b in budgets),
        "per_budget": {b: {"acc": ours[b]["pass1_mean"], "over": ours[b]["over_budget"],
                           "gap": ours[b]["relerr_mean"] - reference[b]} for b in budgets},  # fmt: skip
        "holdout": list(holdout),
    }
    row["checks"] = [row["spearman"] >= MIN_SPEARMAN, row["acc_best"] - row["acc_small"] >= MIN_ACCURACY_GAIN,
                     row["over_max"] <= MAX_OVER_BUDGET, row["relerr_gap"] <= MAX_RELERR_GAP]  # fmt: skip
    return row


def print_table(rows: list[dict]) -> None:
    print(f"{'seed':>4} {'sft s':>7} {'rho':>6} {'acc@min':>7} {'acc@best':>8} {'over max':>8} {'rel gap':>7}  "
          f"rho gain over rel  all")  # fmt: skip
    for r in rows:
        marks = "   ".join("P" if ok else "F" for ok in r["checks"])
        print(f"{r['seed']:>4} {r['sft_s']:7.0f} {r['spearman']:6.3f} {r['acc_small']:7.3f} {r['acc_best']:8.3f} "
              f"{r['over_max']:8.3f} {r['relerr_gap']:+7.3f}  {marks}   {'PASS' if all(r['checks']) else 'FAIL'}")  # fmt: skip
    if rows:
        passed = sum(all(r["checks"]) for r in rows)
        secs = [r["sft_s"] for r in rows]
        print(f"{passed} of {len(rows)} seeds pass; SFT {sum(secs) / len(secs):.0f} s mean ({min(secs):.0f}-{max(secs):.0f})")


def table_markdown(rows: list[dict], title: str, machine_line: str) -> str:
    """The table printed, and per budget the mean (min to max) over the seeds, as markdown for README."""
    rows = sorted(rows, key=lambda r: r["seed"])
    per_seed = [[str(r["seed"]), f"{r['sft_s']:.0f}", f"{r['spearman']:.3f}", f"{100 * r['acc_small']:.1f}%",
                 f"{100 * r['acc_best']:.1f}%", f"{100 * r['over_max']:.1f}%", f"{r['relerr_gap']:+.3f}",
                 "pass" if all(r["checks"]) else "FAIL: " + ", ".join(n for n, ok in zip(CRITERIA, r["checks"]) if not ok)]
                for r in rows]  # fmt: skip
    budgets = sorted(rows[0]["per_budget"])
    label = {b: f"{b} (unseen)" if b in rows[0]["holdout"] else str(b) for b in budgets}
    figures = [
        ["SFT accuracy", *(spread([r["per_budget"][b]["acc"] for r in rows], percent=True) for b in budgets)],
        ["SFT over budget", *(spread([r["per_budget"][b]["over"] for r in rows], percent=True) for b in budgets)],
        ["relative error − reference's", *(spread([r["per_budget"][b]["gap"] for r in rows], signed=True) for b in budgets)],
    ]  # fmt: skip
    passed = sum(all(r["checks"]) for r in rows)
    return "\n".join([
        f"{title}: {passed} of {len(rows)} seeds meet every criterion.",
        f"Machine: {machine_line}.", "",
        markdown(["seed", "SFT s", "ρ", "accuracy at the smallest budget", "at the best", "most over budget (trained budgets)",
                  "relative error − reference's (worst budget)", "criteria"], per_seed),  # fmt: skip
        f"Per budget, mean (min to max) over the {len(rows)} seeds:", "",
        markdown(["budget", *(label[b] for b in budgets)], figures),
    ])  # fmt: skip
