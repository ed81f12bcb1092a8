"""The Flet UI's service facade (`Services`, one per UI session) and what it speaks in: the
configuration it is started with (`AppConfig`, from `app.config`), the errors as the screens show
them (`Problem`, `explain`) and the background sync (`SyncScheduler`). The screens (`app.ui`)
import this package, never `models` or `sync` directly for their data; it imports nothing of
`app.ui` or `app.cli`. Inside: `facade` (`Services`, assembled from) `session` (plumbing, lifecycle),
`records` and `team`; `desk` and `desk_devices` (the coordinator's), `scheduler` (background sync),
`rows` (records to view rows), `problems`.
"""

from ..config import AppConfig
from .facade import Services
from .problems import Problem, explain
from .scheduler import SyncScheduler

__all__ = ["AppConfig", "Services", "SyncScheduler", "Problem", "explain"]
