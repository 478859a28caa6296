"""A fake TensorsLab task API on loopback, for tests, demos and benchmarks.

`Simulator` serves `POST /v1/video/infobytaskid` as the OpenAPI contract describes, and
`POST /v1/images/infobytaskid` for image tasks (`TaskScript(..., kind="image")`), playing scripted
task lifecycles (`TaskScript` of `Step`s) and injecting `Faults`; `/_sim/...` is its admin API.
Its create endpoints (`POST /v1/video/<model>`, `POST /v1/images/<model>`) make tasks as
`CreateBehaviour` says, and `Simulator.requests` times every request per API key.
"""

from tracker.testing.simulator.creates import CreateBehaviour, CreateRecord
from tracker.testing.simulator.scripts import Faults, ScriptError, Status, Step, TaskScript
from tracker.testing.simulator.server import Simulator, serve

__all__ = [
    "CreateBehaviour",
    "CreateRecord",
    "Faults",
    "ScriptError",
    "Simulator",
    "Status",
    "Step",
    "TaskScript",
    "serve",
]
