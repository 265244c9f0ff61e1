"""Celery tasks: the pipeline's steps, one module each.

    erpsync.drain_intake     (jobs.py)        intake queue → validate → claim ExternalIds → coalescing buffer
    erpsync.process_job      (jobs.py)        the same for one job or range, run again by an operator
    erpsync.flush_buffer     (flush.py)       cut a tenant's buffer into array batches, enqueue their sends
    erpsync.send_batch       (batches.py)     POST one array body, map Keys back, record outcomes
    erpsync.settle_duplicate (duplicates.py)  documents whose ExternalId another job is still sending

Task arguments are ids only (job id, batch id, tenant, positions): documents stay in Redis, credentials in
settings; Flower and the broker never see either.
"""
