"""trainer.quality: the per-k verdict against popularity, and the spec's on_below_baseline policy."""

import pytest

from trainer.quality import baseline_finding, below_baseline_words, below_popularity_ks
from trainer.spec import SpecError, spec_from_dict

# the retail case: worse than popularity where users look, better only at the largest ks
MODEL = {5: 0.0123, 10: 0.0300, 50: 0.2080, 100: 0.4140}
POPULARITY = {5: 0.0456, 10: 0.0577, 50: 0.2000, 100: 0.3000}


def test_every_k_the_model_does_not_beat_is_named_not_only_the_largest():
    assert below_popularity_ks(MODEL, POPULARITY) == [5, 10]
    assert below_popularity_ks({10: 0.2, 5: 0.1}, {5: 0.1, 10: 0.3}) == [5, 10]  # a tie does not beat; ks sorted
    assert below_popularity_ks({5: 0.1001, 10: 0.5}, {5: 0.1, 10: 0.3}) == []


def test_a_k_where_both_are_perfect_is_no_loss_but_losing_to_a_perfect_popularity_is():
    # @500 over 200 products: every ranking finds every test product
    assert below_popularity_ks({5: 0.3, 10: 0.4, 500: 1.0}, {5: 0.1, 10: 0.2, 500: 1.0}) == []
    assert baseline_finding({5: 0.3, 500: 1.0}, {5: 0.1, 500: 1.0}) is None
    assert below_popularity_ks({5: 0.3, 50: 0.9}, {5: 0.1, 50: 1.0}) == [50]


def test_the_finding_is_a_warning_on_evaluation_naming_the_ks_and_figures():
    finding = baseline_finding(MODEL, POPULARITY)
    assert (finding.code, finding.severity, finding.field) == ("below_popularity_baseline", "warning", "evaluation")
    assert finding.message.startswith("below popularity at @5, @10 (recall@5 0.0123 vs 0.0456, recall@10 0.0300 vs 0.0577)")
    assert "@50" not in finding.message
    assert "on_below_baseline: fail" in finding.suggestion
    assert baseline_finding({5: 0.2, 10: 0.3}, {5: 0.1, 10: 0.2}) is None


def test_words_for_renderers():
    assert below_baseline_words([5, 10]) == "below popularity at @5, @10"
    assert below_baseline_words([100]) == "below popularity at @100"


def _spec(evaluation: dict):
    return spec_from_dict(
        {
            "name": "policy",
            "data": {"transactions": "synthetic-retail://transactions"},
            "buyer_features": [{"column": "customer_id", "type": "id"}],
            "product_features": [{"column": "product_id", "type": "id"}],
            "evaluation": evaluation,
        }
    )


def test_on_below_baseline_defaults_to_warn_accepts_fail_and_rejects_anything_else():
    assert _spec({}).evaluation.on_below_baseline == "warn"
    assert _spec({"on_below_baseline": "fail"}).evaluation.on_below_baseline == "fail"
    with pytest.raises(SpecError, match="on_below_baseline"):
        _spec({"on_below_baseline": "halt"})
