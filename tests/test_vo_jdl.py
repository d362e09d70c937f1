"""Job definitions mark the generated entities that are catalogued data sets."""

from __future__ import annotations

import pytest

from uws_server.config import PROJECT_ROOT
from uws_server.jdl.registry import JobDefinitionRegistry
from uws_server.jdl.validate import validate
from uws_server.jdl.votable import read_votable, write_votable
from uws_server.jobdef import EntityDef, JobDefinition

MARKED = {
    "analysis": {"dl3": ("event", "2", "")},
    "simulate_dl3": {"dl3_observation": ("event", "2", "")},
    "gammapy_maps": {
        "count_map": ("image", "4", "count_preview"),
        "significance_map": ("image", "4", "significance_preview"),
    },
    "gammapy_spectra": {"spectrum": ("spectrum", "4", "spectrum_preview")},
    "gammapy_lightcurve": {"lightcurve": ("timeseries", "4", "lightcurve_preview")},
}


def test_cta_definitions_mark_their_data_sets() -> None:
    registry = JobDefinitionRegistry(PROJECT_ROOT / "job_definitions")
    registry.load_all()
    assert registry.errors == []
    for name, marked in MARKED.items():
        defn = registry.get_shared(name)
        found = {
            e.name: (e.dataproduct_type, e.calib_level, e.preview)
            for e in defn.generated
            if e.dataproduct_type
        }
        assert found == marked, name
        # the markers survive the writer, and a definition without them gains none
        assert read_votable(write_votable(defn)).generated == defn.generated
    plain = registry.get_shared("test_activity_1")
    assert b"dataproduct_type" not in write_votable(plain)


def _defn(**marks: str) -> JobDefinition:
    return JobDefinition(
        name="x",
        script="true",
        generated=[
            EntityDef(name="out", default="out.fits", **marks),
            EntityDef(name="pic", default="out.png"),
        ],
    )


@pytest.mark.parametrize(
    "marks, field, message",
    [
        ({"dataproduct_type": "movie", "calib_level": "4"}, "dataproduct_type", "not an ObsCore"),
        ({"dataproduct_type": "image", "calib_level": "7"}, "calib_level", "0 to 4"),
        ({"dataproduct_type": "image"}, "calib_level", "needs one"),
        ({"calib_level": "3"}, "calib_level", "with a dataproduct_type"),
        (
            {"dataproduct_type": "image", "calib_level": "4", "preview": "nope"},
            "preview",
            "another generated entity",
        ),
    ],
)
def test_bad_markers_are_reported(marks: dict[str, str], field: str, message: str) -> None:
    problems = validate(_defn(**marks))
    assert any(where == f"generated[0].{field}" and message in text for where, text in problems)


def test_good_markers_pass() -> None:
    marks = {"dataproduct_type": "image", "calib_level": "4", "preview": "pic"}
    assert validate(_defn(**marks)) == []
