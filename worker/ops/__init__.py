"""Operating erpsync: what the pipeline is doing now (overview.py) and the dead letters (deadletters.py)."""
