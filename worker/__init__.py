"""The training worker: a Celery process that claims queued runs, trains them and records the results.

`python -m worker` starts one worker (solo pool, one run at a time); `python -m worker --ping` checks
that the broker is reachable. The worker meets the API only in the database, the broker and the
artifacts folder: it imports core/ and ml/, never api/.
"""
