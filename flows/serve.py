"""`towerflow serve`: the whole event-driven setup on one machine, in one process.

Starts (or reuses) a local Prefect API on 127.0.0.1 and serves both deployments with `prefect.serve`:
`run-experiment/run-experiment`, triggered by `towerflow.config.submitted`, and the trainer
`train-attempt/train-attempt`, and `reconcile-experiments/reconcile-experiments`, which continues
abandoned experiments: once at start-up, on a schedule, and whenever a `run-experiment` flow run is
Crashed. No Docker and no separate worker: the served runner starts each flow run as a subprocess.
On one machine attempts run in-process in the orchestrator's flow run (same code as on a GPU pool,
one subprocess start fewer per experiment); `--dispatch` sends each attempt to the served trainer
deployment instead, as a GPU pool would. At most `--max-training` attempts train at once (the
`towerflow-training` concurrency limit); flow runs send heartbeats and an automation marks runs that
fall silent Crashed, so Prefect's view agrees with the store's leases. Prefect is imported only
after the API URL, the 1 s polling and the heartbeats are in the environment, because Prefect reads
its settings once, at import.
"""

from __future__ import annotations

import os
import threading
import time
from datetime import timedelta

from flows.prefect_api import LocalServer, recorded_api_url, start_server
from flows.report_server import REPORT_URL_ENV, ReportServer
from tasks.settings import artifacts_root

TRAINER_DEPLOYMENT = "train-attempt/train-attempt"
RESOURCE_PATTERN = "towerflow.experiment.*"
HEARTBEAT_SECONDS = "30"
RECONCILE_EVERY_S = 300
ZOMBIE_AUTOMATION = "towerflow: mark silent flow runs Crashed"
# One `{{ expr }}` keeps its type; the default keeps run creation from failing silently on a bad event:
# the run starts and its validation names the problem.
CONFIG_URI_TEMPLATE = "{{ event.payload.config_uri | default('missing: the event has no payload.config_uri') }}"
POLL_SECONDS = "1"


def submitted_trigger():
    """The trigger of `run-experiment`: every `towerflow.config.submitted` event, config URI as parameter."""
    from prefect.events import DeploymentEventTrigger

    from tasks import events

    return DeploymentEventTrigger(
        name="run-experiment on towerflow.config.submitted",
        expect={events.CONFIG_SUBMITTED},
        match={"prefect.resource.id": RESOURCE_PATTERN},
        parameters={"config": CONFIG_URI_TEMPLATE},
    )


def crashed_trigger():
    """The trigger of `reconcile-experiments`: a `run-experiment` flow run was Crashed."""
    from prefect.events import DeploymentEventTrigger

    return DeploymentEventTrigger(
        name="reconcile on a crashed run-experiment",
        expect={"prefect.flow-run.Crashed"},
        match={"prefect.resource.id": "prefect.flow-run.*"},
        match_related={"prefect.resource.role": "flow", "prefect.resource.name": "run-experiment"},
    )


def runner_deployments() -> list:
    """The three deployments, importable by module path from any working directory."""
    from prefect.types.entrypoint import EntrypointType

    from flows.experiment import run_experiment
    from flows.reconcile import reconcile_experiments
    from flows.train import train_attempt_flow

    return [
        reconcile_experiments.to_deployment(
            "reconcile-experiments", interval=RECONCILE_EVERY_S, triggers=[crashed_trigger()],
            entrypoint_type=EntrypointType.MODULE_PATH,
            description="Continue experiments whose run died (lease expired, process gone, flow run Crashed).",
        ),
        run_experiment.to_deployment(
            "run-experiment", triggers=[submitted_trigger()], entrypoint_type=EntrypointType.MODULE_PATH,
            description="One experiment: validate, attempts with learning-rate backoff, evaluate, persist.",
        ),
        train_attempt_flow.to_deployment(
            "train-attempt", entrypoint_type=EntrypointType.MODULE_PATH,
            description="One training attempt (the GPU unit), dispatched by run-experiment.",
        ),
    ]


def local_api() -> tuple[str, LocalServer | None]:
    """PREFECT_API_URL (checked by the CLI's preflight: one that does not answer is an error, never silently
    replaced by a server that nothing else would find), else the API of a running `towerflow serve`, else a
    new server."""
    configured = os.environ.get("PREFECT_API_URL")
    if configured:
        return configured, None
    recorded = recorded_api_url()
    if recorded:
        return recorded, None
    print("starting a local Prefect server (prefect server start) ...", flush=True)
    server = start_server(record=True)
    return server.api_url, server


def zombie_automation():
    """Prefect's recipe for zombie flow runs: no heartbeat (nor end) for 90 s after one -> Crashed."""
    from prefect.automations import Automation
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import EventTrigger, Posture

    return Automation(
        name=ZOMBIE_AUTOMATION,
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={"prefect.flow-run.heartbeat", "prefect.flow-run.Completed", "prefect.flow-run.Failed",
                    "prefect.flow-run.Cancelled", "prefect.flow-run.Crashed"},
            match={"prefect.resource.id": ["prefect.flow-run.*"]},
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=3 * int(HEARTBEAT_SECONDS)),
        ),
        actions=[ChangeFlowRunState(state=StateType.CRASHED,
                                    message="no heartbeat for 90 s: its process died (towerflow zombie automation)")],
    )


def prepare_api(max_training: int) -> None:
    """The training concurrency limit and the zombie automation (created once, updated on restart)."""
    from prefect.automations import Automation
    from prefect.client.orchestration import get_client

    from tasks.training import TRAINING_LIMIT

    with get_client(sync_client=True) as client:
        client.upsert_global_concurrency_limit_by_name(TRAINING_LIMIT, max_training)
    try:
        Automation.read(name=ZOMBIE_AUTOMATION)
    except ValueError:
        zombie_automation().create()


def reconcile_when_served(timeout_s: float = 120.0) -> threading.Thread:
    """Run the reconciler once, as soon as its deployment is registered: whatever died while serve was
    down continues now."""
    from prefect.client.orchestration import get_client

    from flows.reconcile import RECONCILE_DEPLOYMENT

    def start() -> None:
        deadline = time.monotonic() + timeout_s
        with get_client(sync_client=True) as client:
            while time.monotonic() < deadline:
                try:
                    deployment = client.read_deployment_by_name(RECONCILE_DEPLOYMENT)
                except Exception:  # not registered yet
                    time.sleep(0.5)
                    continue
                client.create_flow_run_from_deployment(deployment.id)
                return

    thread = threading.Thread(target=start, name="towerflow-reconcile-at-start", daemon=True)
    thread.start()
    return thread


def serve_command(dispatch: bool = False, max_training: int = 1) -> int:
    """Serve the deployments until Ctrl-C; then stop the server this command started, if any."""
    api_url, server = local_api()
    os.environ["PREFECT_API_URL"] = api_url
    os.environ.setdefault("PREFECT_RUNNER_POLL_FREQUENCY", POLL_SECONDS)
    os.environ.setdefault("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", HEARTBEAT_SECONDS)
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "towerflow")
    if dispatch:
        os.environ.setdefault("TOWERFLOW_TRAINER_DEPLOYMENT", TRAINER_DEPLOYMENT)  # flow runs inherit it
    reports = ReportServer(artifacts_root())
    os.environ[REPORT_URL_ENV] = reports.url  # the flow runs link their reports here
    try:
        import prefect

        from flows.local import quiet_expected_errors
        from flows.train import save_results_block

        quiet_expected_errors()
        save_results_block()
        prepare_api(max_training)
        ui = api_url.removesuffix("/api")
        print(f"Prefect API {api_url}; open the UI at {ui}; reports at {reports.url}; at most {max_training} "
              "attempt(s) train at once; submit with: towerflow submit CONFIG", flush=True)
        reconcile_when_served()
        with reports:
            prefect.serve(*runner_deployments())
    except KeyboardInterrupt:
        pass
    finally:
        if server is not None:
            server.stop()
    return 0
