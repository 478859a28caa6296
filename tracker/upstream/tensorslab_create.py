"""Creating TensorsLab tasks: the table of models and what each accepts, and the create call.

TensorsLab's create endpoints take multipart form data at `POST /v1/video/<model>` and
`POST /v1/images/<model>` and answer `{"code": 1000, "data": {"taskid": ...}}`. A request is
checked against `MODELS` before anything is sent (`validate_request`), so a bad option is
refused here, not by a paid upstream call. `TensorsLabCreator.create` sends one request, exactly
once: a create is paid work and upstream offers no idempotency key, so nothing here retries.
Its answer is a value: `Created`, `CreateRefused` (upstream said no: nothing was made),
`CreateNotSent` (the connection never opened: nothing was sent) or `CreateUnknown` (sent, but
no usable answer: a task may or may not exist).

Where TensorsLab's published clients and reference are silent (the form field of an image URL
for video models, the limits of zimage sizes), the table is conservative and says so.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

import requests
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from tracker.errors import InvalidInput, MissingAPIKey
from tracker.http_deadline import DeadlineExceeded, attempt_deadline, deadline_session
from tracker.settings import Settings
from tracker.upstream.names import IMAGE_PROVIDER, VIDEO_PROVIDER

__all__ = [
    "IMAGE_PROVIDER",
    "MAX_PROMPT_CHARS",
    "MODELS",
    "VIDEO_PROVIDER",
    "WHITESPACE",
    "CreateNotSent",
    "CreateRefused",
    "CreateResult",
    "CreateUnknown",
    "Created",
    "ModelSpec",
    "SubmissionRequest",
    "TensorsLabCreator",
    "creator_from_settings",
    "parse_create_response",
    "validate_request",
]

Kind = Literal["video", "image"]
MAX_PROMPT_CHARS = 8192  # TensorsLab's limit on a prompt
# Whitespace by every definition a client may hold: Python's `str.isspace`, Unicode's White_Space
# and ECMAScript's `\s` (what JSON Schema patterns use) disagree at the edges (U+001C-U+001F,
# U+FEFF), so the server refuses, and the API's schema states, the union of the three.
WHITESPACE = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680"
    + "".join(chr(code) for code in range(0x2000, 0x200B))
    + "\u2028\u2029\u202f\u205f\u3000\ufeff"
)
MAX_URL_CHARS = 2048
CODE_SUCCESS = 1000
_EXCERPT_CHARS = 200

VIDEO_RATIOS = ("16:9", "9:16", "1:1", "4:3", "3:4", "21:9")
IMAGE_RATIOS = ("9:16", "16:9", "3:4", "4:3", "1:1", "2:3", "3:2")
# seedreamv45 also takes a size WxH whose pixels lie in this range (TensorsLab's reference).
SEEDREAM45_MIN_PIXELS, SEEDREAM45_MAX_PIXELS = 3_686_400, 16_777_216
_SIZE = re.compile(r"^([1-9][0-9]{1,4})[x*]([1-9][0-9]{1,4})$")


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """One create endpoint: its kind, path and the options it accepts (empty: not offered)."""

    name: str
    kind: Kind
    durations_s: tuple[int, ...] = ()
    resolutions: tuple[str, ...] = ()
    ratios: tuple[str, ...] = ()
    sizes: Literal["", "seedream", "zimage"] = ""  # also WxH sizes as `resolution`
    image_url: bool = True
    max_batch_size: int = 0  # images per task; 0: the option is not offered
    default_resolution: str | None = None

    @property
    def path(self) -> str:
        return f"/v1/{'video' if self.kind == 'video' else 'images'}/{self.name}"

    @property
    def provider(self) -> str:
        """The provider whose status endpoint follows tasks of this model."""
        return VIDEO_PROVIDER if self.kind == "video" else IMAGE_PROVIDER


MODELS: Mapping[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            "seedancev2",
            "video",
            durations_s=tuple(range(5, 16)),
            resolutions=("480p", "720p", "1080p", "1440p"),
            ratios=VIDEO_RATIOS,
        ),
        ModelSpec(
            "seedancev15pro",
            "video",
            durations_s=tuple(range(5, 11)),
            resolutions=("480p", "720p", "1080p"),
            ratios=VIDEO_RATIOS,
        ),
        ModelSpec(
            "seedancev1profast",
            "video",
            durations_s=tuple(range(5, 11)),
            resolutions=("480p", "720p", "1080p"),
            ratios=VIDEO_RATIOS,
        ),
        ModelSpec(
            "seedreamv45",
            "image",
            resolutions=(*IMAGE_RATIOS, "2K", "4K"),
            sizes="seedream",
            max_batch_size=15,
        ),
        ModelSpec(
            "seedreamv4",
            "image",
            resolutions=IMAGE_RATIOS[:5],
            max_batch_size=15,
        ),
        # zimage's reference names only a size "W*H" (default 1024*1024) and no image input.
        ModelSpec("zimage", "image", sizes="zimage", image_url=False),
    )
}


@dataclass(frozen=True, slots=True)
class SubmissionRequest:
    """A checked create request: what is sent as form fields, and nothing secret."""

    kind: Kind
    model: str
    prompt: str
    options: Mapping[str, str | int] = field(default_factory=dict)

    @property
    def spec(self) -> ModelSpec:
        return MODELS[self.model]

    def form_fields(self) -> dict[str, str]:
        """The multipart fields, as TensorsLab's create endpoints name them."""
        fields = {"prompt": self.prompt}
        for name, value in self.options.items():
            fields[_FORM_NAMES.get(name, name)] = str(value)
        return fields

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "model": self.model, "prompt": self.prompt, **self.options}


# Our option names -> the form field (images take the source image's URL as `imageUrl`; the
# video reference documents only file uploads, so video models are sent the same field).
_FORM_NAMES = {"image_url": "imageUrl", "batch_size": "batchsize"}


def validate_request(
    kind: str,
    model: str,
    *,
    prompt: object,
    duration_s: object = None,
    resolution: object = None,
    ratio: object = None,
    image_url: object = None,
    batch_size: object = None,
) -> SubmissionRequest:
    """The request if `model` takes these options; else `InvalidInput` saying what is wrong."""
    spec = MODELS.get(model) if isinstance(model, str) else None
    known = [name for name, one in MODELS.items() if one.kind == kind]
    if kind not in ("video", "image"):
        raise InvalidInput(f"unknown kind {kind!r}: submit video or image")
    if spec is None or spec.kind != kind:
        raise InvalidInput(f"unknown {kind} model {model!r}; known: {', '.join(known)}")
    if not isinstance(prompt, str) or all(char in WHITESPACE for char in prompt):
        raise InvalidInput("the prompt is empty")
    if "\x00" in prompt or any("\ud800" <= char <= "\udfff" for char in prompt):
        raise InvalidInput("the prompt contains a NUL character or half of a surrogate pair")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise InvalidInput(
            f"the prompt is {len(prompt)} characters long; TensorsLab's limit is {MAX_PROMPT_CHARS}"
        )
    options: dict[str, str | int] = {}
    if duration_s is not None:
        options["duration"] = _duration(spec, duration_s)
    if resolution is not None:
        options["resolution"] = _resolution(spec, resolution)
    if ratio is not None:
        if not spec.ratios:
            hint = " (give the aspect ratio as the resolution)" if spec.kind == "image" else ""
            raise InvalidInput(f"{spec.name} takes no ratio{hint}")
        if ratio not in spec.ratios:
            raise InvalidInput(
                f"{spec.name} takes ratio {', '.join(spec.ratios)}; got {_shown(ratio)}"
            )
        options["ratio"] = str(ratio)
    if image_url is not None:
        if not spec.image_url:
            raise InvalidInput(f"{spec.name} takes no source image URL")
        options["image_url"] = _http_url(image_url)
    if batch_size is not None:
        if not spec.max_batch_size:
            raise InvalidInput(f"{spec.name} takes no batch size")
        if not _is_int(batch_size) or not 1 <= int(batch_size) <= spec.max_batch_size:  # type: ignore[call-overload]
            raise InvalidInput(
                f"{spec.name} makes 1 to {spec.max_batch_size} images per task; "
                f"got {_shown(batch_size)}"
            )
        options["batch_size"] = int(batch_size)  # type: ignore[call-overload]
    return SubmissionRequest(kind=spec.kind, model=spec.name, prompt=prompt, options=options)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _duration(spec: ModelSpec, value: object) -> int:
    if not spec.durations_s:
        raise InvalidInput(f"{spec.name} takes no duration")
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if not _is_int(value) or value not in spec.durations_s:
        low, high = spec.durations_s[0], spec.durations_s[-1]
        raise InvalidInput(
            f"{spec.name} makes videos of {low} to {high} seconds; got {_shown(value)}"
        )
    return int(value)


def _resolution(spec: ModelSpec, value: object) -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"the resolution must be a string, got {type(value).__name__}")
    if value in spec.resolutions:
        return value
    size = _SIZE.match(value)
    if size is not None and spec.sizes:
        width, height = int(size.group(1)), int(size.group(2))
        if spec.sizes == "zimage" and 256 <= width <= 4096 and 256 <= height <= 4096:
            return f"{width}*{height}"  # zimage's own notation
        pixels = width * height
        if spec.sizes == "seedream" and SEEDREAM45_MIN_PIXELS <= pixels <= SEEDREAM45_MAX_PIXELS:
            return f"{width}x{height}"
    allowed = list(spec.resolutions)
    if spec.sizes == "seedream":
        allowed.append(f"WxH of {SEEDREAM45_MIN_PIXELS:,} to {SEEDREAM45_MAX_PIXELS:,} pixels")
    elif spec.sizes == "zimage":
        allowed.append("W*H, each side 256 to 4096")
    if not allowed:
        raise InvalidInput(f"{spec.name} takes no resolution")
    raise InvalidInput(f"{spec.name} takes resolution {', '.join(allowed)}; got {_shown(value)}")


def _http_url(value: object) -> str:
    if not isinstance(value, str) or len(value) > MAX_URL_CHARS:
        raise InvalidInput(f"the image URL must be a string of at most {MAX_URL_CHARS} characters")
    try:
        parts = urlsplit(value)
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(f"the image URL must be an http:// or https:// URL; got {_shown(value)}")
    if any(char in WHITESPACE or char == "\x00" for char in value):
        raise InvalidInput("the image URL contains whitespace")
    return value


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:60] + "..."


# -- the create call ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Created:
    """Upstream made the task; `task_id` is what its status endpoint knows it by."""

    task_id: str
    payload: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CreateRefused:
    """Upstream answered and made nothing (code 9000 or 9999, or HTTP 4xx)."""

    message: str
    http_status: int | None = None


@dataclass(frozen=True, slots=True)
class CreateNotSent:
    """The connection was never made: nothing reached upstream."""

    message: str


@dataclass(frozen=True, slots=True)
class CreateUnknown:
    """The request may have reached upstream, and no usable answer came back."""

    message: str


CreateResult = Created | CreateRefused | CreateNotSent | CreateUnknown


class TensorsLabCreator:
    """Sends create requests, one attempt each. Authenticates as the status client does."""

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        auth_scheme: str = "Bearer",
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 30.0,
        session: requests.Session | None = None,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._timeout = (connect_timeout_s, read_timeout_s)
        self.deadline_s = connect_timeout_s + read_timeout_s
        self._session = deadline_session(session or requests.Session())
        self._session.headers.update(
            {
                "Authorization": f"{auth_scheme} {api_key}" if auth_scheme else api_key,
                "Accept": "application/json",
                "User-Agent": "tracker/0.1 (self-hosted task tracker)",
            }
        )
        # One attempt means one: requests' adapters retry nothing by default; say so anyway.
        for adapter in self._session.adapters.values():
            adapter.max_retries.total = 0  # type: ignore[attr-defined]

    def create(self, request: SubmissionRequest) -> CreateResult:
        # (None, value): a form field, sent as multipart/form-data like TensorsLab's clients do.
        files = {name: (None, value) for name, value in request.form_fields().items()}
        try:
            with attempt_deadline(self.deadline_s):
                response = self._session.post(
                    self._base_url + request.spec.path,
                    files=files,
                    timeout=self._timeout,
                    allow_redirects=False,
                )
        except DeadlineExceeded as error:
            return CreateUnknown(f"no answer within {self.deadline_s:g} s: {error}")
        except requests.ConnectTimeout:
            return CreateNotSent("could not connect in time (nothing was sent)")
        except requests.ConnectionError as error:
            if _never_connected(error):
                return CreateNotSent(f"could not connect: {_first_line(error)}")
            return CreateUnknown(f"connection lost after sending: {_innermost(error)}")
        except requests.Timeout as error:
            return CreateUnknown(f"timed out waiting for the answer: {type(error).__name__}")
        except Exception as error:  # urllib3 protocol errors can escape requests' wrapping
            return CreateUnknown(f"the request failed: {_first_line(error)}")
        return parse_create_response(status_code=response.status_code, text=response.text)

    def close(self) -> None:
        self._session.close()


def creator_from_settings(settings: Settings) -> TensorsLabCreator:
    """The creator for the configured key and base URL. Raises `MissingAPIKey` without a key."""
    if settings.tensorslab_api_key is None:
        raise MissingAPIKey(
            "TENSORSLAB_API_KEY is not set: tracker cannot create TensorsLab tasks without it "
            "(set it in the environment or in .env)"
        )
    return TensorsLabCreator(
        base_url=settings.tensorslab_base_url,
        api_key=settings.tensorslab_api_key.get_secret_value(),
        auth_scheme=settings.tensorslab_auth_scheme,
        connect_timeout_s=settings.tensorslab_connect_timeout_s,
        read_timeout_s=settings.tensorslab_read_timeout_s,
    )


def _never_connected(error: BaseException) -> bool:
    """Whether `error` (requests wraps urllib3's, which wrap the cause) says no connection was
    ever made: then nothing was sent."""
    pending, seen = [error], set()
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, NewConnectionError | ConnectTimeoutError):
            return True
        for inner in (getattr(current, "reason", None), current.__cause__, *current.args):
            if isinstance(inner, BaseException):
                pending.append(inner)
    return False


def _innermost(error: BaseException) -> str:
    """The root cause of a wrapped requests/urllib3 error, as `Type: message`."""
    current = error
    for _ in range(10):
        inner = getattr(current, "reason", None) or current.__cause__
        if not isinstance(inner, BaseException):
            inner = next((arg for arg in current.args if isinstance(arg, BaseException)), None)
        if inner is None:
            break
        current = inner
    return f"{type(current).__name__}: {_first_line(current)}"


def parse_create_response(*, status_code: int, text: str) -> CreateResult:
    """One create answer as a `CreateResult`. Pure, so every case is table-tested."""
    try:
        payload = json.loads(text)
    except ValueError:
        payload = None
    payload = payload if isinstance(payload, dict) else None
    message = payload.get("msg") if payload is not None else None
    said = message if isinstance(message, str) and message else _excerpt(text)
    if 400 <= status_code < 500:
        return CreateRefused(f"HTTP {status_code}: {said}", http_status=status_code)
    if status_code != 200:
        # A gateway's 5xx may come after upstream made the task: it cannot be told apart.
        return CreateUnknown(f"HTTP {status_code}: {said}")
    if payload is None:
        return CreateUnknown(f"the answer is not a JSON object: {_excerpt(text)}")
    code = payload.get("code")
    if code == CODE_SUCCESS:
        data = payload.get("data")
        task_id = data.get("taskid") if isinstance(data, dict) else None
        if isinstance(task_id, str) and task_id and len(task_id) <= 256:
            return Created(task_id=task_id, payload=payload)
        return CreateUnknown(f"code 1000 without a task ID: {_excerpt(text)}")
    if isinstance(code, int) and not isinstance(code, bool):
        return CreateRefused(f"code {code}: {said}", http_status=status_code)
    return CreateUnknown(f"`code` missing or not an integer: {_excerpt(text)}")


def _excerpt(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _EXCERPT_CHARS else text[:_EXCERPT_CHARS] + "..."


def _first_line(error: BaseException) -> str:
    return str(error).splitlines()[0][:_EXCERPT_CHARS] if str(error) else type(error).__name__
