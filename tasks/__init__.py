"""Celery tasks: thin adapters of the pipeline's steps (worker/pipeline/), one module per step.

    erpsync.accept_submission (submissions.py) a raw producer's job message → a job, or a rejection
    erpsync.drain_intake      (intake.py)      intake queue → validate → claim ExternalIds → batching
    erpsync.process_job       (intake.py)      the same for one job or range, run again by an operator
    erpsync.flush_buffer      (flush.py)       cut a tenant's buffer into array batches, enqueue their sends
    erpsync.send_batch        (send.py)        POST one array body, map Keys back, record outcomes
    erpsync.send_batches      (send.py)        the same for a few batches stored together, in one message
    erpsync.settle_duplicate  (duplicates.py)  documents whose ExternalId another job is still sending

A task sets its log context, calls its step with the Celery `Enqueue` (worker/celery_app/enqueue.py) and turns
the step's RetryLater into a Celery retry (worker/celery_app/adapter.py): no business logic here. Task arguments
are ids only (job id, batch id, tenant, positions): documents stay in Redis, credentials in settings; Flower and
the broker never see either.
"""
