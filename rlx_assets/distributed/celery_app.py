"""The celery app a worker machine runs (the target of `celery -A`):

    celery -A rlx_assets.distributed.celery_app worker -Q dagster -n worker1@%h -P solo

It has dagster-celery's step task and the same broker, backend and options as the runs that
submit steps (`celery_app_args`). A worker needs the project installed, the same `RLX_` settings
as the runs (storage on s3://, credentials) and `DAGSTER_HOME` pointing at the shared instance
(Postgres): each step reloads the Definitions and writes its events there. Settings are read
when the worker imports this module: celery needs the app at module level.
"""

from dagster_celery.make_app import make_app
from dagster_celery.tasks import create_task

from rlx_assets.executors import celery_app_args
from rlx_assets.settings import get_settings

app = make_app(celery_app_args(get_settings()))
execute_plan = create_task(app)

# Loaded now, not by the first step: a worker reports ready only with working Definitions, and
# its first step does not spend the imports and compilation inside the visibility timeout.
import rlx_assets.definitions  # noqa: E402, F401
