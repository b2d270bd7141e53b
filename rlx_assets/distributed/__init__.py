"""Beyond one machine: the celery app the workers run (deploy/shared) and the GraphQL backfill
launcher; the executor the Definitions select is `rlx_assets.executors`."""
