"""README.md tells the truth where a test can tell: its configuration tables list every
environment variable MOC reads, with the default the code really uses, and nothing that nothing
reads; its "what works today" names exactly the job kinds that run.

What counts as read: the env_* calls of the settings (and of any other module), reads of MOC_*
variables through os.environ, and the `${NAME:-default}` expansions of scripts/run.sh and
scripts/lib.sh (the form those scripts read the environment in).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.procs import ROOT

_ENV_READERS = {"env_str", "env_bool", "env_int", "env_float", "env_list", "env_secret"}
_SHELL_READ = re.compile(r"\$\{([A-Z][A-Z0-9_]*):?-([^}]*)\}")
_NO_DEFAULT = None


def _literal(node: ast.expr | None) -> str | None:
    """A default as the README writes it (`true`, `15`, `a,b`), or None when the code computes it
    from something other than constants (a path under the var folder, another setting)."""
    if node is None or not all(
        isinstance(n, (ast.Constant, ast.BinOp, ast.operator, ast.List, ast.Load)) for n in ast.walk(node)
    ):
        return _NO_DEFAULT
    value = eval(compile(ast.Expression(node), "<default>", "eval"), {"__builtins__": {}})
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list):
        return ",".join(value)
    return str(value)


def _python_reads(path: Path) -> dict[str, list[str | None]]:
    reads: dict[str, list[str | None]] = {}
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.Call) or not node.args or not isinstance(node.args[0], ast.Constant):
            continue
        name, func = node.args[0].value, node.func
        default = node.args[1] if len(node.args) > 1 else None
        if isinstance(func, ast.Name) and func.id in _ENV_READERS:
            reads.setdefault(name, []).append(_literal(default))
            if func.id == "env_secret":  # also reads NAME_FILE, a file holding the value
                reads.setdefault(f"{name}_FILE", []).append(_NO_DEFAULT)
        elif (
            isinstance(func, ast.Attribute)
            and func.attr == "get"
            and ast.unparse(func.value) == "os.environ"
            and str(name).startswith("MOC_")
        ):
            reads.setdefault(name, []).append(_literal(default))
    return reads


def _variables_read() -> dict[str, list[str | None]]:
    """Each variable MOC reads, with every literal default it is read with (None: computed)."""
    reads: dict[str, list[str | None]] = {}
    for folder in ("apps", "moc_site"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if "migrations" in path.parts or path.name == "env.py":
                continue
            for name, defaults in _python_reads(path).items():
                reads.setdefault(name, []).extend(defaults)
    for script in ("scripts/run.sh", "scripts/lib.sh"):
        for name, default in _SHELL_READ.findall((ROOT / script).read_text()):
            reads.setdefault(name, []).append(default if default and "$" not in default else _NO_DEFAULT)
    return reads


def _configuration_tables() -> dict[str, str]:
    """Variable -> the part of its row's default cell that is its own ("`10`, `24`" gives each of
    two variables one part), from every table of the README's Configuration section."""
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, str] = {}
    for line in section.splitlines():
        if not line.startswith("| `"):
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split(" | ")]
        names = re.findall(r"`([A-Z][A-Z0-9_]*)`", cells[0])
        parts = _split_outside_code(cells[1]) if len(names) > 1 else [cells[1]]
        if len(parts) != len(names):  # one default for them all
            parts = [cells[1]] * len(names)
        rows.update(zip(names, parts, strict=True))
    return rows


def _split_outside_code(cell: str) -> list[str]:
    """`cell` split at each ", " that is not inside a `code span`."""
    spans = iter(re.findall(r"`[^`]*`", cell))
    masked = re.sub(r"`[^`]*`", "\0", cell)
    return [re.sub("\0", lambda _: next(spans), part) for part in masked.split(", ")]


def test_every_variable_moc_reads_is_in_the_configuration_tables() -> None:
    listed = _configuration_tables()

    missing = sorted(set(_variables_read()) - set(listed))

    assert not missing, f"README.md's Configuration tables lack {missing}"


def test_the_configuration_tables_list_nothing_that_moc_does_not_read() -> None:
    read = _variables_read()

    stale = sorted(set(_configuration_tables()) - set(read))

    assert not stale, f"README.md lists variables nothing reads: {stale}"


def test_the_configuration_tables_give_each_variable_its_true_default() -> None:
    listed = _configuration_tables()
    wrong = []

    for name, defaults in sorted(_variables_read().items()):
        shown = re.findall(r"`([^`]*)`", listed.get(name, ""))
        wrong += [f"{name}: code says {d!r}, README {shown}" for d in defaults if d and d not in shown]

    assert not wrong, "\n".join(wrong)


def test_the_readme_says_which_job_kinds_run_today() -> None:
    from apps.jobs import runners
    from apps.jobs.domain.kinds import JobKind

    text = (ROOT / "README.md").read_text()
    jobs = text.split("- **Jobs**", 1)[1].split("\n- ", 1)[0]

    named = {span for span in re.findall(r"`([a-z_]+)`", jobs) if span in {k.value for k in JobKind}}

    assert named == set(runners.RUNNERS), "README's Jobs line must name exactly the kinds that have a runner"
