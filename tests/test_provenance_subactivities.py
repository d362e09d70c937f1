"""Sub-activities in a job's provenance, and provenance stamped into its products.

A job script records its steps with workers.jobside (or ctapipe's provenance logs);
the service puts them into the job's ProvenanceDM document as activities linked to the
job's activity (``wasInformedBy`` typed ``voprov:hadStep``), with their files linked by
SHA-256 to the job's entities. FITS and HDF5 results are stamped with the job URL,
activity id, entity id and a ProvSAP URL before they are hashed.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from lxml import etree

from tests.conftest import Client, LiveServer, make_settings
from workers import jobside

NS = {"uws": "http://www.ivoa.net/xml/UWS/v1.0", "xlink": "http://www.w3.org/1999/xlink"}

STEP_SCRIPT = """
import os, sys
sys.path.insert(0, os.environ["UWS_LIB"])
from workers import jobside

p = jobside.parameters()
with open("raw.txt", "w") as f:
    f.write(p.get("text", "x"))
with jobside.activity("toy-fit", config={"text": p["text"], "model": {"index": 2}},
                      packages=("prov",)) as act:
    act.used("raw.txt", "raw")
    out = jobside.output_path("image", "image.fits")
    cards = ["SIMPLE  =                    T", "BITPIX  =                    8",
             "NAXIS   =                    0", "END"]
    with open(out, "wb") as f:
        f.write("".join(c.ljust(80) for c in cards).ljust(2880).encode())
    act.generated(out, "image")
jobside.write_context({"toy": "1.0"})
jobside.progress(1.0, "done")
"""

DEFINITION = """<VOTABLE xmlns="http://www.ivoa.net/xml/VOTable/v1.3" version="1.3">
  <RESOURCE ID="step_job" name="step_job" type="meta" utype="voprov:ActivityDescription">
    <DESCRIPTION>Records a step with workers.jobside and writes a FITS image</DESCRIPTION>
    <PARAM name="version" value="1" arraysize="*" datatype="char"
      utype="voprov:ActivityDescription.version"/>
    <PARAM name="executionDuration" value="60" datatype="int"
      utype="uws:Job.executionDuration"/>
    <PARAM name="script" value="&quot;$UWS_PYTHON&quot; {script}" arraysize="*"
      datatype="char"/>
    <GROUP name="InputParams">
      <PARAM name="text" datatype="char" arraysize="*" value="hello"/>
    </GROUP>
    <GROUP name="Used"/>
    <GROUP name="Generated">
      <GROUP name="image" utype="voprov:WasGeneratedBy">
        <PARAM name="default" value="image.fits" arraysize="*" datatype="char"
          utype="voprov:Entity.id"/>
        <PARAM name="content_type" value="application/fits" arraysize="*" datatype="char"
          utype="voprov:EntityDescription.content_type"/>
      </GROUP>
    </GROUP>
  </RESOURCE>
</VOTABLE>
"""


def results(c: Client, job: str) -> dict[str, str]:
    doc = etree.fromstring(c.get(job).content)
    return {
        r.get("id"): r.get("{http://www.w3.org/1999/xlink}href")
        for r in doc.findall("uws:results/uws:result", NS)
    }


def provenance(c: Client, job: str, timeout: float = 60) -> dict:
    """The job's PROV-JSON, once the final hook has written it."""
    deadline = time.monotonic() + timeout
    while "provenance_json" not in results(c, job):
        assert time.monotonic() < deadline, f"no provenance for {job}"
        time.sleep(0.2)
    r = c.get(job + "/provenance/json")
    assert r.status_code == 200, r.text
    return json.loads(r.text)


def steps_of(doc: dict, job: str) -> dict[str, dict]:
    """{step name: step activity} of ``job``'s activity (``wasInformedBy`` + hadStep)."""
    job_id = job.rsplit("/", 1)[1]
    job_act = next(a for a in doc["activity"] if a.endswith(job_id))
    found = {}
    for rel in doc.get("wasInformedBy", {}).values():
        if rel["prov:informed"] == job_act and "voprov:hadStep" in value(rel["prov:type"]):
            act = doc["activity"][rel["prov:informant"]]
            found[value(act["prov:label"])[0]] = {"id": rel["prov:informant"], **act}
    return found


def files_of(doc: dict, step_id: str, relation: str, key: str) -> list[str]:
    return [r[key] for r in doc.get(relation, {}).values() if r.get("prov:activity") == step_id]


def value(attr: object) -> list[str]:
    items = attr if isinstance(attr, list) else [attr]
    return [i.get("$") if isinstance(i, dict) else i for i in items]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, Client]]:
    root = Path(tmp_path_factory.mktemp("steps"))
    script = root / "step.py"
    script.write_text(STEP_SCRIPT)
    settings = make_settings(root)
    (settings.job_definitions_dir / "step_job_vot.xml").write_text(DEFINITION.format(script=script))
    live = LiveServer(settings)
    yield live, live.add_user("alice")
    live.stop()


def test_step_in_prov_json_and_stamped_fits(server: tuple[LiveServer, Client]) -> None:
    live, c = server
    job = c.create("step_job", {"text": "abc", "PHASE": "RUN"})
    assert c.wait_final(job) == "COMPLETED", c.get(job + "/error").text
    doc = provenance(c, job)
    job_id = job.rsplit("/", 1)[1]
    steps = steps_of(doc, job)
    assert set(steps) == {"toy-fit"}
    step = steps["toy-fit"]
    assert "voprov:ActivityFlow" in str(doc["activity"][f"job:step_job/{job_id}"]["prov:type"])
    assert step["prov:startTime"] <= step["prov:endTime"]
    assert any(v.startswith("prov==") for v in value(step["uwsp:package"]))
    # configuration as parameters of the step
    params = {
        value(p["prov:name"])[0]: value(p["prov:value"])[0]
        for pid, p in doc["entity"].items()
        if pid.startswith(step["id"] + "/parameters/")
    }
    assert params == {"text": "abc", "model": '{"index":2}'}
    # the generated FITS is the job's own result entity (same SHA-256 after the stamp)
    (generated,) = files_of(doc, step["id"], "wasGeneratedBy", "prov:entity")
    result_entity = doc["entity"][generated]
    assert generated.startswith("ent:ent_")
    (used,) = files_of(doc, step["id"], "used", "prov:entity")
    assert used.startswith(f"job:step_job/{job_id}/files/raw.txt")
    # the product names its job, activity and entity; its SHA-256 is the recorded one
    image = c.get(job + "/results/image").content
    path = Path(live.settings.var_dir) / "image.fits"
    path.write_bytes(image)
    refs = jobside.read_fits_refs(str(path))
    assert refs["entity_id"] == generated.removeprefix("ent:")
    assert refs["job_url"] == f"{live.base}{job}"
    assert refs["activity_id"] == f"job:step_job/{job_id}"
    assert refs["provsap_url"] == f"{live.base}/provsap?ID={refs['entity_id']}&DEPTH=ALL"
    assert hashlib.sha256(image).hexdigest() == value(result_entity["uwsp:sha256"])[0]
    # ProvSAP from the file's own id walks back into the step
    back = c.get("/provsap", params={"ID": refs["entity_id"], "DEPTH": "ALL"})
    assert back.status_code == 200, back.text
    assert set(steps_of(json.loads(back.text), job)) == {"toy-fit"}


def test_a_stamp_cannot_take_another_entity_id(server: tuple[LiveServer, Client]) -> None:
    """A script claiming an existing entity's id in .uws/stamped.json gets a new id."""
    live, c = server
    first = c.create("step_job", {"PHASE": "RUN"})
    assert c.wait_final(first) == "COMPLETED"
    taken = steps_of(provenance(c, first), first)["toy-fit"]
    (taken_id,) = files_of(provenance(c, first), taken["id"], "wasGeneratedBy", "prov:entity")
    second = c.create("step_job", {"text": "2"})
    job_dir = Path(live.settings.jobs_dir) / second.rsplit("/", 1)[1]
    (job_dir / ".uws").mkdir(parents=True, exist_ok=True)
    (job_dir / ".uws/stamped.json").write_text(
        json.dumps({"image.fits": taken_id.removeprefix("ent:")})
    )
    c.post(second + "/phase", data={"PHASE": "RUN"})
    assert c.wait_final(second) == "COMPLETED"
    doc = provenance(c, second)
    (gen,) = files_of(doc, steps_of(doc, second)["toy-fit"]["id"], "wasGeneratedBy", "prov:entity")
    assert gen != taken_id and gen.startswith("ent:ent_")


# --------------------------------------------------------------------- the CTA chain


@pytest.fixture(scope="module")
def cta(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, Client]]:
    """A server with the project's job definitions (the CTA ones), two pool slots."""
    from uws_server.config import PROJECT_ROOT

    root = Path(tmp_path_factory.mktemp("cta_steps"))
    live = LiveServer(
        make_settings(root, job_definitions_dir=PROJECT_ROOT / "job_definitions", local_slots=2)
    )
    yield live, live.add_user("scientist")
    live.stop()


def run(c: Client, jobname: str, params: dict[str, str], timeout: float = 600) -> str:
    job = c.create(jobname, {**params, "PHASE": "RUN"})
    phase = c.wait_final(job, timeout=timeout)
    assert phase == "COMPLETED", (jobname, c.get(job + "/error").text)
    return job


def entity_of(doc: dict, job: str, result: str) -> str:
    """The id (``ent:...``) of ``job``'s result ``result`` in a PROV-JSON document."""
    for eid, e in doc["entity"].items():
        if str(e.get("prov:location", "")).endswith(f"{job}/results/{result}"):
            return eid
    raise AssertionError(f"no entity for {job} {result}")


@pytest.mark.science
def test_ctapipe_steps_in_the_chain(cta: tuple[LiveServer, Client]) -> None:
    """simulation -> calibration -> reconstruction through HTTP: the calibration job's
    PROV-JSON holds ctapipe-process with its DL0 input, DL1 output and ctapipe version;
    ProvSAP BACK from the DL2 product at full depth reaches that step; DL1/DL2 carry
    their provenance references as HDF5 attributes."""
    import tables

    live, c = cta
    sim = run(
        c,
        "simulation",
        {"particle": "gamma", "n_showers": "150", "obs_id": "77", "obs_duration": "60"},
    )
    sim_url = results(c, sim)["dl0"]
    cal = run(c, "calibration", {"dl0": sim_url})
    reco = run(c, "reconstruction", {"dl1": results(c, cal)["dl1"], "apply_models": "false"})
    doc = provenance(c, cal)
    steps = steps_of(doc, cal)
    assert "ctapipe-process" in steps, list(steps)
    step = steps["ctapipe-process"]
    dl0 = entity_of(provenance(c, sim), sim, "dl0")
    dl1 = entity_of(doc, cal, "dl1")
    assert dl0 in files_of(doc, step["id"], "used", "prov:entity")
    assert dl1 in files_of(doc, step["id"], "wasGeneratedBy", "prov:entity")
    from importlib.metadata import version

    assert f"ctapipe=={version('ctapipe')}" in value(step["uwsp:package"])
    # ProvSAP BACK from the DL2 product, all the way: the calibration's step is there
    dl2 = entity_of(provenance(c, reco), reco, "dl2").removeprefix("ent:")
    back = c.get("/provsap", params={"ID": dl2, "DEPTH": "ALL", "DIRECTION": "BACK"})
    assert back.status_code == 200, back.text
    chain = json.loads(back.text)
    assert "ctapipe-process" in steps_of(chain, cal)
    assert any(a.endswith(sim.rsplit("/", 1)[1]) for a in chain["activity"])
    # the HDF5 products name their job and entity; the recorded hash is of that file
    for job, name, eid in ((cal, "dl1", dl1), (reco, "dl2", "ent:" + dl2)):
        data = c.get(f"{job}/results/{name}").content
        path = Path(live.settings.var_dir) / f"{name}.h5"
        path.write_bytes(data)
        with tables.open_file(path) as f:
            assert f.root._v_attrs["uws_entity_id"] == eid.removeprefix("ent:")
            assert f.root._v_attrs["uws_job_url"] == f"{live.base}{job}"
        recorded = provenance(c, job)["entity"][eid]["uwsp:sha256"]
        assert hashlib.sha256(data).hexdigest() == value(recorded)[0]


@pytest.mark.science
def test_dl3_and_dl4_products_name_their_job(cta: tuple[LiveServer, Client]) -> None:
    """The fast path simulate_dl3 -> gammapy_maps: the DL3 observation's and the DL4
    count map's FITS headers name their job and entity; their SHA-256 is the recorded
    one."""
    live, c = cta
    sim = run(c, "simulate_dl3", {"first_obs_id": "3001", "n_obs": "1", "livetime": "10"})
    maps = run(c, "gammapy_maps", {"obs_ids": "3001", "nxpix": "30", "nypix": "30"})
    doc = provenance(c, maps)
    for name in ("count_map",):
        data = c.get(f"{maps}/results/{name}").content
        path = Path(live.settings.var_dir) / f"{name}.fits"
        path.write_bytes(data)
        refs = jobside.read_fits_refs(str(path))
        eid = entity_of(doc, maps, name)
        assert refs["entity_id"] == eid.removeprefix("ent:")
        assert refs["job_url"] == f"{live.base}{maps}"
        assert hashlib.sha256(data).hexdigest() == value(doc["entity"][eid]["uwsp:sha256"])[0]
    # the DL3 observation (gzipped FITS, stamped when it entered the store) names the
    # simulation job and its own entity; the published copy is the store's bytes, so
    # the DL4 job that read the store still chains back to it
    sim_doc = provenance(c, sim)
    data = c.get(f"{sim}/results/dl3_observation").content
    path = Path(live.settings.var_dir) / "dl3.fits.gz"
    path.write_bytes(data)
    dl3 = jobside.read_fits_refs(str(path))
    eid = entity_of(sim_doc, sim, "dl3_observation")
    assert dl3["entity_id"] == eid.removeprefix("ent:")
    assert dl3["job_url"] == f"{live.base}{sim}"
    assert hashlib.sha256(data).hexdigest() == value(sim_doc["entity"][eid]["uwsp:sha256"])[0]
    # gammapy's steps, recorded with workers.jobside, inside the maps job
    steps = steps_of(doc, maps)
    assert {"gammapy-map-binning", "gammapy-excess-map"} <= set(steps)
    binning = steps["gammapy-map-binning"]["id"]
    assert eid in files_of(doc, binning, "used", "prov:entity")  # the DL3 result itself
    count_map = entity_of(doc, maps, "count_map")
    assert count_map in files_of(doc, binning, "wasGeneratedBy", "prov:entity")
    assert any(
        v.startswith("gammapy==") for v in value(steps["gammapy-excess-map"]["uwsp:package"])
    )
    back = json.loads(c.get("/provsap", params={"ID": refs["entity_id"], "DEPTH": "ALL"}).text)
    assert eid in back["entity"]
    assert sim.rsplit("/", 1)[1] in " ".join(back["activity"])
