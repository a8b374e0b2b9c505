"""The GPU work-pool templates and prefect.yaml, checked without the pool types' packages installed.

prefect-kubernetes and prefect-gcp are not installed, so no worker can render a real job here.
What is checked instead, per template:
- against the pool type's own default template, as Prefect ships it in its collection registry view
  (server/api/collections_data/views/aggregate-worker-metadata.json, what the UI offers for the type):
  the same job_configuration keys (the worker's job configuration fields), every default variable
  still declared with the same type, the same required variables;
- the variables section is a valid JSON schema and its defaults validate against it (Prefect's own
  schema tools, as the server uses them); bad job variables (gpu_count "two") are rejected;
- rendered with Prefect's templating (what a worker does before building its job), the GPU settings
  land where Kubernetes / Vertex AI read them;
- a Prefect API (in process, temporary database) creates each pool from its template, and then
  accepts a deployment with valid job variables and rejects one with invalid job variables.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import prefect.server.api
import pytest
import yaml
from prefect.client.orchestration import PrefectClient
from prefect.exceptions import PrefectHTTPStatusError
from prefect.server.events.actions import RunDeployment
from prefect.utilities.schema_tools.hydration import HydrationContext, hydrate
from prefect.utilities.schema_tools.validation import ValidationError, is_valid_schema, validate
from prefect.utilities.templating import apply_values, find_placeholders

from deployments.pools import TEMPLATES, apply_pool, load_template, pool_type, process_template
from flows.serve import CONFIG_URI_TEMPLATE, RESOURCE_PATTERN, TRAINER_DEPLOYMENT
from trainer.cluster import cluster_from_env

ROOT = Path(__file__).resolve().parents[2]
REGISTRY_VIEW = Path(prefect.server.api.__file__).parent / "collections_data/views/aggregate-worker-metadata.json"


def shipped_default(kind: str) -> dict:
    """Prefect's default base job template for a pool type, from its bundled collection registry view."""
    for collection in json.loads(REGISTRY_VIEW.read_text()).values():
        for worker in collection.values():
            if worker.get("type") == kind:
                return worker["default_base_job_configuration"]
    raise LookupError(f"no worker type {kind!r} in {REGISTRY_VIEW}")


def rendered(template: dict, values: dict) -> dict:
    """The job configuration a worker would build: variable defaults, then `values`, applied."""
    properties = template["variables"]["properties"]
    defaults = {name: spec["default"] for name, spec in properties.items() if "default" in spec}
    return apply_values(template["job_configuration"], defaults | values)


def errors(template: dict, values: dict) -> list[str]:
    try:
        validate(values, template["variables"], raise_on_error=True, preprocess=True, ignore_required=True)
    except ValidationError as error:
        return [str(error)]
    return []


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_template_keeps_the_pool_types_default_shape(name):
    ours, default = load_template(name), shipped_default(pool_type(name))
    assert ours["job_configuration"].keys() == default["job_configuration"].keys()
    for variable, spec in default["variables"]["properties"].items():
        assert variable in ours["variables"]["properties"], f"{name}: default variable {variable} dropped"
        mine = ours["variables"]["properties"][variable]
        assert (mine.get("type"), mine.get("allOf")) == (spec.get("type"), spec.get("allOf")), variable
    assert set(ours["variables"].get("required", [])) == set(default["variables"].get("required", []))
    assert ours["variables"]["definitions"] == default["variables"]["definitions"]


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_template_variables_are_a_valid_schema_that_declares_every_placeholder(name):
    template = load_template(name)
    is_valid_schema(template["variables"], preprocess=False)  # raises on an invalid schema
    declared = set(template["variables"]["properties"])
    used = {p.name for p in find_placeholders(json.dumps(template["job_configuration"]))}
    assert used <= declared
    defaults = {k: v["default"] for k, v in template["variables"]["properties"].items() if "default" in v}
    assert errors(template, defaults) == []


def test_kubernetes_template_puts_gpus_node_selector_and_tolerations_on_the_pod():
    template = load_template("kubernetes-gpu")
    job = rendered(template, {"gpu_count": 2, "image": "europe-docker.pkg.dev/p/r/towerflow:1"})
    pod = job["job_manifest"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["name"] == "prefect-job"  # the container the Kubernetes worker fills in
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 2  # an int, as Kubernetes expects
    assert container["image"] == "europe-docker.pkg.dev/p/r/towerflow:1"
    assert pod["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-tesla-t4"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert rendered(template, {"node_selector": {"pool": "a100"}})["job_manifest"]["spec"]["template"]["spec"][
        "nodeSelector"] == {"pool": "a100"}
    assert errors(template, {"gpu_count": "two"}) and errors(template, {"gpu_count": -1})
    assert errors(template, {"tolerations": "nvidia.com/gpu"})


def test_vertex_template_sets_accelerators_machine_type_and_maximum_run_time():
    template = load_template("vertex-ai-gpu")
    job = rendered(template, {"accelerator_type": "NVIDIA_L4", "accelerator_count": 2,
                              "machine_type": "g2-standard-24", "maximum_run_time_hours": 8})
    spec = job["job_spec"]
    (pool,) = spec["worker_pool_specs"]
    assert pool["machine_spec"] == {"machine_type": "g2-standard-24", "accelerator_type": "NVIDIA_L4",
                                    "accelerator_count": 2}
    assert spec["maximum_run_time_hours"] == 8
    defaults = rendered(template, {})["job_spec"]["worker_pool_specs"][0]["machine_spec"]
    assert defaults == {"machine_type": "n1-standard-8", "accelerator_type": "NVIDIA_TESLA_T4", "accelerator_count": 1}
    assert errors(template, {"accelerator_count": 0})
    assert errors(template, {"accelerator_type": "NVIDIA_TESLA_T5"})
    assert errors(template, {"maximum_run_time_hours": 0})


def test_vertex_multi_worker_template_runs_the_flow_as_chief_and_the_trainer_in_pool_1():
    template = load_template("vertex-ai-multi-worker")
    args = ["--config", "gs://b/w/spec.json", "--learning-rate", "0.05", "--out", "gs://b/w"]
    env = [{"name": "TOWERFLOW_ARTIFACTS", "value": "gs://b"}]
    job = rendered(template, {"worker_replicas": 3, "worker_args": args, "worker_env": env, "image": "img:1",
                              "accelerator_count": 2})
    chief, workers = job["job_spec"]["worker_pool_specs"]
    # no command: the Vertex AI worker fills in the flow run's command and env, in pool 0 only
    assert chief["replica_count"] == 1 and chief["container_spec"] == {"image_uri": "img:1", "args": []}
    assert workers["replica_count"] == 3  # an int, as Vertex AI expects
    assert workers["container_spec"] == {"image_uri": "img:1", "command": ["python", "-m", "trainer"],
                                         "args": args, "env": env}
    assert workers["machine_spec"] == chief["machine_spec"] and chief["machine_spec"]["accelerator_count"] == 2
    assert errors(template, {"worker_env": [{"name": "A", "value": 1}]}) and errors(template, {"worker_args": "--out w"})


def _launch(template: dict, index: int, probe: list[str], **values) -> subprocess.CompletedProcess:
    """Pod `index` of the rendered Indexed Job: its command, with `probe` as the flow run's command."""
    container = rendered(template, values)["job_manifest"]["spec"]["template"]["spec"]["containers"][0]
    env = {**os.environ, "JOB_NAME": "train-abc", "JOB_COMPLETION_INDEX": str(index),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run([*container["command"], *probe], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=60)


def test_kubernetes_multi_worker_pods_get_their_tf_config_and_only_pod_0_runs_the_flow():
    template = load_template("kubernetes-multi-worker")
    job = rendered(template, {"workers": 3})["job_manifest"]
    assert (job["spec"]["completionMode"], job["spec"]["completions"], job["spec"]["parallelism"]) == ("Indexed", 3, 3)
    assert job["spec"]["template"]["spec"]["subdomain"] == "towerflow-workers"
    show = [sys.executable, "-c", "import os; print(os.environ['TF_CONFIG'])"]
    pod0 = _launch(template, 0, show, workers=3)
    assert pod0.returncode == 0, pod0.stderr
    cluster = cluster_from_env({"TF_CONFIG": pod0.stdout})
    assert (cluster.workers, cluster.task_index, cluster.is_chief) == (3, 0, True)
    hosts = json.loads(pod0.stdout)["cluster"]["worker"]
    assert hosts == [f"train-abc-{i}.towerflow-workers:2222" for i in range(3)]
    pod2 = _launch(template, 2, show, workers=3, worker_args="--help")  # the trainer, not the flow run
    assert pod2.returncode == 0 and pod2.stdout.startswith("usage: python -m trainer"), pod2.stderr


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    """A Prefect API in this process (no port, no services) on a temporary SQLite database."""
    from prefect.server.api.server import create_app
    from prefect.settings import (
        PREFECT_API_DATABASE_CONNECTION_URL,
        PREFECT_SERVER_ANALYTICS_ENABLED,
        temporary_settings,
    )

    database = tmp_path_factory.mktemp("prefect") / "prefect.db"
    with temporary_settings(updates={PREFECT_API_DATABASE_CONNECTION_URL: f"sqlite+aiosqlite:///{database}",
                                     PREFECT_SERVER_ANALYTICS_ENABLED: False}):
        yield create_app(ephemeral=True)


def on_api(app, work):
    async def main():
        async with PrefectClient(api=app) as client:
            return await work(client)

    return asyncio.run(main())


@pytest.mark.parametrize(("name", "valid", "invalid"), [
    ("kubernetes-gpu", {"gpu_count": 4, "tolerations": []}, {"gpu_count": "two"}),
    ("vertex-ai-gpu", {"accelerator_count": 2, "region": "europe-west4"}, {"accelerator_type": "NVIDIA_TESLA_T5"}),
    ("kubernetes-multi-worker", {"workers": 4, "worker_args": "--config c.json --out w"}, {"workers": 1}),
    ("vertex-ai-multi-worker", {"worker_replicas": 3, "worker_args": ["--out", "w"]}, {"worker_replicas": 0}),
])
def test_a_prefect_api_creates_the_pool_and_enforces_its_variables(api, name, valid, invalid):
    template = load_template(name)

    async def work(client: PrefectClient):
        pool = await apply_pool(client, f"gpu-{name}", pool_type(name), template, concurrency_limit=3)
        again = await apply_pool(client, f"gpu-{name}", pool_type(name), template)  # an update, not an error
        flow_id = await client.create_flow_from_name("template-check")
        accepted = await client.create_deployment(flow_id, f"ok-{name}", work_pool_name=pool.name,
                                                  job_variables=valid)
        with pytest.raises(PrefectHTTPStatusError) as rejected:
            await client.create_deployment(flow_id, f"bad-{name}", work_pool_name=pool.name,
                                           job_variables=invalid)
        with pytest.raises(ValueError, match="exists with type"):
            await apply_pool(client, pool.name, "process", process_template())
        return pool, again, accepted, rejected.value

    pool, again, accepted, rejected = on_api(api, work)
    assert (pool.type, pool.base_job_template) == (pool_type(name), template)
    assert again.id == pool.id
    assert pool.concurrency_limit == 3 and again.concurrency_limit == 3  # an update without a limit keeps it
    assert accepted is not None
    assert rejected.response.status_code == 422
    assert next(iter(invalid)) in rejected.response.text


def test_prefect_yaml_deploys_the_orchestrator_and_the_trainer_on_their_pools():
    project = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    deployments = {d["name"]: d for d in project["deployments"]}
    orchestrator, trainer = deployments["run-experiment"], deployments["train-attempt"]
    assert orchestrator["entrypoint"] == "flows/experiment.py:run_experiment"
    assert orchestrator["work_pool"]["name"] == "cpu"
    assert orchestrator["work_pool"]["job_variables"]["env"]["TOWERFLOW_TRAINER_DEPLOYMENT"] == TRAINER_DEPLOYMENT
    assert trainer["entrypoint"] == "flows/train.py:train_attempt_flow"
    assert TRAINER_DEPLOYMENT == "train-attempt/" + trainer["name"]
    assert trainer["work_pool"]["name"] == "gpu"
    (trigger,) = orchestrator["triggers"]
    assert trigger["expect"] == ["towerflow.config.submitted"]
    assert trigger["match"] == {"prefect.resource.id": RESOURCE_PATTERN}
    assert trigger["parameters"] == {"config": CONFIG_URI_TEMPLATE}  # the same trigger as `towerflow serve`
    assert project["pull"][0]["prefect.deployments.steps.set_working_directory"]["directory"] == (
        "{{ " + project["build"][0]["prefect.deployments.steps.run_shell_script"]["id"] + ".stdout }}")


@pytest.mark.parametrize(("payload", "config"), [
    ({"config_uri": "gs://bucket/artifacts/configs/0123abcd.yaml"}, "gs://bucket/artifacts/configs/0123abcd.yaml"),
    ({"config_hash": "0123abcd"}, "missing: the event has no payload.config_uri"),
])
def test_the_trigger_passes_the_config_uri_or_a_message_naming_what_is_missing(payload, config):
    parameters = {"config": CONFIG_URI_TEMPLATE}
    RunDeployment._upgrade_v1_templates(parameters)  # what the server does with a trigger's parameters
    context = HydrationContext(render_jinja=True, raise_on_error=True, jinja_context={"event": {"payload": payload}})
    assert hydrate(parameters, context) == {"config": config}


def test_prefect_yaml_reconciles_on_a_schedule_and_on_a_crashed_orchestrator_as_serve_does():
    from flows.reconcile import RECONCILE_DEPLOYMENT
    from flows.serve import RECONCILE_EVERY_S, crashed_trigger

    project = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    reconcile = {d["name"]: d for d in project["deployments"]}["reconcile-experiments"]
    assert RECONCILE_DEPLOYMENT == "reconcile-experiments/" + reconcile["name"]
    assert reconcile["entrypoint"] == "flows/reconcile.py:reconcile_experiments"
    assert reconcile["schedules"] == [{"interval": RECONCILE_EVERY_S}]
    (trigger,) = reconcile["triggers"]
    served = crashed_trigger()
    assert set(trigger["expect"]) == served.expect
    assert trigger["match"] == served.match.model_dump()
    assert trigger["match_related"] == served.match_related.model_dump()
