"""Job definitions: the OPUS VOTable reader/writer, the JSON form and validation."""

from __future__ import annotations

import dataclasses
import io
import warnings
from pathlib import Path

import pytest
from astropy.io import votable as astropy_votable
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from uws_server.errors import DefinitionError
from uws_server.jdl import (
    from_json,
    read_votable,
    read_votable_file,
    to_json,
    validate,
    value_problem,
    write_votable,
)
from uws_server.jobdef import DATATYPES, EntityDef, JobDefinition, ParameterDef

ROOT = Path(__file__).resolve().parent.parent
OPUS_FILES = sorted(Path("/work/shared/opus-jdl").glob("*.xml"))
ALL_FILES = OPUS_FILES + sorted((ROOT / "job_definitions").glob("*.xml"))


def _plain(defn: JobDefinition) -> JobDefinition:
    return dataclasses.replace(defn, source_file=None)


def rich_definition() -> JobDefinition:
    """Every feature of the format in one valid definition."""
    return JobDefinition(
        name="rich-job_1",
        description="A job using every feature",
        doculink="https://example.org/doc",
        type="analysis",
        subtype="dl3",
        version="2.1",
        contact_name="Ops",
        contact_email="ops@example.org",
        execution_duration=600,
        quote=30,
        script='set -e\nprintf "%s\\n" "$count" > "$result"\n\tdone & <ok>\n',
        parameters=[
            ParameterDef(
                "count", "xs:integer", "5", True, "how many", "ct", "meta.number", None, "1", "10"
            ),
            ParameterDef("ratio", "xs:double", None, False, "", None, None, None, "-1.5", "2e3"),
            ParameterDef("big", "xs:long", "9000000000", False),
            ParameterDef("mode", "xs:string", "fast", True, "speed", options=["fast", "slow"]),
            ParameterDef("flag", "xs:boolean", "true", False, utype="my:flag"),
            ParameterDef("weight", "xs:float", "0.5", True),
            ParameterDef("link", "xs:anyURI", "https://example.org/x?a=1&b=2", False),
            ParameterDef("upload", "file", None, False, "an input file"),
            ParameterDef("coords", "xs:double", "1.0 2.0", True, arraysize="2"),
        ],
        used=[
            EntityDef(
                "upload", "uploaded data", "input", "1", "", "application/fits", "file://$ID"
            ),
            EntityDef(
                "obs", "an observation", "", "*", "obs42", "", "https://archive.org/get?id=$ID"
            ),
        ],
        generated=[
            EntityDef("result", "main output", "result", "1", "result.txt", "text/plain"),
            EntityDef("plot.png", "a plot", "", "", "plot.png", "image/png"),
        ],
        sbatch_options=["--mem=4G", "--gres=gpu:1", "--comment=two words"],
    )


# -- reading the OPUS files ---------------------------------------------------------------


def test_the_opus_files_are_present() -> None:
    names = {p.name for p in OPUS_FILES}
    assert {"test_activity_1_vot.xml", "test_activity_2_vot.xml"} <= names


def test_opus_test_activity_1_reads_as_written() -> None:
    d = read_votable_file(Path("/work/shared/opus-jdl/test_activity_1_vot.xml"))
    assert d.name == "test_activity_1"
    assert d.description == "Job for tests, simply copies input text in a file"
    assert (d.type, d.subtype, d.version) == ("test", "test", "1")
    assert (d.contact_name, d.contact_email) == ("opus-admin", "admin@opus")
    assert (d.execution_duration, d.quote) == (20, 10)
    assert d.script == "sleep 10\necho $text > $output\n"  # CR-LF normalised
    assert d.parameters == [
        ParameterDef("text", "xs:string", "Hello World", True, "Input text for test job")
    ]
    assert d.used == []
    assert d.generated == [
        EntityDef(
            "output",
            "Output file that contains the input text",
            default="output.txt",
            content_type="text/plain",
        )
    ]
    assert d.sbatch_options == []
    assert d.source_file and d.source_file.endswith("test_activity_1_vot.xml")


def test_opus_test_activity_2_has_a_used_upload() -> None:
    d = read_votable_file(Path("/work/shared/opus-jdl/test_activity_2_vot.xml"))
    assert d.script == "sleep 10\ncat $input > $output\necho $text >> $output\n"
    assert d.used == [
        EntityDef("input", "Input entity for test job 2", default="input.txt", url="file://$ID")
    ]
    assert [g.default for g in d.generated] == ["output.txt"]
    assert validate(d) == []


@pytest.mark.parametrize("path", ALL_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_round_trip_of_every_file(path: Path) -> None:
    first = read_votable_file(path)
    written = write_votable(first)
    second = read_votable(written)
    assert _plain(second) == _plain(first)
    assert write_votable(second) == written  # the written form is stable


def _astropy_parse(data: bytes) -> astropy_votable.tree.VOTableFile:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any VOTable warning fails the test
        return astropy_votable.parse(io.BytesIO(data), verify="exception")


@pytest.mark.parametrize("path", ALL_FILES, ids=lambda p: p.name)
def test_written_files_are_votable_1_3_for_astropy(path: Path) -> None:
    vot = _astropy_parse(write_votable(read_votable_file(path)))
    assert vot.version == "1.3"
    resource = vot.resources[0]
    assert resource.name == path.name.removesuffix("_vot.xml")
    assert [g.name for g in resource.groups] == ["InputParams", "Used", "Generated"]


def test_rich_definition_round_trips_and_astropy_reads_it() -> None:
    defn = rich_definition()
    assert validate(defn) == []
    data = write_votable(defn)
    assert read_votable(data) == defn
    resource = _astropy_parse(data).resources[0]
    inputs = {p.name: p for p in resource.groups[0].entries}
    assert inputs["count"].datatype == "int"
    assert (inputs["count"].values.min, inputs["count"].values.max) == (1, 10)
    assert [v for _, v in inputs["mode"].values.options] == ["fast", "slow"]
    assert inputs["upload"].xtype == "application/octet-stream"
    assert inputs["ratio"].type == "no_query"
    assert inputs["count"].type is None
    assert inputs["coords"].arraysize == "2"
    top = {p.name: p.value for p in resource.params}
    assert top["sbatch_options"] == "--mem=4G\n--gres=gpu:1\n--comment=two words"
    assert top["executionDuration"] == 600


# -- OPUS conventions and other spellings ----------------------------------------------------

OPUS_VARIANTS = b"""<?xml version="1.0"?>
<VOTABLE version="1.2" xmlns="http://www.ivoa.net/xml/VOTable/v1.2">
 <RESOURCE ID="variants" name="variants" type="meta" utype="voprov:ActivityDescription">
  <DESCRIPTION>
     Spelled by several OPUS versions
  </DESCRIPTION>
  <LINK content-role="doc" href="https://example.org/variants"/>
  <PARAM name="executionduration" value="30" datatype="int"/>
  <PARAM name="script" value="a&#13;&#10;b&#13;c" arraysize="*" datatype="char"/>
  <PARAM name="sbatch_options" value="--mem=1G&#13;&#10;  &#10;--qos=low "
         datatype="char" arraysize="*"/>
  <GROUP name="InputParams">
   <PARAM name="n" datatype="xs:integer" value="3" type="no_query">
    <VALUES><MIN value="1"/><MAX value="9"/></VALUES>
   </PARAM>
   <PARAM name="x" datatype="xs:double" value="" unit="deg" ucd="pos.eq.ra"/>
   <PARAM name="f" datatype="char" arraysize="*" xtype="application/octet-stream" value=""/>
   <PARAM name="g" datatype="file" value="in.fits"/>
   <PARAM name="u" datatype="char" arraysize="*" xtype="anyURI" value="http://a.b/c"/>
   <PARAM name="b" datatype="boolean" value="false"/>
   <PARAM name="l" datatype="xs:long" value="-1"/>
   <PARAM name="c" datatype="char" value="s">
     <VALUES><OPTION value="s"/><OPTION value="t"/></VALUES>
   </PARAM>
  </GROUP>
  <GROUP name="Used">
   <PARAM name="old" datatype="char" arraysize="*" value="x.fits" xtype="image/fits">
    <DESCRIPTION>old layout</DESCRIPTION>
    <LINK content-role="location" href="file://$ID"/>
   </PARAM>
  </GROUP>
 </RESOURCE>
</VOTABLE>
"""


def test_reader_accepts_opus_variants() -> None:
    d = read_votable(OPUS_VARIANTS)
    assert d.description == "Spelled by several OPUS versions"
    assert d.doculink == "https://example.org/variants"
    assert d.execution_duration == 30 and d.quote is None
    assert d.script == "a\nb\nc"
    assert d.sbatch_options == ["--mem=1G", "--qos=low"]
    p = {x.name: x for x in d.parameters}
    assert (p["n"].datatype, p["n"].required, p["n"].min, p["n"].max) == (
        "xs:integer",
        False,
        "1",
        "9",
    )
    assert (p["x"].datatype, p["x"].default, p["x"].unit, p["x"].ucd) == (
        "xs:double",
        None,
        "deg",
        "pos.eq.ra",
    )
    assert p["x"].required is True
    assert p["f"].datatype == "file" and p["g"].datatype == "file"
    assert p["u"].datatype == "xs:anyURI"
    assert (p["b"].datatype, p["l"].datatype) == ("xs:boolean", "xs:long")
    assert p["c"].options == ["s", "t"]
    assert d.used == [
        EntityDef(
            "old", "old layout", default="x.fits", content_type="image/fits", url="file://$ID"
        )
    ]
    assert validate(d) == []


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (b"not xml at all", "not well-formed"),
        (b"<VOTABLE><RESOURCE name='a'>", "not well-formed"),
        (b"<TABLE/>", "not VOTABLE"),
        (b"<VOTABLE version='1.3'/>", "no RESOURCE"),
        (
            b'<?xml version="1.0"?><!DOCTYPE v [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
            b'<VOTABLE><RESOURCE name="a"><DESCRIPTION>&e;</DESCRIPTION></RESOURCE></VOTABLE>',
            "DOCTYPE",
        ),
        (
            b'<!DOCTYPE v [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>'
            b'<VOTABLE><RESOURCE name="a"><DESCRIPTION>&b;</DESCRIPTION></RESOURCE></VOTABLE>',
            "DOCTYPE",
        ),
    ],
)
def test_reader_refuses_what_is_not_a_definition(data: bytes, needle: str) -> None:
    with pytest.raises(DefinitionError) as err:
        read_votable(data, source="upload.xml")
    assert err.value.problems[0][0] == "xml"
    assert needle in err.value.problems[0][1]
    assert str(err.value).startswith("upload.xml: ")
    assert "root:" not in str(err.value)  # nothing of /etc/passwd


def test_reader_reports_bad_integers_and_validation_together() -> None:
    data = (ROOT / "job_definitions/test_activity_1_vot.xml").read_bytes()
    data = data.replace(b'value="20"', b'value="soon"').replace(b'"test_activity_1"', b'"a b"')
    with pytest.raises(DefinitionError) as err:
        read_votable(data)
    fields = [f for f, _ in err.value.problems]
    assert fields == ["execution_duration", "name"]
    # What cannot be represented is refused even unchecked; the rest is left to validate.
    with pytest.raises(DefinitionError) as err:
        read_votable(data, check=False)
    assert [f for f, _ in err.value.problems] == ["execution_duration"]
    unchecked = read_votable(data.replace(b'"soon"', b'"7"'), check=False)
    assert unchecked.name == "a b" and unchecked.execution_duration == 7


def test_writer_refuses_text_xml_cannot_hold() -> None:
    defn = dataclasses.replace(rich_definition(), description="bell \x07")
    with pytest.raises(DefinitionError):
        write_votable(defn)
    assert validate(defn) == [("description", "contains control characters that cannot be stored")]


# -- validation -------------------------------------------------------------------------


def test_every_problem_is_reported_at_once() -> None:
    bad = JobDefinition(
        name="../../evil",
        doculink="javascript:alert(1)",
        execution_duration=-1,
        quote=-5,
        script="  \n",
        parameters=[
            ParameterDef("ok", "xs:integer", "2", min="1", max="3"),  # 0: valid
            ParameterDef("a b", "xs:string"),  # 1
            ParameterDef("OK", "xs:string"),  # 2: duplicate (UWS names ignore case)
            ParameterDef("n", "xs:complex"),  # 3
            ParameterDef("i", "xs:integer", "1.5"),  # 4
            ParameterDef("j", "xs:integer", "0", min="1"),  # 5
            ParameterDef("k", "xs:double", None, min="5", max="1"),  # 6
            ParameterDef("m", "xs:string", "c", options=["a", "b"]),  # 7
            ParameterDef("o", "xs:integer", None, options=["1", "x"]),  # 8
            ParameterDef("BASH_ENV", "xs:string"),  # 9
            ParameterDef("LD_PRELOAD", "file"),  # 10
            ParameterDef("phase", "xs:string"),  # 11
            ParameterDef("s", "xs:string", min="a"),  # 12
            ParameterDef("b", "xs:boolean", "yes"),  # 13
            ParameterDef("f", "file", "../etc/passwd"),  # 14
            ParameterDef("v", "xs:integer", "1 2", arraysize="**"),  # 15
        ],
        used=[EntityDef("in", url="file:///etc/$ID", default="../x")],
        generated=[
            EntityDef("../out", default="out.txt"),
            EntityDef("res", default=".hidden"),
            EntityDef("res2", default="a/b"),
            EntityDef("res3", default="nul\x00"),
            EntityDef("res4", default=""),
            EntityDef("ok", default="ok.txt", content_type="text"),
        ],
        sbatch_options=["--output=/tmp/x", "-o/tmp/x", "mem=1G", "--mem=1G"],
    )
    expected = """name doculink script execution_duration quote
        parameters[1].name parameters[2].name parameters[3].datatype parameters[4].default
        parameters[5].default parameters[6].min parameters[7].default parameters[8].options[1]
        parameters[9].name parameters[10].name parameters[11].name parameters[12].min
        parameters[13].default parameters[14].default parameters[15].arraysize
        used[0].default used[0].url generated[0].name generated[1].default
        generated[2].default generated[3].default generated[3].default generated[4].default
        generated[5].content_type generated[5].name
        sbatch_options[0] sbatch_options[1] sbatch_options[2]"""
    assert [f for f, _ in validate(bad)] == expected.split()


@pytest.mark.parametrize(
    ("datatype", "value", "ok"),
    [
        ("xs:integer", "-12", True),
        ("xs:integer", "12.0", False),
        ("xs:long", str(2**63 - 1), True),
        ("xs:long", str(2**63), False),
        ("xs:double", "1e-3", True),
        ("xs:double", "nan", False),
        ("xs:float", "abc", False),
        ("xs:boolean", "TRUE", True),
        ("xs:boolean", "maybe", False),
        ("xs:anyURI", "https://x.org/a b", False),
        ("file", "data.fits", True),
        ("file", ".bashrc", False),
        ("file", "a/../b", False),
        ("xs:string", "anything at all", True),
    ],
)
def test_value_problem_by_datatype(datatype: str, value: str, ok: bool) -> None:
    assert (value_problem(ParameterDef("p", datatype), value) is None) is ok


def test_value_problem_bounds_options_and_lists() -> None:
    p = ParameterDef("p", "xs:double", min="0", max="1", options=["0", "0.5", "1"])
    assert value_problem(p, "0.50") is None  # options compare by value
    assert "not one of" in (value_problem(p, "0.25") or "")
    assert "above the maximum" in (value_problem(p, "2") or "")
    listed = ParameterDef("v", "xs:integer", arraysize="*", min="0")
    assert value_problem(listed, "1 2 3") is None
    assert "below the minimum" in (value_problem(listed, "1 -2") or "")
    assert value_problem(ParameterDef("b", "xs:boolean", options=["true"]), "1") is None


def test_all_declared_datatypes_are_accepted() -> None:
    defn = rich_definition()
    defn.parameters = [ParameterDef(f"p{i}", t) for i, t in enumerate(DATATYPES)]
    assert validate(defn) == []


# -- JSON form --------------------------------------------------------------------------


@pytest.mark.parametrize("path", ALL_FILES, ids=lambda p: p.name)
def test_json_round_trip_of_files(path: Path) -> None:
    defn = read_votable_file(path)
    data = to_json(defn)
    assert "source_file" not in data
    assert from_json(data) == _plain(defn)


def test_json_form_of_the_rich_definition() -> None:
    defn = rich_definition()
    data = to_json(defn)
    assert data["parameters"][0] == {
        "name": "count",
        "datatype": "xs:integer",
        "default": "5",
        "required": True,
        "description": "how many",
        "unit": "ct",
        "ucd": "meta.number",
        "utype": None,
        "min": "1",
        "max": "10",
        "options": [],
        "arraysize": None,
    }
    assert data["sbatch_options"] == defn.sbatch_options
    assert "sbatch_options" not in to_json(defn, include_operator=False)
    assert from_json(data) == defn
    # JSON -> VOTable -> JSON changes nothing either.
    assert to_json(read_votable(write_votable(from_json(data)))) == data


def test_from_json_reports_every_shape_problem() -> None:
    with pytest.raises(DefinitionError) as err:
        from_json(
            {
                "description": 3,
                "execution_duration": "10",
                "quote": True,
                "sbatch": [],
                "source_file": "/etc/passwd",
                "parameters": [{"name": "a", "required": "yes"}, {"default": "x"}, 5],
                "used": {"name": "x"},
                "generated": [{"name": "r", "url": None}],
            },
            source="post",
        )
    assert err.value.source == "post"
    assert err.value.problems == [
        ("description", "must be a string"),
        ("execution_duration", "must be an integer"),
        ("quote", "must be an integer or null"),
        ("sbatch", "unknown field"),
        ("source_file", "unknown field"),
        ("parameters[0].required", "must be true or false"),
        ("parameters[1].name", "missing"),
        ("parameters[2]", "must be a JSON object"),
        ("used", "must be a list"),
        ("generated[0].url", "must be a string"),
        ("name", "missing"),
    ]
    with pytest.raises(DefinitionError):
        from_json([1, 2])


def test_from_json_treats_empty_optional_text_as_unset() -> None:
    d = from_json({"name": "x", "parameters": [{"name": "p", "default": "", "unit": ""}]})
    assert d.parameters[0].default is None and d.parameters[0].unit is None


# -- property-based round trips ------------------------------------------------------------

_TEXT = st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\ufffe\uffff")
_line = st.text(_TEXT, max_size=12)
_stripped = _line.map(str.strip)
_maybe = st.one_of(st.none(), st.text(_TEXT, min_size=1, max_size=8))
_ident = st.from_regex(r"[A-Za-z][A-Za-z0-9_-]{0,10}", fullmatch=True)


@st.composite
def _parameter(draw: st.DrawFn) -> ParameterDef:
    datatype = draw(st.sampled_from(DATATYPES))
    arraysize = draw(st.sampled_from([None, "2", "3x2", "*", "4*"]))
    if arraysize == "*" and datatype in ("xs:string", "xs:anyURI", "file"):
        arraysize = None  # the implied size of text, not stored
    return ParameterDef(
        name=draw(_ident),
        datatype=datatype,
        default=draw(_maybe),
        required=draw(st.booleans()),
        description=draw(_stripped),
        unit=draw(_maybe),
        ucd=draw(_maybe),
        utype=draw(_maybe),
        min=draw(_maybe),
        max=draw(_maybe),
        options=draw(st.lists(_line, max_size=3)),
        arraysize=arraysize,
    )


@st.composite
def _entity(draw: st.DrawFn, generated: bool) -> EntityDef:
    return EntityDef(
        name=draw(_ident),
        description=draw(_stripped),
        role=draw(_line),
        multiplicity=draw(_line),
        default=draw(_line),
        content_type=draw(_line),
        url=draw(_line.filter(bool)) if generated and draw(st.booleans()) else draw(_line),
    )


_definitions = st.builds(
    JobDefinition,
    name=_ident,
    description=_stripped,
    doculink=_line,
    type=_line,
    subtype=_line,
    version=_line,
    contact_name=_line,
    contact_email=_line,
    execution_duration=st.integers(0, 10**9),
    quote=st.one_of(st.none(), st.integers(0, 10**6)),
    script=st.text(st.one_of(_TEXT, st.sampled_from("\n\t")), max_size=40),
    parameters=st.lists(_parameter(), max_size=4),
    used=st.lists(_entity(False), max_size=2),
    generated=st.lists(_entity(True), max_size=2),
    sbatch_options=st.lists(
        st.from_regex(r"--[a-z]{1,8}(=[A-Za-z0-9:, ]{0,6}[A-Za-z0-9])?", fullmatch=True), max_size=3
    ),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_definitions)
def test_any_definition_round_trips_through_votable_and_json(defn: JobDefinition) -> None:
    assert read_votable(write_votable(defn), check=False) == defn
    assert from_json(to_json(defn)) == defn
