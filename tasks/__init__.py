"""Celery tasks: the pipeline's steps, one module each.

    erpsync.process_job      (jobs.py)        intake → validate → claim ExternalIds → batch → enqueue sends
    erpsync.send_batch       (batches.py)     POST one array body, map Keys back, record outcomes
    erpsync.settle_duplicate (duplicates.py)  documents whose ExternalId another job is still sending

Task arguments are ids only (job id, batch id, positions): documents stay in Redis, credentials in
settings; Flower and the broker never see either.
"""
