"""trainer.cluster: which process of a TF_CONFIG cluster this is, and which one writes the workdir."""

import json

import pytest

from trainer.cluster import Cluster, cluster_from_env

HOSTS = ["10.0.0.1:2222", "10.0.0.2:2222", "10.0.0.3:2222"]


def tf_config(cluster: dict, task_type: str, index: int) -> dict[str, str]:
    return {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": task_type, "index": index}})}


def test_no_tf_config_is_a_lone_chief():
    assert cluster_from_env({}) == Cluster()
    assert Cluster().is_chief and Cluster().workers == 1


@pytest.mark.parametrize(("index", "chief"), [(0, True), (1, False), (2, False)])
def test_worker_0_is_the_chief_when_no_chief_is_named(index, chief):
    cluster = cluster_from_env(tf_config({"worker": HOSTS}, "worker", index))
    assert (cluster.workers, cluster.task_index, cluster.is_chief) == (3, index, chief)


def test_vertex_layout_the_chief_pool_writes_and_worker_0_does_not():
    layout = {"chief": HOSTS[:1], "worker": HOSTS[1:]}  # what Vertex AI sets for two worker pools
    chief = cluster_from_env(tf_config(layout, "chief", 0))
    worker = cluster_from_env(tf_config(layout, "worker", 0))
    assert chief.workers == worker.workers == 3
    assert chief.is_chief and not worker.is_chief


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ("not json", "not a JSON object"),
        (json.dumps({"cluster": {"worker": HOSTS, "ps": HOSTS[:1]}, "task": {"type": "worker", "index": 0}}), "['ps']"),
        (json.dumps({"cluster": {"worker": HOSTS}, "task": {"type": "worker", "index": 3}}), "not in its cluster"),
        (json.dumps({"cluster": {"chief": HOSTS[:2]}, "task": {"type": "chief", "index": 0}}), "more than one chief"),
    ],
)
def test_a_tf_config_it_cannot_train_on_is_refused(raw, words):
    with pytest.raises(ValueError, match=words.replace("[", r"\[").replace("]", r"\]")):
        cluster_from_env({"TF_CONFIG": raw})
