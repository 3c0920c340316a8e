"""The shipped suites: Great Expectations' own suite format, one editable JSON file each.

Each file is an ``ExpectationSuite`` whose ``meta.shopstream`` says what the suite reads: a
SQL query over the stored tables (``{day_start}`` and ``{day_end}`` are the UTC bounds of the
day checked), which day a run checks by default (``today``, ``yesterday`` or ``now``), and a
setting it ``needs``. ``SHOPSTREAM_QUALITY_SUITES`` points at a folder of the user's own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Final, Literal, cast

DayChoice = Literal["today", "yesterday", "now"]
SHIPPED: Final = "suites"


class SuiteFileError(ValueError):
    """A suite file that cannot be used; the message names the file."""


@dataclass(frozen=True, slots=True)
class Suite:
    name: str
    about: str
    query: str
    day: DayChoice
    needs: str | None
    expectations: tuple[dict[str, Any], ...]


def load_suites(folder: Path | None = None) -> list[Suite]:
    """Every suite of ``folder`` (default: the shipped ones), sorted by name."""
    files = (
        sorted(folder.glob("*.json"))
        if folder is not None
        else sorted(
            (Path(str(f)) for f in resources.files(__package__).joinpath(SHIPPED).iterdir()),
            key=lambda p: p.name,
        )
    )
    return [_suite(path) for path in files if path.suffix == ".json"]


def _suite(path: Path) -> Suite:
    try:
        document = json.loads(path.read_text())
        ours = document["meta"]["shopstream"]
        day = ours.get("day", "today")
        if day not in ("today", "yesterday", "now"):
            raise SuiteFileError(f"{path}: meta.shopstream.day must be today, yesterday or now")
        return Suite(
            name=str(document["name"]),
            about=str(ours.get("about", "")),
            query=str(ours["query"]),
            day=cast(DayChoice, day),
            needs=ours.get("needs"),
            expectations=tuple(document["expectations"]),
        )
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as error:
        raise SuiteFileError(f"{path}: not a ShopStream suite ({error})") from error
