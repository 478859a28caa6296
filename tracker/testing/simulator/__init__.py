"""A fake TensorsLab task API on loopback, for tests, demos and benchmarks.

`Simulator` serves `POST /v1/video/infobytaskid` as the OpenAPI contract describes, and
`POST /v1/images/infobytaskid` for image tasks (`TaskScript(..., kind="image")`), playing scripted
task lifecycles (`TaskScript` of `Step`s) and injecting `Faults`; `/_sim/...` is its admin API.
"""

from tracker.testing.simulator.scripts import Faults, ScriptError, Status, Step, TaskScript
from tracker.testing.simulator.server import Simulator, serve

__all__ = ["Faults", "ScriptError", "Simulator", "Status", "Step", "TaskScript", "serve"]
