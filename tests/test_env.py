"""pyproject.toml and environment.yml must list the same packages (and the same versions).

pyproject: [project].dependencies plus the extras "test" and "oracle".
environment.yml: the conda dependencies plus the nested pip: list (parsed by hand, no pyyaml).
python, pip and the editable install of this project ("-e .") are not packages to compare.
"""
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXTRAS = ("test", "oracle")
IGNORED = {"python", "pip"}
_SPLIT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*(.*?)\s*$")


def _name_spec(req: str) -> tuple[str, str]:
    """'NumPy >= 1.26 ; marker' -> ('numpy', '>=1.26'); names normalised as in PEP 503."""
    req = req.split(";")[0].split("#")[0].strip()
    m = _SPLIT.match(req)
    if not m:
        raise ValueError(f"cannot parse requirement {req!r}")
    name = re.sub(r"[-_.]+", "-", m.group(1)).lower()
    spec = m.group(2).replace(" ", "")
    if re.fullmatch(r"=[^=].*", spec):       # conda's single '=' pin means the same as '=='
        spec = "=" + spec
    return name, spec


def pyproject_requirements(path=ROOT / "pyproject.toml") -> dict[str, str]:
    project = tomllib.loads(Path(path).read_text())["project"]
    reqs = list(project.get("dependencies", []))
    extras = project.get("optional-dependencies", {})
    for extra in EXTRAS:
        assert extra in extras, f"pyproject.toml has no [project.optional-dependencies] {extra}"
        reqs += extras[extra]
    return _to_dict(reqs, "pyproject.toml")


def environment_requirements(path=ROOT / "environment.yml") -> dict[str, str]:
    """The items of the top-level ``dependencies:`` list and of its nested ``pip:`` list."""
    reqs, in_deps = [], False
    for raw in Path(path).read_text().splitlines():
        line = raw.split(" #")[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if not line.strip():
            continue
        if not line[0].isspace():                        # a top-level key
            in_deps = line.strip() == "dependencies:"
            continue
        if not in_deps:
            continue
        item = line.strip()
        if not item.startswith("- "):
            raise ValueError(f"environment.yml: unexpected line under dependencies: {raw!r}")
        item = item[2:].strip().strip("'\"")
        if item == "pip:" or item.startswith("-e ") or item.startswith("--"):
            continue                                     # the nested list header, the project
        reqs.append(item)
    return _to_dict(reqs, "environment.yml")


def _to_dict(reqs, where) -> dict[str, str]:
    out = {}
    for r in reqs:
        name, spec = _name_spec(r)
        if name in IGNORED:
            continue
        assert name not in out, f"{where} lists {name} twice"
        out[name] = spec
    return out


@pytest.fixture(scope="module")
def both():
    return pyproject_requirements(), environment_requirements()


def test_parsers_find_the_packages(both):
    py, env = both
    for reqs in (py, env):
        assert {"numpy", "matplotlib", "pytest", "torch"} <= set(reqs)
        assert not IGNORED & set(reqs)


def test_same_package_names(both):
    py, env = both
    only_py, only_env = sorted(set(py) - set(env)), sorted(set(env) - set(py))
    assert not only_py and not only_env, (
        f"only in pyproject.toml: {only_py}; only in environment.yml: {only_env}")


def test_same_version_constraints(both):
    py, env = both
    differ = {n: (py[n], env[n]) for n in set(py) & set(env) if py[n] != env[n]}
    assert not differ, f"version constraints differ (pyproject, environment.yml): {differ}"


def test_parsers_see_a_difference(tmp_path):
    """The comparison can fail: the parsers read exactly what is there."""
    (tmp_path / "environment.yml").write_text(
        "# comment\nname: x\nchannels:\n  - conda-forge\ndependencies:\n"
        "  - python=3.11\n  - NumPy>=1.26  # inline comment\n  - scipy=1.11\n  - pip\n"
        "  - pip:\n      # pip part\n      - torch==2.0\n      - -e .\nvariables:\n  A: 1\n")
    assert environment_requirements(tmp_path / "environment.yml") == {
        "numpy": ">=1.26", "scipy": "==1.11", "torch": "==2.0"}
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\ndependencies = ["numpy>=1.26", "Scikit_Learn"]\n'
        '[project.optional-dependencies]\ntest = ["pytest"]\noracle = ["torch==2.0"]\n')
    assert pyproject_requirements(tmp_path / "pyproject.toml") == {
        "numpy": ">=1.26", "scikit-learn": "", "pytest": "", "torch": "==2.0"}
    assert _name_spec("Foo_Bar[x] == 1.0 ; python_version>'3'") == ("foo-bar", "==1.0")
