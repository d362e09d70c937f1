"""A Python client for IVOA UWS 1.1 services, with this service's extras when present.

Any UWS 1.1 service works: job lists, creation, phase changes, WAIT, results, deletion.
When the service also publishes job definitions (``/jdl/<name>/json``), parameters are
checked against them before anything is sent; when it serves progress
(``…/<id>/progress``) or provenance (``…/<id>/provenance/<format>``) those are read too.
An extra the service does not have is simply absent (``None``), never an error.

Built on ``requests`` (a maintained HTTP client): one session per :class:`Client`, so a
script's requests reuse one connection.

    job = Client(url, token).submit("gammapy_maps", {"obs_ids": "1001 1002"}).run()
    job.wait().download("out/")
"""

from __future__ import annotations

import mimetypes
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import requests

from uws_client.documents import (
    ACTIVE_PHASES,
    FINAL_PHASES,
    JobInfo,
    JobRef,
    ResultRef,
    parse_job,
    parse_job_list,
)
from uws_client.params import check_parameters

PROVENANCE_FORMATS = ("json", "xml", "provn", "votable", "svg")
# The longest single WAIT the client asks for; services cap it themselves (UWS 1.1 §2.2.1.1).
MAX_WAIT = 60
# While a job runs and the service reports progress, WAIT in shorter steps so that the
# progress shown moves; still blocking requests (no busy polling).
PROGRESS_WAIT = 5
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


class UWSClientError(Exception):
    """An HTTP error from the service, or a job that did not end as asked."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ParameterError(UWSClientError):
    """Parameters that the job definition refuses (checked before submitting)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems), 400)
        self.problems = problems


@dataclass(frozen=True)
class Progress:
    """A job's progress as the service reports it (``GET …/<id>/progress``)."""

    fraction: float | None
    message: str
    updated: str | None = None
    elapsed: float | None = None
    expected_end: str | None = None


class Client:
    """One UWS service at ``url`` (its root: job lists are ``<url>/rest/<name>``; a URL
    ending in a job list, e.g. ``https://host/tap/async``, is one job list)."""

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        session: requests.Session | None = None,
        timeout: float = 30,
    ) -> None:
        self.url = url.rstrip("/")
        self.session = session or requests.Session()
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"
        self.session.headers.setdefault("User-Agent", "uws-client/0.1")
        self.timeout = timeout
        self._definitions: dict[str, dict[str, Any] | None] = {}

    # ------------------------------------------------------------------ HTTP
    def request(self, method: str, url: str, **kw: Any) -> requests.Response:
        """One request; a 4xx/5xx becomes :class:`UWSClientError` with the service's text."""
        kw.setdefault("timeout", self.timeout)
        kw.setdefault("allow_redirects", False)
        try:
            r = self.session.request(method, url, **kw)
        except requests.RequestException as exc:
            raise UWSClientError(f"{method} {url}: {exc}") from None
        if r.status_code >= 400:
            text = r.text.strip()
            if len(text) > 500:
                text = text[:500] + "…"
            raise UWSClientError(f"{r.status_code} from {method} {url}: {text}", r.status_code)
        return r

    def _absolute(self, path: str) -> str:
        return path if "://" in path else f"{self.url}/{path.lstrip('/')}"

    # --------------------------------------------------------- job definitions
    def job_lists(self) -> list[str]:
        """The names of the job lists (``GET /rest``: this service's index)."""
        r = self.request("GET", self._absolute("rest"), headers={"Accept": "application/json"})
        try:
            urls = r.json()["job_lists"]
        except (ValueError, KeyError, TypeError):
            raise UWSClientError(f"{self.url}/rest does not list job lists") from None
        return [u.rstrip("/").rsplit("/", 1)[-1] for u in urls]

    def definitions(self) -> list[dict[str, Any]]:
        """Job definitions as the service describes them (``/jdl``), or just the names
        of its job lists when it publishes none."""
        try:
            r = self.request("GET", self._absolute("jdl"))
            data = r.json()
            if isinstance(data, list):
                return data
        except (UWSClientError, ValueError):
            pass
        return [{"name": n} for n in self.job_lists()]

    def definition(self, name: str) -> dict[str, Any] | None:
        """A job definition's JSON form, or None if the service publishes none."""
        if name not in self._definitions:
            try:
                r = self.request("GET", self._absolute(f"jdl/{quote(name, safe='')}/json"))
                self._definitions[name] = r.json()
            except UWSClientError as exc:
                if exc.status is not None and exc.status not in (404, 405, 501):
                    raise
                self._definitions[name] = None
            except ValueError:
                self._definitions[name] = None
        return self._definitions[name]

    # ---------------------------------------------------------------- jobs
    def submit(
        self,
        name: str,
        parameters: Mapping[str, Any] | None = None,
        *,
        files: Mapping[str, str | os.PathLike[str]] | None = None,
        run: bool = False,
        check: bool = True,
    ) -> Job:
        """Create a job of definition ``name``; ``run=True`` starts it at once.

        With ``check`` (default), parameters are first checked against the job definition
        when the service publishes one, so a typo is reported before a job exists.
        """
        params = {k: _text(v) for k, v in (parameters or {}).items()}
        files = dict(files or {})
        if check:
            definition = self.definition(name)
            if definition is not None:
                problems = check_parameters(definition, params, files)
                if problems:
                    raise ParameterError(problems)
        data = list(params.items())
        if run:
            data.append(("PHASE", "RUN"))
        handles = []
        try:
            upload = {}
            for key, path in files.items():
                fh = open(path, "rb")  # noqa: SIM115 - closed below
                handles.append(fh)
                upload[key] = (Path(path).name, fh)
            r = self.request(
                "POST",
                self._absolute(f"rest/{quote(name, safe='')}"),
                data=data,
                files=upload or None,
            )
        finally:
            for fh in handles:
                fh.close()
        location = r.headers.get("Location")
        if r.status_code != 303 or not location:
            raise UWSClientError(
                f"creating a {name} job: expected 303 with a Location, got {r.status_code}"
            )
        return Job(self, self._absolute(location))

    def job(self, ref: str) -> Job:
        """A job from its URL, ``<name>/<id>``, or bare id (looked up in every job list)."""
        if "://" in ref:
            return Job(self, ref)
        if "/" in ref:
            name, job_id = ref.strip("/").rsplit("/", 1)
            return Job(self, self._absolute(f"rest/{name}/{job_id}"))
        for name in self.job_lists():
            url = self._absolute(f"rest/{quote(name, safe='')}/{quote(ref, safe='')}")
            r = self.session.get(url, timeout=self.timeout, allow_redirects=False)
            if r.status_code == 200:
                return Job(self, url)
        raise UWSClientError(f"no job {ref} in any job list of {self.url}", 404)

    def jobs(
        self,
        name: str | None = None,
        *,
        phases: Iterable[str] = (),
        last: int | None = None,
        after: str | None = None,
    ) -> list[tuple[str, JobRef]]:
        """``(job list name, job reference)`` pairs, from one job list or all of them."""
        names = [name] if name else self.job_lists()
        params: list[tuple[str, str]] = [("PHASE", p.upper()) for p in phases]
        if last is not None:
            params.append(("LAST", str(last)))
        if after:
            params.append(("AFTER", after))
        out = []
        for n in names:
            r = self.request("GET", self._absolute(f"rest/{quote(n, safe='')}"), params=params)
            out.extend((n, ref) for ref in parse_job_list(r.content))
        return out


class Job:
    """One job, by its URL. Methods that change it return it, so calls chain."""

    def __init__(self, client: Client, url: str) -> None:
        self.client = client
        self.url = url.rstrip("/")
        path = urlsplit(self.url).path.rstrip("/").split("/")
        self.id = path[-1]
        self.list_name = path[-2] if len(path) >= 2 else ""
        self._info: JobInfo | None = None

    def __repr__(self) -> str:
        return f"Job({self.url!r})"

    # ------------------------------------------------------------ reading
    def info(self, refresh: bool = True) -> JobInfo:
        if refresh or self._info is None:
            self._info = parse_job(self.client.request("GET", self.url).content)
        return self._info

    @property
    def phase(self) -> str:
        return self.info().phase

    def text(self, resource: str) -> str:
        """A plain-text job resource (``error``, ``stdout``, ``quote``…)."""
        return self.client.request("GET", f"{self.url}/{resource}").text

    def progress(self) -> Progress | None:
        """The job's latest progress, or None when the service reports none."""
        try:
            r = self.client.request("GET", f"{self.url}/progress")
            data = r.json()
        except UWSClientError as exc:
            if exc.status in (404, 405, 501):
                return None
            raise
        except ValueError:
            return None
        fraction = data.get("fraction")
        return Progress(
            fraction=float(fraction) if isinstance(fraction, int | float) else None,
            message=str(data.get("message") or ""),
            updated=data.get("updated"),
            elapsed=data.get("elapsed"),
            expected_end=data.get("expected_end"),
        )

    def results(self) -> list[ResultRef]:
        return self.info().results

    def provenance(self, fmt: str = "json") -> bytes:
        if fmt not in PROVENANCE_FORMATS:
            raise UWSClientError(
                f"provenance format must be one of {', '.join(PROVENANCE_FORMATS)}"
            )
        return self.client.request("GET", f"{self.url}/provenance/{fmt}").content

    # ------------------------------------------------------------ changing
    def run(self) -> Job:
        self.client.request("POST", f"{self.url}/phase", data={"PHASE": "RUN"})
        return self

    def abort(self) -> Job:
        self.client.request("POST", f"{self.url}/phase", data={"PHASE": "ABORT"})
        return self

    def delete(self) -> None:
        self.client.request("DELETE", self.url)

    def set_parameters(self, parameters: Mapping[str, Any], check: bool = True) -> Job:
        """Change parameters of a PENDING job (the service refuses it later)."""
        params = {k: _text(v) for k, v in parameters.items()}
        if check:
            definition = self.client.definition(self.list_name)
            if definition is not None:
                merged = dict(self.info().parameters)
                merged.update(params)
                problems = check_parameters(definition, merged, {})
                if problems:
                    raise ParameterError(problems)
        self.client.request("POST", f"{self.url}/parameters", data=params)
        return self

    # ------------------------------------------------------------ waiting
    def wait(
        self,
        timeout: float | None = None,
        on_update: Callable[[JobInfo, Progress | None], None] | None = None,
    ) -> Job:
        """Block until the job is final, through UWS WAIT (never busy polling).

        ``on_update(info, progress)`` is called at the start and after every WAIT
        answer. A PENDING job is not waited for (it would wait forever): an error.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        info = self.info()
        has_progress = True
        while True:
            progress = self.progress() if has_progress and info.phase in ACTIVE_PHASES else None
            if progress is None:
                has_progress = has_progress and info.phase not in ACTIVE_PHASES
            if on_update:
                on_update(info, progress)
            if info.phase in FINAL_PHASES:
                return self
            if info.phase not in ACTIVE_PHASES:
                raise UWSClientError(f"job {self.id} is {info.phase}: run it before waiting")
            step = PROGRESS_WAIT if progress is not None else MAX_WAIT
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise UWSClientError(f"job {self.id} still {info.phase} after {timeout} s")
                step = max(1, min(step, int(left + 0.999)))
            r = self.client.request(
                "GET",
                self.url,
                params={"WAIT": str(step), "PHASE": info.phase},
                timeout=step + self.client.timeout,
            )
            info = self._info = parse_job(r.content)

    def raise_for_phase(self) -> Job:
        """Raise :class:`UWSClientError` with the job's error unless it COMPLETED."""
        info = self.info(refresh=False)
        if info.phase != "COMPLETED":
            detail = info.error or ""
            raise UWSClientError(
                f"job {self.id} ended {info.phase}" + (f": {detail}" if detail else "")
            )
        return self

    def download(self, directory: str | os.PathLike[str], names: Iterable[str] = ()) -> list[Path]:
        """Save the job's results (all, or those named) into ``directory``; returns paths.

        File names come from the result ids, made safe: a result can never write outside
        ``directory``.
        """
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        wanted = set(names)
        saved = []
        for result in self.info().results:
            if wanted and result.id not in wanted:
                continue
            r = self.client.request("GET", result.href, stream=True)
            target = out / _file_name(result, r.headers.get("Content-Disposition", ""))
            tmp = target.with_name(target.name + ".part")
            with open(tmp, "wb") as fh:
                for chunk in r.iter_content(1 << 16):
                    fh.write(chunk)
            tmp.replace(target)
            saved.append(target)
        return saved


def _file_name(result: ResultRef, disposition: str) -> str:
    """A local file name for a result: the service's (Content-Disposition) file name,
    else the result id with an extension for its content type; never a path."""
    match = re.search(r'filename="?([^";]+)"?', disposition)
    if match:
        name = match.group(1).strip().rsplit("/", 1)[-1]
    else:
        ext = mimetypes.guess_extension((result.mime_type or "").split(";")[0].strip()) or ""
        name = result.id if "." in result.id else result.id + ext
    name = _SAFE_NAME.sub("_", name).lstrip(".") or "result"
    return name[:200]


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return " ".join(_text(v) for v in value)
    return str(value)
