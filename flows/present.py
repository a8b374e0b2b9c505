"""Plain-text views of stored experiments for the terminal (`towerflow run`, `towerflow results`)."""

from __future__ import annotations

from typing import Any

from trainer.quality import below_baseline_words, below_popularity_ks


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    cells = [header, *[[str(value) for value in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  ".join(value.ljust(width) for value, width in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return lines


def _number(value: Any, digits: int = 4) -> str:
    return value if isinstance(value, str) else f"{value:.{digits}f}"


def render_experiment_list(experiments: list[dict[str, Any]]) -> str:
    if not experiments:
        return "no experiments yet: try `towerflow run examples/movielens.yaml`"
    rows = [[e["id"], e["name"], e["status"], e["config_hash"], e["updated_at"][:19], e["message"] or ""]
            for e in experiments]
    return "\n".join(_table(["id", "name", "status", "hash", "updated", "message"], rows))


def render_experiment(detail: dict[str, Any]) -> str:
    """One experiment: header, findings, the attempt lineage, and recall beside the popularity baseline."""
    experiment = detail["experiment"]
    lines = [
        f"experiment {experiment['id']} {experiment['name']!r} [{experiment['status']}]  hash {experiment['config_hash']}",
    ]
    if experiment["message"]:
        lines.append(f"  {experiment['message']}")
    if detail["findings"]:
        lines += ["", "findings:"]
        lines += [f"  {f['severity']:<7} {f['field']}: {f['message']}" for f in detail["findings"]]
    if detail["attempts"]:
        lines += ["", "attempts:"]
        rows = [[a["number"], f"{a['learning_rate']:g}", a["status"], a["epochs_run"], a["reason"]]
                for a in detail["attempts"]]
        lines += ["  " + line for line in _table(["#", "learning rate", "status", "epochs", "reason"], rows)]
    if detail["recall"]:
        first = detail["recall"][0]
        lines += ["", f"recall over {first['n_candidates']} unique products "
                      f"({first['n_candidate_rows_before_dedup']} rows before de-duplication), "
                      f"{first['n_queries']} buyers, exclude_seen={first['exclude_seen']}:"]
        rows = [[f"@{r['k']}", _number(r["value"]), _number(r["baseline"]), _lift(r["value"], r["baseline"])]
                for r in detail["recall"]]
        lines += ["  " + line for line in _table(["k", "model", "popularity", "lift"], rows)]
        below = below_popularity_ks({r["k"]: float(r["value"]) for r in detail["recall"]},
                                    {r["k"]: float(r["baseline"]) for r in detail["recall"]})
        if below:
            lines.append(f"  {below_baseline_words(below)}: not worth serving there")
    return "\n".join(lines)


def _lift(model: Any, baseline: Any) -> str:
    if isinstance(model, str) or isinstance(baseline, str) or not baseline:
        return "-"
    return f"{model / baseline:.2f}x"
