"""What an install ships: every package and every SQL file the code reads at run time.

`chatsync serve` once lived in a subpackage that the package list did not name, so a
wheel install had no server. These checks read pyproject.toml against the tree.
"""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETUPTOOLS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def _packages_on_disk() -> set[str]:
    found = set()
    for top in ("daemon", "localstore", "remote"):
        for init in (ROOT / top).rglob("__init__.py"):
            found.add(".".join(init.parent.relative_to(ROOT).parts))
    return found


def test_every_product_package_is_installed_and_nothing_else() -> None:
    include = SETUPTOOLS["packages"]["find"]["include"]
    on_disk = _packages_on_disk()
    assert {"daemon", "localstore", "remote", "remote.server"} <= on_disk
    shipped = {p for p in on_disk if any(fnmatch.fnmatchcase(p, pat) for pat in include)}
    assert shipped == on_disk
    assert not any(fnmatch.fnmatchcase(name, pat)
                   for name in ("tests", "benchmarks") for pat in include)


def test_every_sql_file_is_package_data_and_every_pattern_matches_something() -> None:
    data: dict[str, list[str]] = SETUPTOOLS["package-data"]
    for package, patterns in data.items():
        base = ROOT / package.replace(".", "/")
        for pattern in patterns:
            assert list(base.glob(pattern)), f"{package}: {pattern} matches no file"
    for sql in ROOT.glob("*/**/*.sql"):
        rel = sql.relative_to(ROOT)
        if rel.parts[0] not in ("daemon", "localstore", "remote"):
            continue
        package, inner = rel.parts[0], Path(*rel.parts[1:])
        assert any(inner.match(p) and len(inner.parts) == len(Path(p).parts)
                   for p in data.get(package, [])), f"{rel} is not shipped"
