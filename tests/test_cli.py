"""The `promo` command line against a real server: what the README walks a newcomer through."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from promo.cli import cli
from tests.conftest import Project, Running

EXAMPLE = Path(__file__).parent.parent / "examples" / "promotion.json"


@pytest.fixture
def promo(running: Running, project: Project):  # type: ignore[no-untyped-def]
    runner = CliRunner()
    env = {"PROMO_TARGET": running.target, "PROMO_API_KEY": project.admin_key}

    def run(*args: str, input: str | None = None) -> Result:
        return runner.invoke(cli, list(args), env=env, input=input, catch_exceptions=False)

    return run


def test_create_get_list_update_delete(promo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    created = promo("--json", "promotions", "create", "--file", str(EXAMPLE))
    assert created.exit_code == 0, created.output
    assert json.loads(created.stdout)["externalId"] == "summer-sale"

    shown = promo("promotions", "get", "summer-sale")
    assert shown.exit_code == 0
    assert "Summer sale" in shown.stdout and "15.00%" in shown.stdout

    listed = promo("--json", "promotions", "list", "--all")
    assert [p["externalId"] for p in json.loads(listed.stdout)] == ["summer-sale"]

    patch = tmp_path / "patch.json"
    patch.write_text(json.dumps({"redeemTotalLimit": "5", "name": {"en-US": "Ignored"}}))
    updated = promo("--json", "promotions", "update", "summer-sale", "--file", str(patch),
                    "--mask", "redeem_total_limit")
    body = json.loads(updated.stdout)
    assert body["redeemTotalLimit"] == "5"
    assert body["name"]["en-US"] == "Summer sale"

    assert promo("promotions", "delete", "summer-sale").exit_code == 0
    gone = promo("promotions", "get", "summer-sale")
    assert gone.exit_code == 1
    assert gone.stderr.strip() == "error: NOT_FOUND: promotion 'summer-sale' not found"


def test_a_refused_create_prints_one_line_naming_the_fields(promo) -> None:  # type: ignore[no-untyped-def]
    result = promo("promotions", "create", "--file", "-",
                   input=json.dumps({"externalId": "bad id", "name": {}}))
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: INVALID_ARGUMENT")
    assert "promotion.external_id" in lines[0] and "promotion.name" in lines[0]


def test_a_file_that_is_not_json_is_a_clear_error(promo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    broken = tmp_path / "broken.json"
    broken.write_text("{nope")
    result = promo("promotions", "create", "--file", str(broken))
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: {broken}: not valid JSON")


def test_a_promotion_shows_the_codes_left_and_marks_low_stock(promo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    body = {"externalId": "stocked", "name": {"en-US": "Stocked"}, "lowStockThreshold": "3",
            "discount": {"percent": "10"}}
    assert promo("promotions", "create", "--file", "-", input=json.dumps(body)).exit_code == 0
    codes = tmp_path / "codes.csv"
    codes.write_text("S-1\nS-2\n")
    assert promo("codes", "import", "--promotion", "stocked", str(codes)).exit_code == 0

    shown = promo("promotions", "get", "stocked").stdout

    assert "available_code_count  2 (low: < 3)" in shown
    assert "low_stock_threshold   3" in shown
