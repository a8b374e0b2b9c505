"""Is a model worth serving? recall@k against popularity, k by k (pure: no TensorFlow, no Prefect).

A model that beats popularity only at the largest k still loses where users look (recall@5, @10),
so every reported k where the model does not beat popularity (model <= popularity) is named, unless both
are perfect there.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from trainer.rules import Finding

BELOW_BASELINE_CODE = "below_popularity_baseline"


def below_popularity_ks(model: Mapping[int, float], popularity: Mapping[int, float]) -> list[int]:
    """Every k (ascending) where the model's recall@k does not beat popularity's (model <= popularity), except
    where both are perfect: nothing beats 1 (at a k as large as the catalogue, any ranking reaches it)."""
    return [k for k in sorted(model) if model[k] <= popularity[k] and model[k] < 1.0]


def below_baseline_words(ks: Iterable[int]) -> str:
    """"below popularity at @5, @10" for renderers (results table, report, UI summary)."""
    return "below popularity at " + ", ".join(f"@{k}" for k in ks)


def baseline_finding(model: Mapping[int, float], popularity: Mapping[int, float]) -> Finding | None:
    """A warning naming every k where the model does not beat popularity; None when it beats it at all."""
    ks = below_popularity_ks(model, popularity)
    if not ks:
        return None
    figures = ", ".join(f"recall@{k} {model[k]:.4f} vs {popularity[k]:.4f}" for k in ks)
    return Finding(
        code=BELOW_BASELINE_CODE,
        severity="warning",
        field="evaluation",
        message=f"{below_baseline_words(ks)} ({figures}): ranking by training purchase counts does as well",
        suggestion=(
            "check the training curve for collapse; try logQ correction (model.logq_correction: true), "
            "a lower learning rate or more epochs, and features that tell buyers apart; "
            "set evaluation.on_below_baseline: fail to refuse such a model"
        ),
    )
