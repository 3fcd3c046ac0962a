"""`promo codes` against a real server: filling a pool from a file, exporting it, generating,
listing, reading and changing codes, as a user at a terminal (or in CI) sees it."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from promo.cli import cli
from promo.client import PromoClient
from tests.conftest import Project, Running

# What rich reads to decide that stderr is an interactive terminal.
TERMINAL = {"TTY_COMPATIBLE": "1", "TTY_INTERACTIVE": "1"}
NO_TERMINAL = {"TTY_COMPATIBLE": "0", "TTY_INTERACTIVE": "0"}


@pytest.fixture
def promo(running: Running, project: Project):  # type: ignore[no-untyped-def]
    with PromoClient(running.target, project.admin_key) as client:
        client.create_promotion(
            {
                "externalId": "summer-sale",
                "name": {"en-US": "Summer sale"},
                "discount": {"percent": "15.00"},
            }
        )
    runner = CliRunner()
    # Wide enough for the codes table on one line a row.
    env = {
        "PROMO_TARGET": running.target,
        "PROMO_API_KEY": project.admin_key,
        "COLUMNS": "160",
        **NO_TERMINAL,
    }

    def run(*args: str, input: str | None = None, terminal: bool = False) -> Result:
        return runner.invoke(
            cli,
            list(args),
            env={**env, **(TERMINAL if terminal else {})},
            input=input,
            catch_exceptions=False,
        )

    return run


def codes_file(path: Path, codes: list[str]) -> Path:
    path.write_text("".join(f"{code}\n" for code in codes))
    return path


def key_values(text: str) -> dict[str, str]:
    """The rows of a two-column key/value table."""
    pairs = (line.split(maxsplit=1) for line in text.splitlines() if line.strip())
    return {key: value.strip() for key, value in pairs}


def csv_codes(text: str) -> list[str]:
    return sorted(row["code"] for row in csv.DictReader(text.splitlines()))


def test_import_a_file_then_export_it_back(promo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    codes = [f"SUMMER-{n:04d}" for n in range(300)]
    source = codes_file(tmp_path / "codes.csv", codes)

    imported = promo("codes", "import", str(source), "--promotion", "summer-sale")
    exported = promo(
        "codes", "export", "--promotion", "summer-sale", "--output", str(tmp_path / "back.csv")
    )

    assert imported.exit_code == 0, imported.output
    assert imported.stderr == ""
    assert key_values(imported.stdout) == {
        "imported": "300",
        "duplicates": "0",
        "rejected": "0",
        "retired": "0",
    }
    assert exported.exit_code == 0, exported.output
    assert exported.stderr == f"exported 300 codes to {tmp_path / 'back.csv'}\n"
    assert csv_codes((tmp_path / "back.csv").read_text()) == codes


def test_skip_invalid_shows_a_table_of_the_rejected_lines(promo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    source = tmp_path / "codes.csv"
    source.write_text("GOOD-1\nnot a code!\nGOOD-2\n")

    result = promo("codes", "import", str(source), "--promotion", "summer-sale", "--skip-invalid")

    assert result.exit_code == 0, result.output
    assert "rejected lines" in result.stdout
    assert "│    2 │ not a code! │" in result.stdout
    assert "imported    2" in result.stdout


def test_a_bad_line_refuses_the_file_with_one_error_line(promo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    source = tmp_path / "codes.csv"
    source.write_text("GOOD-1\nnot a code!\n")

    result = promo("codes", "import", str(source), "--promotion", "summer-sale")

    assert result.exit_code == 1
    assert result.stderr.startswith("error: INVALID_ARGUMENT: chunk: line 2: ")
    assert result.stderr.count("\n") == 1
    assert promo("codes", "export", "--promotion", "summer-sale").stdout.count("\n") == 1


def test_append_from_stdin_with_json_then_export_to_stdout(promo) -> None:  # type: ignore[no-untyped-def]
    promo("codes", "import", "-", input="A-1\nA-2\n")

    appended = promo("--json", "codes", "import", "-", "--append", input="A-3\n")
    exported = promo("codes", "export")

    assert appended.exit_code == 0, appended.output
    assert json.loads(appended.stdout) == {
        "imported": "1", "duplicates": "0", "rejected": "0", "retired": "0", "errors": []
    }
    assert csv_codes(exported.stdout) == ["A-1", "A-2", "A-3"]
    assert exported.stderr == "exported 3 codes to <stdout>\n"


def test_header_and_default_expiry(promo) -> None:  # type: ignore[no-untyped-def]
    result = promo(
        "codes",
        "import",
        "-",
        "--header",
        "--default-expire-time",
        "2030-01-01T00:00:00+02:00",
        input="code\nH-1\n",
    )

    assert result.exit_code == 0, result.output
    shown = promo("--json", "codes", "get", "h-1")
    assert json.loads(shown.stdout)["expireTime"] == "2029-12-31T22:00:00Z"


def test_export_with_a_filter(promo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    promo("codes", "import", "-", "--promotion", "summer-sale", input="F-1\nF-2\nF-3\n")
    promo("codes", "update", "F-2", "--inactive")

    inactive = promo("codes", "export", "--promotion", "summer-sale", "--filter", "INACTIVE")
    available = promo("codes", "export", "--promotion", "summer-sale", "--filter", "available")

    assert csv_codes(inactive.stdout) == ["F-2"]
    assert csv_codes(available.stdout) == ["F-1", "F-3"]


def test_a_failed_export_leaves_no_file(promo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "exports"
    folder.mkdir()

    result = promo("codes", "export", "--promotion", "nope", "--output", str(folder / "out.csv"))

    assert result.exit_code == 1
    assert result.stderr.startswith("error: NOT_FOUND")
    assert list(folder.iterdir()) == []


def test_generate_list_get_and_update(promo) -> None:  # type: ignore[no-untyped-def]
    generated = promo(
        "codes", "generate", "--promotion", "summer-sale", "--count", "5", "--pattern", "GEN-####"
    )
    listed = promo("--json", "codes", "list", "--promotion", "summer-sale", "--all")
    codes = [code["code"] for code in json.loads(listed.stdout)]
    first_page = promo("codes", "list", "--promotion", "summer-sale", "--page-size", "2")

    assert generated.stdout == "generated 5 codes in summer-sale\n"
    assert len(codes) == 5
    assert sum(code in first_page.stdout for code in codes) == 2
    assert first_page.stderr.startswith("more: --page-token ")

    updated = promo("codes", "update", codes[0].lower(), "--inactive")
    shown = promo("codes", "get", codes[0])
    inactive = promo(
        "--json", "codes", "list", "--promotion", "summer-sale", "--filter", "inactive"
    )

    assert updated.exit_code == 0, updated.output
    rows = key_values(shown.stdout)
    assert (rows["code"], rows["promotion"], rows["active"]) == (codes[0], "summer-sale", "no")
    assert [code["code"] for code in json.loads(inactive.stdout)["codes"]] == [codes[0]]


def test_list_the_codes_a_profile_holds(promo) -> None:  # type: ignore[no-untyped-def]
    nobody = promo("--json", "codes", "list", "--profile-id", "nobody-yet")
    unknown = promo("codes", "list", "--custom", "crm-id=42")

    assert json.loads(nobody.stdout) == {"codes": [], "nextPageToken": ""}
    assert unknown.exit_code == 1
    assert unknown.stderr.startswith("error: NOT_FOUND")
    assert "crm-id" in unknown.stderr


def test_update_the_expiry(promo) -> None:  # type: ignore[no-untyped-def]
    promo("codes", "import", "-", input="E-1\n")

    set_ = promo("--json", "codes", "update", "E-1", "--expire-time", "2031-02-03T04:05:06Z")
    cleared = promo("--json", "codes", "update", "E-1", "--no-expire-time", "--active")

    assert json.loads(set_.stdout)["expireTime"] == "2031-02-03T04:05:06Z"
    assert "expireTime" not in json.loads(cleared.stdout)


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["codes", "update", "X"], "nothing to change"),
        (
            ["codes", "update", "X", "--expire-time", "2030-01-01T00:00:00Z", "--no-expire-time"],
            "not both",
        ),
        (["codes", "update", "X", "--expire-time", "tomorrow"], "RFC 3339"),
        (["codes", "update", "X", "--expire-time", "2030-01-01T00:00:00"], "RFC 3339"),
        (["codes", "list", "--email", "a@example.com", "--phone", "+100"], "at most one"),
        (["codes", "list", "--custom", "crm-id"], "FIELD=VALUE"),
        (["codes", "list", "--filter", "gone"], "'gone' is not one of"),
        (["codes", "generate", "--count", "0", "--pattern", "X-#"], "--count"),
    ],
)
def test_bad_options_are_usage_errors(promo, args: list[str], complaint: str) -> None:  # type: ignore[no-untyped-def]
    result = promo(*args)

    assert result.exit_code == 2
    assert complaint in result.stderr


def test_a_file_that_cannot_be_read(promo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    missing = tmp_path / "missing.csv"

    result = promo("codes", "import", str(missing))

    assert result.exit_code == 1
    assert result.stderr == f"error: {missing}: cannot read: No such file or directory\n"


def test_progress_bars_on_a_terminal(promo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    source = codes_file(tmp_path / "codes.csv", [f"T-{n}" for n in range(1000)])

    imported = promo("codes", "import", str(source), terminal=True)
    exported = promo("codes", "export", "--output", str(tmp_path / "back.csv"), terminal=True)
    as_json = promo("--json", "codes", "import", str(source), terminal=True)

    assert imported.exit_code == 0, imported.output
    assert "importing" in imported.stderr and "1,000 lines" in imported.stderr
    assert "exporting" in exported.stderr and "1,000 codes" in exported.stderr
    assert exported.stderr.endswith(f"exported 1,000 codes to {tmp_path / 'back.csv'}\n")
    assert as_json.stderr == ""
