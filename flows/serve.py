"""`towerflow serve`: the whole event-driven setup on one machine, in one process.

Starts (or reuses) a local Prefect API on 127.0.0.1 and serves both deployments with `prefect.serve`:
`run-experiment/run-experiment`, triggered by `towerflow.config.submitted`, and the trainer
`train-attempt/train-attempt`. No Docker and no separate worker: the served runner starts each flow
run as a subprocess. On one machine attempts run in-process in the orchestrator's flow run (same
code as on a GPU pool, one subprocess start fewer per experiment); `--dispatch` sends each attempt
to the served trainer deployment instead, as a GPU pool would. Prefect is imported only after the API URL
and the 1 s polling are in the environment, because Prefect reads its settings once, at import.
"""

from __future__ import annotations

import os
import sys

from flows.prefect_api import LocalServer, api_answers, recorded_api_url, start_server

ORCHESTRATOR_DEPLOYMENT = "run-experiment/run-experiment"
TRAINER_DEPLOYMENT = "train-attempt/train-attempt"
RESOURCE_PATTERN = "towerflow.experiment.*"
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


def runner_deployments() -> list:
    """Both deployments, importable by module path from any working directory."""
    from prefect.types.entrypoint import EntrypointType

    from flows.experiment import run_experiment
    from flows.train import train_attempt_flow

    return [
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
    """PREFECT_API_URL if it answers, else the API of a running `towerflow serve`, else a new server."""
    configured = os.environ.get("PREFECT_API_URL")
    if configured and api_answers(configured):
        return configured, None
    if configured:
        print(f"PREFECT_API_URL={configured} does not answer; starting a local server", file=sys.stderr)
    recorded = recorded_api_url()
    if recorded:
        return recorded, None
    print("starting a local Prefect server (prefect server start) ...", flush=True)
    server = start_server(record=True)
    return server.api_url, server


def serve_command(dispatch: bool = False) -> int:
    """Serve both deployments until Ctrl-C; then stop the server this command started, if any."""
    api_url, server = local_api()
    os.environ["PREFECT_API_URL"] = api_url
    os.environ.setdefault("PREFECT_RUNNER_POLL_FREQUENCY", POLL_SECONDS)
    if dispatch:
        os.environ.setdefault("TOWERFLOW_TRAINER_DEPLOYMENT", TRAINER_DEPLOYMENT)  # flow runs inherit it
    try:
        import prefect

        from flows.train import save_results_block

        save_results_block()
        ui = api_url.removesuffix("/api")
        print(f"Prefect API {api_url} (UI {ui}); submit with: towerflow submit CONFIG", flush=True)
        prefect.serve(*runner_deployments())
    except KeyboardInterrupt:
        pass
    finally:
        if server is not None:
            server.stop()
    return 0
