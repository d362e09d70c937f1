"""What a job definition's ``#SBATCH`` option lines may say, and how the Slurm manager
passes them to ``sbatch``: the Slurm manager's knowledge of its own options, in one place.

A definition carries them as ``sbatch_options`` (a field of the OPUS JDL format); the
definition checker (:mod:`uws_server.jdl.validate`) asks :func:`sbatch_problems` when
one is saved or loaded, and :class:`~uws_server.managers.slurm.SlurmManager` turns each
line into arguments with :func:`option_argv`. Standard library only, so checking a
definition never imports the Slurm manager itself.
"""

from __future__ import annotations

Problem = tuple[str, str]

# sbatch options the Slurm manager sets itself (name, directory, output files, time
# limit, environment), or that would stop it from tracking the job: no submission at all
# (--test-only, --help...), a blocking sbatch (--wait), several jobs (--array), a job held
# forever (--hold), on another cluster squeue does not ask (--clusters), or an
# environment the service did not choose (--export-file, --get-user-env).
MANAGED_SBATCH_OPTIONS = frozenset(
    """--wrap --output -o --error -e --chdir -D --parsable --job-name -J --export --input -i
    --time -t --wait -W --array -a --uid --gid --get-user-env --export-file --hold -H
    --clusters -M --test-only --help -h --usage --version -V""".split()
)
# sbatch's short options that take no value: in "-vW" both are options (-W is --wait).
_SBATCH_SHORT_FLAGS = frozenset("HhkOQsVvW")


def option_argv(line: str) -> list[str]:
    """An operator's option line as sbatch arguments.

    ``--mem=8G``, ``-c4`` and ``--comment=two words`` stay one argument; ``--mem 8G`` and
    ``-c 4`` (an option, blanks, a value) become two.
    """
    line = line.strip()
    head, _, rest = line.partition(" ")
    if "=" in head or not rest.strip() or not head.startswith("-"):
        return [line]
    if not head.startswith("--") and len(head) > 2:
        return [line]
    return [head, rest.strip()]


def sbatch_problems(options: list[str]) -> list[Problem]:
    """Every problem of a definition's ``#SBATCH`` option lines, as ``(field, reason)``
    pairs named like the JSON form (``sbatch_options[2]``); empty when they are fine."""
    problems: list[Problem] = []
    for k, option in enumerate(options):
        where = f"sbatch_options[{k}]"
        if not isinstance(option, str) or not option.startswith("-") or option.strip() in "-":
            problems.append((where, "must be an option starting with '-'"))
            continue
        if any(c in option for c in "\n\r\x00"):
            problems.append((where, "must be one line"))
            continue
        flags, value = sbatch_flags(option)
        for flag in flags:
            if flag in MANAGED_SBATCH_OPTIONS:
                problems.append((where, f"{flag} is set by the service itself or breaks tracking"))
        if value.startswith("-"):
            problems.append((where, "a separate value must not start with '-': write --opt=-v"))
    return problems


def sbatch_flags(option: str) -> tuple[list[str], str]:
    """The options one line sets, and its separate value (``--mem 8G``), as the Slurm
    manager passes it (:func:`option_argv`).

    "--output=x", "--output x", "-o x" and "-ox" all name the same option; "-vWa1" is a
    bundle of -v, -W and -a (with value 1).
    """
    head, _, rest = option.strip().partition(" ")
    rest = rest.strip()
    if head.startswith("--"):
        return [head.split("=", 1)[0]], "" if "=" in head else rest
    flags = []
    for char in head[1:]:
        flags.append("-" + char)
        if char not in _SBATCH_SHORT_FLAGS:
            break  # what follows is this option's value
    return flags, rest if len(head) == 2 else ""
