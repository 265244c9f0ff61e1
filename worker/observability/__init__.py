"""What operators see of the pipeline: structured logs with every line's ids (logs.py) and Prometheus metrics
counted in Redis across every worker (metrics.py). Secrets are kept out of both by worker/redaction.py."""
