"""`promo profiles`, `promo codes attach|detach|validate|activate|rollback` and
`promo redemptions` against a real server, as a user at a terminal sees them; first of all,
the README's walkthrough, run as written."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from promo.cli import cli
from tests.conftest import Project, Running

ROOT = Path(__file__).parent.parent
EXAMPLE = ROOT / "examples" / "promotion.json"
WALKTHROUGH = "### Handing out and redeeming codes"
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# Wide enough for the redemptions table on one line a row; stderr is no terminal.
ENV = {"COLUMNS": "160", "TTY_COMPATIBLE": "0", "TTY_INTERACTIVE": "0"}

Run = Callable[..., Result]


def runner_for(env: dict[str, str]) -> Run:
    runner = CliRunner()

    def run(*args: str, input: str | None = None) -> Result:
        return runner.invoke(cli, list(args), env=env, input=input, catch_exceptions=False)

    return run


@pytest.fixture
def promo(running: Running, project: Project) -> Run:
    return runner_for({**ENV, "PROMO_TARGET": running.target, "PROMO_API_KEY": project.admin_key})


@pytest.fixture
def summer(promo: Run) -> Run:
    """The README's promotion, with three codes in its pool."""
    created = promo("promotions", "create", "--file", str(EXAMPLE))
    assert created.exit_code == 0, created.output
    promo("codes", "import", "-", "--promotion", "summer-sale", input="S-1\nS-2\nS-3\n")
    return promo


def fields(text: str) -> dict[str, str]:
    """The rows of the key/value table an output starts with (up to its first blank line)."""
    head = text.split("\n\n", 1)[0]
    pairs = (line.split(maxsplit=1) for line in head.splitlines() if line.strip())
    return {pair[0]: pair[1].strip() if len(pair) > 1 else "" for pair in pairs}


def walkthrough_lines() -> list[str]:
    """The shell lines of the README's walkthrough, in order."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split(WALKTHROUGH, 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, flags=re.DOTALL)
    return [line for block in blocks for line in block.splitlines() if line.strip()]


def test_the_readme_walkthrough_runs_as_written(
    promo: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The example as written, running today whatever its dates say.
    example = json.loads(EXAMPLE.read_text())
    now = datetime.now(UTC)
    example["startTime"] = (now - timedelta(days=1)).isoformat()
    example["endTime"] = (now + timedelta(days=1)).isoformat()
    (tmp_path / "examples").mkdir()
    (tmp_path / "examples" / "promotion.json").write_text(json.dumps(example))
    monkeypatch.chdir(tmp_path)
    # The README's tour creates the promotion first.
    assert promo("promotions", "create", "--file", "examples/promotion.json").exit_code == 0

    outputs: list[tuple[list[str], str]] = []
    redemption_id = ""
    for line in walkthrough_lines():
        if not line.startswith("promo "):
            assert line.startswith("printf "), f"the test cannot run {line!r}"
            subprocess.run(["bash", "-c", line], check=True, cwd=tmp_path)
            continue
        # The README shows its own run's redemption id; a reader types the one they got.
        args = [UUID.sub(redemption_id, arg) for arg in shlex.split(line, comments=True)[1:]]
        result = promo(*args)
        assert result.exit_code == 0, f"{line}\n{result.output}"
        if args[:2] == ["codes", "activate"]:
            redemption_id = fields(result.stdout)["id"]
        outputs.append((args[:2], result.stdout))

    steps = [step for step, _ in outputs]
    assert steps == [
        ["codes", "import"],
        ["profiles", "upsert"],
        ["codes", "attach"],
        ["codes", "validate"],
        ["codes", "activate"],
        ["redemptions", "list"],
        ["codes", "rollback"],
        ["codes", "validate"],
    ]
    imported, profile, attached, checked, redeemed, _, rolled, again = (
        fields(out) for _, out in outputs
    )
    listed = outputs[5][1]
    assert imported["imported"] == "3"
    assert (profile["profile_id"], profile["email"], profile["attributes[tier]"]) == (
        "ann-42",
        "ann@example.com",
        "gold",
    )
    assert (attached["code"], attached["promotion"], attached["profile_id"]) == (
        "SUMMER-1",
        "summer-sale",
        "ann-42",
    )
    totals = {key: checked[key] for key in ("cart_total", "discount_total", "final_total")}
    assert checked["valid"] == "yes"
    assert totals == {"cart_total": "59.99", "discount_total": "9.00", "final_total": "50.99"}
    assert checked["bonus"] == "tote-bag x 1"
    assert "│ socks │        1 │       9.99 │     1.50 │        8.49 │" in outputs[3][1]
    assert (redeemed["code"], redeemed["state"], redeemed["request_id"]) == (
        "SUMMER-1",
        "REDEEMED",
        "order-1001",
    )
    assert {key: redeemed[key] for key in totals} == totals
    assert redemption_id in listed and "REDEEMED" in listed
    assert (rolled["id"], rolled["state"], rolled["rollback_reason"]) == (
        redemption_id,
        "ROLLED_BACK",
        "order cancelled",
    )
    assert again["valid"] == "yes"


def test_json_output_keeps_false_zero_and_empty_fields(summer: Run) -> None:
    refused = summer("--json", "codes", "validate", "S-1", "--profile-id", "ann",
                     "--currency", "EUR", "--item", "shirt:1:5.00")
    code = summer("--json", "codes", "get", "S-2")

    assert json.loads(refused.stdout) == {"valid": False, "reason": "CONDITIONS_NOT_MET"}
    shown = json.loads(code.stdout)
    assert (shown["active"], shown["retired"], shown["profileId"]) == (True, False, "")
    assert (shown["attachmentCount"], shown["redemptionCount"]) == ("0", "0")


def test_json_output_parses(summer: Run, tmp_path: Path) -> None:
    profile = summer(
        "--json",
        "profiles",
        "upsert",
        "ann",
        "--email",
        "ann@example.com",
        "--phone",
        "+100",
        "--field",
        "crm_id=C-7",
        "--field",
        "note=a=b",
        "--attribute",
        "tier=gold",
    )
    attached = summer("--json", "codes", "attach", "--promotion", "summer-sale", "--phone", "+100")
    cart = tmp_path / "cart.json"
    cart.write_text(
        json.dumps(
            {"currency": "USD", "items": [{"sku": "shirt", "quantity": 2, "unitPrice": "25.00"}]}
        )
    )
    checked = summer(
        "--json", "codes", "validate", "S-1", "--profile-id", "ann", "--cart", str(cart)
    )
    redeemed = summer(
        "--json",
        "codes",
        "activate",
        "S-1",
        "--custom",
        "crm_id=C-7",
        "--cart",
        "-",
        input=cart.read_text(),
    )
    redemption_id = json.loads(redeemed.stdout)["id"]
    listed = summer("--json", "redemptions", "list", "--promotion", "summer-sale")
    every = summer("--json", "redemptions", "list", "--code", "s-1", "--all")
    rolled = summer("--json", "codes", "rollback", redemption_id, "--reason", "returned")
    detached = summer("--json", "codes", "detach", "S-1", "--email", "ann@example.com")

    assert json.loads(profile.stdout) | {"createTime": "", "updateTime": ""} == {
        "profileId": "ann",
        "email": "ann@example.com",
        "phone": "+100",
        "customFields": {"crm_id": "C-7", "note": "a=b"},
        "attributes": {"tier": "gold"},
        "createTime": "",
        "updateTime": "",
    }
    assert json.loads(attached.stdout)["code"] == "S-1"
    validation = json.loads(checked.stdout)
    assert validation["valid"] is True
    assert validation["reward"]["finalTotal"] == "42.50"
    assert validation["reward"]["bonus"] == [{"sku": "tote-bag", "quantity": "1"}]
    redemption = json.loads(redeemed.stdout)
    assert (redemption["state"], redemption["profileId"]) == ("REDEEMED", "ann")
    assert redemption["reward"] == validation["reward"]
    assert [r["id"] for r in json.loads(listed.stdout)["redemptions"]] == [redemption_id]
    assert json.loads(listed.stdout)["nextPageToken"] == ""
    assert [r["id"] for r in json.loads(every.stdout)] == [redemption_id]
    assert json.loads(rolled.stdout)["state"] == "ROLLED_BACK"
    assert json.loads(rolled.stdout)["rollbackReason"] == "returned"
    assert json.loads(detached.stdout) == {}


def test_profiles_are_found_by_each_mode(promo: Run) -> None:
    promo(
        "profiles",
        "upsert",
        "u-1",
        "--email",
        "u@example.com",
        "--phone",
        "+1",
        "--field",
        "crm_id=C-1",
    )

    for mode in (
        ["--profile-id", "u-1"],
        ["--email", "u@example.com"],
        ["--phone", "+1"],
        ["--custom", "crm_id=C-1"],
    ):
        shown = promo("profiles", "get", *mode)
        assert shown.exit_code == 0, shown.output
        assert fields(shown.stdout)["profile_id"] == "u-1"
        assert fields(shown.stdout)["custom_fields[crm_id]"] == "C-1"
    missing = promo("profiles", "get", "--email", "nobody@example.com")
    assert missing.exit_code == 1
    assert missing.stderr == "error: NOT_FOUND: no profile has email 'nobody@example.com'\n"


def test_a_repeated_request_id_shows_the_same_redemption(summer: Run) -> None:
    args = [
        "codes",
        "activate",
        "S-2",
        "--profile-id",
        "ann",
        "--currency",
        "USD",
        "--item",
        "shirt:2:25.00",
        "--item",
        "gift card:1:5",
    ]

    first = summer(*args, "--request-id", "order-7")
    again = summer(*args, "--request-id", "order-7")
    fresh = summer(*args)

    assert first.exit_code == again.exit_code == 0, first.output + again.output
    assert fields(again.stdout)["id"] == fields(first.stdout)["id"]
    assert "│ gift card │        1 │       5.00 │" in first.stdout
    # A new request id: a second redemption, which the promotion's limits refuse.
    assert fresh.exit_code == 1
    assert fresh.stderr.startswith("error: RESOURCE_EXHAUSTED CODE_LIMIT_REACHED: ")


def test_a_refusal_is_shown_as_not_valid(summer: Run) -> None:
    too_small = summer(
        "codes",
        "validate",
        "S-1",
        "--profile-id",
        "ann",
        "--currency",
        "USD",
        "--item",
        "pin:1:5.00",
    )
    no_cart = summer("codes", "validate", "S-1", "--profile-id", "ann")
    unknown = summer("codes", "validate", "NOPE", "--profile-id", "ann")

    assert too_small.exit_code == 0
    assert fields(too_small.stdout) == {"valid": "no", "reason": "CONDITIONS_NOT_MET"}
    assert fields(no_cart.stdout)["valid"] == "no"
    assert unknown.exit_code == 1
    assert unknown.stderr == "error: NOT_FOUND: code 'NOPE' not found\n"


def test_attach_a_chosen_code_then_detach_it(summer: Run) -> None:
    attached = summer(
        "codes", "attach", "--promotion", "summer-sale", "--profile-id", "bob", "--code", "s-3"
    )
    taken = summer(
        "codes", "attach", "--promotion", "summer-sale", "--profile-id", "cid", "--code", "S-3"
    )
    detached = summer("codes", "detach", "S-3")

    assert fields(attached.stdout)["code"] == "S-3"
    assert taken.exit_code == 1
    assert taken.stderr.startswith("error: FAILED_PRECONDITION CODE_ALREADY_ATTACHED: ")
    assert detached.stdout == "detached S-3\n"
    assert fields(summer("codes", "get", "S-3").stdout)["attachment_count"] == "0"


def test_redemptions_page_by_page(summer: Run) -> None:
    for code, profile in (("S-1", "a"), ("S-2", "b"), ("S-3", "c")):
        summer(
            "codes",
            "activate",
            code,
            "--profile-id",
            profile,
            "--currency",
            "USD",
            "--item",
            "shirt:1:30",
        )

    page = summer("redemptions", "list", "--page-size", "2")
    token = page.stderr.removeprefix("more: --page-token ").strip()
    rest = summer("redemptions", "list", "--page-size", "2", "--page-token", token)
    every = summer("redemptions", "list", "--all", "--page-size", "1")

    assert page.stderr.startswith("more: --page-token ")
    assert len(UUID.findall(page.stdout)) == 2
    assert len(UUID.findall(rest.stdout)) == 1 and rest.stderr == ""
    assert sorted(UUID.findall(every.stdout)) == sorted(
        UUID.findall(page.stdout) + UUID.findall(rest.stdout)
    )
    mine = summer("redemptions", "list", "--profile-id", "b")
    assert "S-2" in mine.stdout and "S-1" not in mine.stdout
    clamped = summer("redemptions", "list", "--page-size", "5000000000")
    assert clamped.exit_code == 0 and len(UUID.findall(clamped.stdout)) == 3


def test_a_list_too_wide_for_the_terminal_shows_each_row_as_a_block(
    summer: Run, running: Running, project: Project
) -> None:
    redeemed = summer("--json", "codes", "activate", "S-1", "--profile-id", "ann-42",
                      "--currency", "USD", "--item", "shirt:1:30")
    redemption_id = json.loads(redeemed.stdout)["id"]
    narrow = runner_for({**ENV, "COLUMNS": "80", "PROMO_TARGET": running.target,
                         "PROMO_API_KEY": project.admin_key})

    shown = narrow("redemptions", "list")

    assert shown.exit_code == 0
    block = {line.split("  ", 1)[0]: line.split("  ", 1)[1].strip()
             for line in shown.stdout.splitlines() if line.strip()}
    assert {name: block[name] for name in ("id", "code", "promotion", "profile_id", "state")} == {
        "id": redemption_id, "code": "S-1", "promotion": "summer-sale", "profile_id": "ann-42",
        "state": "REDEEMED",
    }
    assert block["created (UTC)"].startswith(str(datetime.now(UTC).year))
    assert max(len(line) for line in shown.stdout.splitlines()) <= 80
    codes = narrow("codes", "list", "--promotion", "summer-sale").stdout
    assert codes.splitlines()[:2] == ["codes of summer-sale", ""]  # no column names the pool
    assert [line.split() for line in codes.splitlines() if line.startswith("code ")] == [
        ["code", "S-1"], ["code", "S-2"], ["code", "S-3"]
    ]


@pytest.fixture(scope="module")
def offline() -> Run:
    """The CLI with no server: usage errors are caught before any call."""
    return runner_for({**ENV, "PROMO_TARGET": "127.0.0.1:9", "PROMO_API_KEY": "k"})


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (
            ["codes", "validate", "C", "--profile-id", "a", "--currency", "USD", "--item", "x:1"],
            "expected SKU:QUANTITY:UNIT_PRICE such as shirt:2:19.99, not 'x:1'",
        ),
        (
            [
                "codes",
                "activate",
                "C",
                "--profile-id",
                "a",
                "--currency",
                "USD",
                "--item",
                "x:two:1.00",
            ],
            "SKU:QUANTITY:UNIT_PRICE",
        ),
        (
            [
                "codes",
                "activate",
                "C",
                "--profile-id",
                "a",
                "--currency",
                "USD",
                "--item",
                "x:1:1,50",
            ],
            "SKU:QUANTITY:UNIT_PRICE",
        ),
        (
            ["codes", "validate", "C", "--profile-id", "a", "--currency", "USD", "--item", "x:0:1"],
            "the quantity of 'x:0:1' must be 1 to 9223372036854775807",
        ),
        (
            ["codes", "validate", "C", "--profile-id", "a", "--currency", "USD",
             "--item", "x:99999999999999999999:1"],
            "must be 1 to 9223372036854775807",
        ),
        (
            ["codes", "validate", "C", "--profile-id", "a", "--item", "x:1:1"],
            "--item needs --currency",
        ),
        (
            ["codes", "validate", "C", "--profile-id", "a", "--currency", "USD"],
            "--currency needs the cart's lines",
        ),
        (
            ["codes", "validate", "C", "--profile-id", "a", "--cart", "c.json", "--item", "x:1:1"],
            "give --cart, or --currency with --item, not both",
        ),
        (["codes", "validate", "C", "--currency", "USD", "--item", "x:1:1"], "name the profile"),
        (
            ["codes", "activate", "C", "--profile-id", "a", "--email", "a@example.com"],
            "give at most one of --profile-id, --email, --phone, --custom",
        ),
        (
            ["codes", "activate", "C", "--profile-id", "a", "--attribute", "tier"],
            "expected NAME=VALUE, not 'tier'",
        ),
        (["codes", "attach", "--profile-id", "a"], "Missing option '--promotion'"),
        (["codes", "attach", "--promotion", "p"], "name the profile"),
        (["codes", "detach", "C", "--custom", "crm_id"], "expected FIELD=VALUE, not 'crm_id'"),
        (["codes", "rollback"], "Missing argument 'REDEMPTION_ID'"),
        (["profiles", "get"], "name the profile"),
        (["profiles", "upsert", "u", "--field", "=x"], "expected NAME=VALUE"),
        (
            ["profiles", "upsert", "u", "--attribute", "a=1", "--attribute", "a=2"],
            "'a' is given twice",
        ),
        (["redemptions", "list", "--all", "--page-token", "t"], "drop --page-token"),
        (["redemptions", "list", "--page-size", "-1"], "--page-size"),
        (["codes", "update", "C", "--expire-time", "9999-12-31T23:59:59-05:00"],
         "'9999-12-31T23:59:59-05:00' is not within the years 1 to 9999 in UTC"),
    ],
)
def test_bad_options_are_usage_errors(offline: Run, args: list[str], complaint: str) -> None:
    result = offline(*args)

    assert result.exit_code == 2, result.output
    assert complaint in " ".join(result.stderr.split())
