"""The producer side: store a job's documents and queue them for intake.

submit.py       `submit()` from Python (the CLI, bench, integrators' code; also `worker.submit`), `wait_for()`
ingest.py       streaming readers of JSON, JSONL and POS end-of-day CSV files
submissions.py  a raw-Redis producer's job message checked and stored as a job, or rejected
"""
