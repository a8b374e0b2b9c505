"""`towerflow validate`, run as a user runs it: in a subprocess, checking exit codes and output."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CONSOLE_SCRIPT = Path(sys.executable).parent / "towerflow"

CONFIG = """\
name: cli-test
data:
  transactions: {transactions}
buyer_features:
  - {{column: customer_id, type: id}}
  - {{column: {buyer_column}, type: categorical}}
product_features:
  - {{column: product_id, type: id, is_primary_id: true}}
training:
  optimizer: {optimizer}
  learning_rate: {learning_rate}
"""


def towerflow(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args], cwd=REPO, capture_output=True, text=True, timeout=60
    )


def write_config(tmp_path: Path, **values) -> Path:
    """A config over a tiny CSV in tmp_path; `values` replace the defaults of CONFIG's fields."""
    transactions = tmp_path / "transactions.csv"
    transactions.write_text("customer_id,region,product_id\nc1,north,p1\n")
    fields = {"transactions": transactions, "buyer_column": "region", "optimizer": "adagrad", "learning_rate": 0.05}
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG.format(**{**fields, **values}))
    return path


def assert_clean_exit(result: subprocess.CompletedProcess, code: int) -> None:
    assert result.returncode == code, result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_the_legacy_example_is_invalid_and_says_why():
    result = subprocess.run(
        [str(CONSOLE_SCRIPT), "validate", "examples/legacy_platform.json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert_clean_exit(result, 2)
    lines = result.stdout.splitlines()
    (duplicate,) = [line for line in lines if "[duplicate_column]" in line]
    assert "buyer_features[4].column" in duplicate and "'cust_value'" in duplicate
    (rate,) = [line for line in lines if "[high_learning_rate]" in line]
    assert rate.strip().startswith("training.learning_rate:") and "0.1" in rate
    (primary,) = [line for line in lines if "[no_primary_id]" in line]
    assert "'customer_id'" not in primary and "'product_id'" in primary
    assert lines.index("Errors:") < lines.index(duplicate) < lines.index("Warnings:") < lines.index(rate)


@pytest.mark.parametrize("example", ["movielens.yaml", "retail_synthetic.yaml", "collapse_demo.yaml"])
def test_the_other_examples_are_valid(example):
    result = towerflow("validate", f"examples/{example}")
    assert_clean_exit(result, 0)
    assert "Errors:" not in result.stdout


def test_the_collapse_demo_is_valid_but_warned():
    result = towerflow("validate", "examples/collapse_demo.yaml")
    assert_clean_exit(result, 0)
    assert "[high_learning_rate]" in result.stdout


def test_a_valid_config_over_a_csv(tmp_path):
    assert_clean_exit(towerflow("validate", str(write_config(tmp_path))), 0)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"optimizer": "adamw"}, "training.optimizer: unknown optimizer 'adamw'"),
        ({"learning_rate": -0.5}, "training.learning_rate: training.learning_rate must be > 0, got -0.5"),
        ({"transactions": "/nonexistent/transactions.csv"}, "data.transactions: /nonexistent/transactions.csv: file not found"),
        ({"buyer_column": "loyalty_tier"}, "buyer_features[1].column: column 'loyalty_tier' is not in "),
    ],
    ids=["unknown optimizer", "negative learning rate", "missing data file", "column absent from the data"],
)  # fmt: skip
def test_invalid_configs_exit_2_with_a_line_naming_the_field(tmp_path, values, expected):
    result = towerflow("validate", str(write_config(tmp_path, **values)))
    assert_clean_exit(result, 2)
    assert any(line.strip().startswith(expected) for line in result.stdout.splitlines()), result.stdout


def test_the_missing_column_line_names_the_data_file(tmp_path):
    result = towerflow("validate", str(write_config(tmp_path, buyer_column="loyalty_tier")))
    (line,) = [line for line in result.stdout.splitlines() if "[missing_column]" in line]
    assert str(tmp_path / "transactions.csv") in line


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("name: x\ndata: [unclosed\n", "invalid YAML at line 3"),
        ("name: x\ntraining: {lr: 0.1}\n", "training.lr: unknown field"),
    ],
    ids=["malformed yaml", "unknown field"],
)
def test_an_unparseable_config_exits_2_with_one_line(tmp_path, text, reason):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    result = towerflow("validate", str(path))
    assert_clean_exit(result, 2)
    assert result.stdout == ""
    assert result.stderr.startswith(f"{path}: ") and reason in result.stderr
    if reason.startswith("invalid YAML"):
        assert result.stderr.count("\n") == 1


def test_a_missing_config_file_exits_2(tmp_path):
    result = towerflow("validate", str(tmp_path / "absent.yaml"))
    assert_clean_exit(result, 2)
    assert result.stderr == f"{tmp_path / 'absent.yaml'}: file not found\n"


def test_set_overrides_change_the_verdict(tmp_path):
    path = str(write_config(tmp_path))
    result = towerflow("validate", path, "--set", "training.learning_rate=0", "--set", "training.clipnorm=null")
    assert_clean_exit(result, 2)
    assert "[out_of_range]" in result.stdout and "[clipping_disabled]" in result.stdout


def test_json_report(tmp_path):
    result = towerflow("validate", str(write_config(tmp_path, optimizer="adamw")), "--json")
    assert_clean_exit(result, 2)
    report = json.loads(result.stdout)
    assert report["ok"] is False and report["spec"]["name"] == "cli-test"
    assert [(f["code"], f["severity"], f["field"]) for f in report["findings"]] == [
        ("unknown_optimizer", "error", "training.optimizer")
    ]


def test_json_report_of_an_unparseable_config(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: [\n")
    result = towerflow("validate", str(path), "--json")
    assert_clean_exit(result, 2)
    report = json.loads(result.stdout)
    assert report["spec"] is None and report["findings"][0]["code"] == "invalid_config"


def test_usage_errors_exit_2():
    assert_clean_exit(towerflow(), 2)
    assert_clean_exit(towerflow("validate"), 2)
    assert_clean_exit(towerflow("validate", "examples/movielens.yaml", "--set"), 2)


def test_validate_imports_neither_tensorflow_nor_prefect():
    script = (
        "import sys, time; start = time.perf_counter()\n"
        "from flows.cli import main\n"
        "code = main(['validate', 'examples/movielens.yaml'])\n"
        "print('heavy:', sorted(m for m in ('tensorflow', 'prefect', 'tf_keras') if m in sys.modules))\n"
        "print(f'in-process: {time.perf_counter() - start:.2f}s')\n"
        "sys.exit(code)\n"
    )
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60)
    elapsed = time.perf_counter() - start
    assert_clean_exit(result, 0)
    assert "heavy: []" in result.stdout.splitlines()
    print(f"towerflow validate examples/movielens.yaml: {elapsed:.2f}s wall, {result.stdout.splitlines()[-1]}")


@pytest.mark.parametrize(
    ("override", "reason"),
    [
        ("training.epochs=[1", "training.epochs: --set training.epochs=[1: invalid YAML at line 1 column 3"),
        ("name=!!python/object/apply:os.system [echo]", "name: --set name=!!python/object/apply:os.system [echo]: "),
        ("training.lr=0.1", "training.lr: unknown field (from --set training.lr=0.1)"),
        ("training.epochs=many", "training.epochs: Input should be a valid integer"),
    ],
    ids=["malformed value", "yaml tag", "unknown key", "wrong type"],
)
def test_a_bad_override_exits_2_with_one_line(tmp_path, override, reason):
    config = write_config(tmp_path)
    result = towerflow("validate", str(config), "--set", override)
    assert_clean_exit(result, 2)
    assert result.stdout == "" and result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"{config}: {reason}"), result.stderr


def test_a_yaml_tag_in_the_config_exits_2_with_one_line(tmp_path):
    path = tmp_path / "tagged.yaml"
    path.write_text("name: !!python/object/apply:os.system [echo hi]\n")
    result = towerflow("validate", str(path))
    assert_clean_exit(result, 2)
    assert result.stderr.count("\n") == 1 and "could not determine a constructor" in result.stderr


@pytest.mark.parametrize(
    ("values", "override", "expected"),
    [
        ({}, "artifacts=../../../../tmp/elsewhere", "artifacts: artifacts '../../../../tmp/elsewhere' is a relative path"),
        ({"transactions": "http://127.0.0.1:9/t.csv"}, None, "data.transactions: http://127.0.0.1:9/t.csv: data is not read over http://"),
        ({"transactions": "'synthetic-retail://transactions?customers=abc&bogus=1'"}, None, "data.transactions: synthetic-retail://transactions?customers=abc&bogus=1: unknown parameter(s) bogus"),
    ],
    ids=["artifacts outside", "http data", "bad built-in parameters"],
)  # fmt: skip
def test_untrusted_paths_exit_2_naming_the_field(tmp_path, values, override, expected):
    args = ["validate", str(write_config(tmp_path, **values)), *(["--set", override] if override else [])]
    result = towerflow(*args)
    assert_clean_exit(result, 2)
    assert any(line.strip().startswith(expected) for line in result.stdout.splitlines()), result.stdout


def test_validate_data_loads_the_rows_and_names_the_bad_column_without_tensorflow_or_prefect(tmp_path):
    rows = ["customer_id,region,product_id", *(f"c{i % 40},r{i % 3},p{i % 25}" for i in range(300))]
    rows[18] = "c17,r2,   "  # a product id that is only whitespace
    path = write_config(tmp_path)
    (tmp_path / "transactions.csv").write_text("\n".join(rows) + "\n")
    assert_clean_exit(towerflow("validate", str(path)), 0)  # the header is fine: only --data reads the rows
    script = (
        "import sys\nfrom flows.cli import main\n"
        f"code = main(['validate', '--data', {str(path)!r}])\n"
        "print('heavy:', sorted(m for m in ('tensorflow', 'prefect', 'tf_keras') if m in sys.modules))\n"
        "sys.exit(code)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert_clean_exit(result, 2)
    assert "product_features[0].column" in result.stdout + result.stderr and "[blank_ids]" in result.stdout
    assert "heavy: []" in result.stdout.splitlines()


def test_the_trainer_help_imports_no_tensorflow():
    script = "import sys, runpy\nsys.argv = ['trainer', '--help']\ntry:\n    runpy.run_module('trainer', run_name='__main__')\n" \
             "except SystemExit:\n    pass\nprint('heavy:', 'tensorflow' in sys.modules)\n"
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert "--learning-rate" in result.stdout and "heavy: False" in result.stdout, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("shards", "pattern", "expected"),
    [
        ({"part-0.csv": "customer_id,region,product_id"}, "{tx}/part-*.parquet",
         "{tx}/part-*.parquet: no file matches this pattern [no_shards]"),
        ({"part-0.csv": "customer_id,region,product_id", "part-1.csv": "customer_id,product_id"}, "{tx}/",
         "{tx}/: shard {tx}/part-1.csv differs from {tx}/part-0.csv: missing region [shard_schemas_differ]"),
        ({"part-0.parquet": "not parquet"}, "{tx}/*.parquet", "{tx}/part-0.parquet: cannot be read (ArrowInvalid: "),
        ({"a.csv": "customer_id,region,product_id", "b.parquet": ""}, "{tx}/*",
         "{tx}/*: mixes formats ({tx}/a.csv is csv, {tx}/b.parquet is parquet); use one format per glob [mixed_formats]"),
    ],
    ids=["no match", "a shard differs", "an unreadable shard", "mixed formats"],
)  # fmt: skip
def test_bad_shards_fail_validate_and_run_in_one_line_naming_the_field(tmp_path, shards, pattern, expected):
    tx = tmp_path / "tx"
    tx.mkdir()
    for name, text in shards.items():
        (tx / name).write_text(f"{text}\nc1,north,p1\n")
    config = write_config(tmp_path, transactions=pattern.format(tx=tx))
    line = f"data.transactions: {expected.format(tx=tx)}"
    for command in ("validate", "run"):  # run refuses before Prefect or TensorFlow start
        result = towerflow(command, str(config))
        assert_clean_exit(result, 2)
        errors = [text.strip() for text in (result.stdout + result.stderr).splitlines() if text.startswith("  data.")]
        assert len(errors) == 1 and errors[0].startswith(line), result.stdout + result.stderr
