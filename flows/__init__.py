"""towerflow's Prefect side: the experiment flows and the `towerflow` command.

Importing this package imports neither Prefect nor TensorFlow; each flow module imports
Prefect itself, so the CLI's light commands (validate) stay fast.
"""
