"""Beyond one machine: the executor that Definitions select (RLX_EXECUTOR) and the celery app
its workers run (deploy/shared)."""
