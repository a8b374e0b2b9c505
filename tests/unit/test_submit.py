"""flows.submit without a Prefect API: what a submission stores and warns about (the event is faked)."""

from __future__ import annotations

import yaml

from flows.submit import check_config, submit_valid

TRANSACTIONS = "synthetic-retail://transactions?customers=50&products=20&transactions=400&seed=1"


def config(tmp_path, transactions: str) -> str:
    raw = {
        "name": "paths",
        "data": {"transactions": transactions, "split": {"strategy": "random", "test_fraction": 0.2}},
        "buyer_features": [{"column": "customer_id", "type": "id"}],
        "product_features": [{"column": "product_id", "type": "id", "is_primary_id": True}],
    }
    path = tmp_path / "paths.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def test_a_relative_data_path_is_submitted_with_a_warning_naming_the_absolute_one(tmp_path, monkeypatch, database_url):
    monkeypatch.setenv("TOWERFLOW_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "tx.csv").write_text("customer_id,product_id\n" + "".join(
        f"c{i % 17},p{i % 5}\n" for i in range(200)))
    emitted = []

    relative = submit_valid(check_config(config(tmp_path, "data/tx.csv")), emit=emitted.append)
    [warning] = [w for w in relative.warnings if w.code == "relative_data_path"]
    assert warning.field == "data.transactions" and "'data/tx.csv' is a relative path" in warning.message
    assert warning.suggestion == f"give an absolute path ({tmp_path}/data/tx.csv) or a URI"
    assert emitted == [relative]

    for uri in (str(tmp_path / "data" / "tx.csv"), TRANSACTIONS):
        absolute = submit_valid(check_config(config(tmp_path, uri)), emit=emitted.append)
        assert not [w for w in absolute.warnings if w.code == "relative_data_path"]
