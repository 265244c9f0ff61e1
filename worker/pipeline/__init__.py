"""The pipeline's steps, in the order a document goes through them, with no Celery in them:

    intake.py      validate a job's documents, claim their ExternalIds           (producer → intake)
    batch.py       whole batches at once, the rest via the tenant's buffer, flushes   (intake → batch)
    tickets.py     batches placed with the dispatcher, and the send tickets serving them (batch → dispatch)
    dispatch.py    a send ticket: the next batch that may go, fairly across tenants (dispatch → send)
    send.py        the send state machine: lease, POST, answer                     (dispatch → send)
    reconcile.py   ask the ERP what it saved when its answer left that open         (send → record)
    record.py      end a batch: Keys, failures, unknowns, dead letters, follow-ups  (→ record)
    duplicates.py  documents waiting for another job sending the same ExternalId
    recovery.py    what a starting worker re-queues
    queue.py       how a step hands work on: a Message by task name to an Enqueue; RetryLater to come back
    runtime.py     the per-process store, buffer, queues and connectors the steps share

A step is called by its task adapter in tasks/ with the Celery `Enqueue` (worker/celery_app/enqueue.py), or by
a test with a list's `append`.
"""

__all__: list[str] = []  # the steps are its modules, imported by name (worker.pipeline.send, ...)
