"""Tasks: labels in, loss, metrics and baselines out (see :mod:`evoke.tasks.base`).

Importing this package registers every task in :data:`TASKS`.
"""

from evoke.tasks.base import TASKS, Task, TaskData, TaskError, Units, featureset_name, featureset_name_of, \
    get_task, register_task, run_task
from evoke.tasks import danmaku_ldl, eev, liris_accede, v2v, v2v_from_emotions, vce, viewer_valence  # noqa: F401  (register)

__all__ = ["TASKS", "Task", "TaskData", "TaskError", "Units", "featureset_name", "featureset_name_of", "get_task",
           "register_task", "run_task"]
