"""The whole CTA chain through the service's HTTP API, DL0 to DL4, with its provenance.

Run it against a running service (``bash scripts/serve.sh``)::

    .venv/bin/python scripts/cta_demo.py --token-file var/admin_token

Each stage is a UWS job created with ``PHASE=RUN`` and followed with blocking ``WAIT``
(no polling loop); each takes the previous stage's result by its URL, so the service
links them as the same entity. It ends by fetching the provenance graph of the
spectrum back to the DL0 file (ProvSAP, ``DIRECTION=BACK``, ``DEPTH=ALL``) as SVG.
Nothing here calls the service's code: only HTTP, as any client would.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree import ElementTree

import requests

NS = {"uws": "http://www.ivoa.net/xml/UWS/v1.0", "xlink": "http://www.w3.org/1999/xlink"}
FINAL = {"COMPLETED", "ERROR", "ABORTED"}


class JobFailed(RuntimeError):
    pass


@dataclass
class Client:
    """A minimal UWS client: create, wait (blocking WAIT), results."""

    base: str
    token: str
    session: requests.Session = field(default_factory=requests.Session)

    def __post_init__(self) -> None:
        self.base = self.base.rstrip("/")
        self.session.headers["Authorization"] = f"Bearer {self.token}"

    def create(self, jobname: str, params: dict[str, str]) -> str:
        r = self.session.post(
            f"{self.base}/rest/{jobname}", data={**params, "PHASE": "RUN"}, allow_redirects=False
        )
        if r.status_code != 303:
            raise JobFailed(f"{jobname}: HTTP {r.status_code}: {r.text.strip()}")
        return r.headers["Location"]

    def job(self, url: str, wait: int | None = None) -> ElementTree.Element:
        params = {"WAIT": str(wait)} if wait is not None else None
        r = self.session.get(url, params=params, timeout=(wait or 0) + 60)
        r.raise_for_status()
        return ElementTree.fromstring(r.content)

    def wait(self, url: str, on_change: Callable[[str, float], None], timeout: float) -> str:
        """Block until the job is final; ``on_change(phase, elapsed)`` at every change."""
        t0 = time.monotonic()
        phase = ""
        while time.monotonic() - t0 < timeout:
            doc = self.job(url, wait=30 if phase else None)
            phase = doc.findtext("uws:phase", namespaces=NS) or "UNKNOWN"
            on_change(phase, time.monotonic() - t0)
            if phase in FINAL:
                return phase
        raise JobFailed(f"{url} still {phase} after {timeout:.0f} s")

    def results(self, url: str) -> dict[str, str]:
        doc = self.job(url)
        return {
            r.get("id", ""): r.get(f"{{{NS['xlink']}}}href", "")
            for r in doc.findall("uws:results/uws:result", NS)
        }

    def error(self, url: str) -> str:
        return self.session.get(f"{url}/error").text.strip()


def stages(
    n_showers: int, obs_id: int, seed: int, duration: int = 1800, protons: float = 0.7
) -> list[tuple[str, str, Callable[[dict], dict]]]:
    """(stage name, job definition, parameters from earlier results) for the whole chain."""
    return [
        (
            "DL0 simulation",
            "simulation",
            lambda r: {
                "particle": "mixed",
                "n_showers": str(n_showers),
                "proton_fraction": str(protons),
                "obs_id": str(obs_id),
                "obs_duration": str(duration),
                "seed": str(seed),
            },
        ),
        ("DL0 → DL1 calibration", "calibration", lambda r: {"dl0": r["simulation"]["dl0"]}),
        ("DL1 → DL2 reconstruction", "reconstruction", lambda r: {"dl1": r["calibration"]["dl1"]}),
        (
            "DL2 → DL3 analysis",
            "analysis",
            lambda r: {"dl2": r["reconstruction"]["dl2"], "obs_id": str(obs_id)},
        ),
        (
            "DL3 → DL4 maps",
            "gammapy_maps",
            lambda r: {"obs_ids": str(obs_id), "nxpix": "100", "nypix": "100", "binsz": "0.04"},
        ),
        ("DL3 → DL4 spectrum", "gammapy_spectra", lambda r: {"obs_ids": str(obs_id), "nbins": "8"}),
        (
            "DL3 → DL4 light curve",
            "gammapy_lightcurve",
            lambda r: {"obs_ids": str(obs_id), "time_bin": "5"},
        ),
    ]


def run_chain(
    client: Client,
    n_showers: int = 30000,
    obs_id: int = 9001,
    seed: int = 11,
    timeout: float = 900,
    show: Callable[[str], None] = print,
    only: tuple[str, ...] = (),
    duration: int = 1800,
    protons: float = 0.7,
) -> dict[str, str]:
    """Run the stages in order (``only``: just those job definitions); {definition: URL}."""
    jobs: dict[str, str] = {}
    results: dict[str, dict[str, str]] = {}
    plan = [
        st for st in stages(n_showers, obs_id, seed, duration, protons) if not only or st[1] in only
    ]
    for i, (label, jobname, params_of) in enumerate(plan, 1):
        url = client.create(jobname, params_of(results))
        jobs[jobname] = url

        def progress(phase: str, elapsed: float, i: int = i, label: str = label) -> None:
            bar = "#" * i + "." * (len(plan) - i)
            show(f"[{bar}] {i}/{len(plan)} {label}: {phase} ({elapsed:.0f} s)")

        phase = client.wait(url, progress, timeout)
        if phase != "COMPLETED":
            raise JobFailed(f"{label} ({url}) ended {phase}: {client.error(url)}")
        results[jobname] = client.results(url)
    return jobs


def provenance_svg(client: Client, job_url: str) -> bytes:
    """The spectrum's provenance back to the DL0 file, as SVG (ProvSAP)."""
    job_id = job_url.rstrip("/").rsplit("/", 1)[1]
    r = client.session.get(
        f"{client.base}/provsap",
        params={"ID": job_id, "DEPTH": "ALL", "DIRECTION": "BACK", "RESPONSEFORMAT": "PROV-SVG"},
    )
    r.raise_for_status()
    return r.content


def dl4_steps_back(client: Client, maps_url: str) -> dict[str, list[str]]:
    """ProvSAP BACK at DEPTH=ALL from the DL4 count map (found by the entity id stamped
    into its FITS header): {job activity: names of its recorded steps}, e.g. the
    calibration job's ``ctapipe-process``. Shows that a DL4 product found anywhere leads
    back, through its header, to every tool run of the chain down to DL0."""
    from astropy.io import fits

    r = client.session.get(f"{maps_url}/results/count_map")
    r.raise_for_status()
    with fits.open(io.BytesIO(r.content)) as hdus:
        entity_id = str(hdus[0].header["UWSENTID"])
    r = client.session.get(
        f"{client.base}/provsap",
        params={"ID": entity_id, "DEPTH": "ALL", "DIRECTION": "BACK"},
    )
    r.raise_for_status()
    doc = r.json()

    def label(activity: dict) -> str:
        value = activity.get("prov:label", "")
        value = value[0] if isinstance(value, list) else value
        return str(value.get("$", "") if isinstance(value, dict) else value)

    steps: dict[str, list[str]] = {}
    for rel in doc.get("wasInformedBy", {}).values():
        kinds = rel.get("prov:type", [])
        kinds = kinds if isinstance(kinds, list) else [kinds]
        if any("hadStep" in str(k.get("$", k) if isinstance(k, dict) else k) for k in kinds):
            step = doc["activity"].get(rel["prov:informant"], {})
            steps.setdefault(rel["prov:informed"], []).append(label(step))
    return steps


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--url", default="http://127.0.0.1:8080")
    ap.add_argument("--token", help="a user token (or --token-file)")
    ap.add_argument("--token-file", type=Path, default=Path("var/admin_token"))
    ap.add_argument("--showers", type=int, default=30000, help="simulated showers in a 30-min run")
    ap.add_argument("--obs-id", type=int, default=int(time.time()) % 100000 + 100000)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--out", type=Path, default=Path("demo_out"))
    args = ap.parse_args(argv)
    token = args.token or args.token_file.read_text().strip()
    client = Client(args.url, token)
    tty = sys.stdout.isatty()

    def show(line: str) -> None:
        print(("\r\033[K" + line) if tty else line, end="" if tty else "\n", flush=True)

    t0 = time.monotonic()
    try:
        jobs = run_chain(client, args.showers, args.obs_id, args.seed, show=show)
    except JobFailed as exc:
        print(f"\nFAILED: {exc}", file=sys.stderr)
        return 1
    print(f"\nchain done in {time.monotonic() - t0:.0f} s")
    for jobname, url in jobs.items():
        print(f"  {jobname:20s} {url}")
    spectra = jobs["gammapy_spectra"]
    fit = json.loads(client.session.get(f"{spectra}/results/fit_result").text)
    print(f"fitted spectral index {fit.get('index')} ± {fit.get('index_err')}")
    args.out.mkdir(parents=True, exist_ok=True)
    svg = args.out / "spectrum_provenance.svg"
    svg.write_bytes(provenance_svg(client, spectra))
    print(f"provenance of the spectrum back to DL0: {svg}")
    for activity, names in sorted(dl4_steps_back(client, jobs["gammapy_maps"]).items()):
        print(f"  from the DL4 count map back to {activity}: steps {', '.join(names)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
