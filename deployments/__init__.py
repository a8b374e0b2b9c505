"""How towerflow is deployed: work-pool base job templates and helpers that apply them."""
