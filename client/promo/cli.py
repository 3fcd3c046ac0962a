"""The `promo` command line: every RPC of the promo service, as tables or as JSON."""

from __future__ import annotations

import functools
import json
import os
import re
import stat
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any, TypeVar

import click
from google.protobuf import json_format
from google.protobuf.message import Message
from rich.console import Console, Group, RenderableType
from rich.measure import Measurement
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)
from rich.table import Table
from rich.text import Text

from promo.client import DEFAULT_TARGET, PromoClient
from promo.errors import PromoError
from promo.v1 import code_pb2, profile_pb2, promotion_pb2

_M = TypeVar("_M", bound=Message)
_Command = Callable[..., None]


class CliFailure(click.ClickException):
    """A failure the user can act on: one `error:` line on stderr, exit status 1."""

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {' '.join(self.format_message().split())}", err=True)


class App:
    """What every command needs: the global options and, on first use, the client."""

    def __init__(
        self, ctx: click.Context, connect: Callable[[], PromoClient], as_json: bool
    ) -> None:
        self._ctx = ctx
        self._connect = connect
        self.as_json = as_json
        self._client: PromoClient | None = None
        self.console = Console()
        # Progress bars and notes go to stderr, so that stdout stays data.
        self.err_console = Console(stderr=True)

    @property
    def client(self) -> PromoClient:
        if self._client is None:
            try:
                client = self._connect()
            except ValueError as err:  # a TLS file that cannot work, a key that cannot be sent
                raise CliFailure(str(err)) from err
            self._client = self._ctx.with_resource(client)
        return self._client

    def show(self, message: _M, render: Callable[[_M], RenderableType]) -> None:
        """Prints a message as its JSON mapping (--json) or as `render` draws it."""
        if self.as_json:
            click.echo(json.dumps(_as_json(message), indent=2, ensure_ascii=False))
        else:
            self.console.print(render(message))

    def show_page(
        self,
        name: str,
        found: Sequence[Message],
        next_page_token: str,
        table: RenderableType,
        every_page: bool,
    ) -> None:
        """Prints one page of a list (or every page, as one JSON array with --all)."""
        if self.as_json:
            documents = [_as_json(item) for item in found]
            self.show_json(
                documents if every_page else {name: documents, "nextPageToken": next_page_token}
            )
            return
        self.console.print(_fitted(self.console, table))
        if next_page_token:
            click.echo(f"more: --page-token {next_page_token}", err=True)

    def show_json(self, value: Any) -> None:
        """Prints plain JSON data, for output that is not a single message."""
        click.echo(json.dumps(value, indent=2, ensure_ascii=False))


pass_app = click.make_pass_decorator(App)

INT64_MAX = 2**63 - 1
INT32_MAX = 2**31 - 1


class _PageSize(click.IntRange):
    """0 or more; any size past an int32's largest is that (the server clamps to its own)."""

    def __init__(self) -> None:
        super().__init__(min=0)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        return min(super().convert(value, param, ctx), INT32_MAX)


PAGE_SIZE = _PageSize()


class _PromoGroup(click.Group):
    """Turns a refused call in any subcommand into the one-line `error:` failure."""

    def invoke(self, ctx: click.Context) -> Any:
        if sys.stdout is None:  # started with it closed (`>&-`): every answer would be lost
            raise CliFailure("standard output is closed: promo prints its answers there "
                             "(redirect it to /dev/null to drop them)")
        try:
            return super().invoke(ctx)
        except PromoError as exc:
            raise CliFailure(str(exc)) from exc
        except UnicodeEncodeError as exc:  # an argument the shell passed as bytes, not text
            raise CliFailure(f"an argument is not UTF-8 text: {exc.object!r}") from exc


@click.group(cls=_PromoGroup)
@click.option(
    "--target",
    envvar="PROMO_TARGET",
    default=DEFAULT_TARGET,
    show_default=True,
    show_envvar=True,
    help="host:port of the promo service.",
)
@click.option("--api-key", envvar="PROMO_API_KEY", show_envvar=True, help="The project's API key.")
@click.option(
    "--tls", is_flag=True, envvar="PROMO_TLS", show_envvar=True,
    help="Connect with TLS, trusting the system's CA certificates unless --ca.",
)
@click.option(
    "--ca", type=click.Path(exists=True, dir_okay=False), envvar="PROMO_TLS_CA", show_envvar=True,
    help="PEM file of the CA certificates that sign the server's; implies --tls.",
)
@click.option(
    "--client-cert", type=click.Path(exists=True, dir_okay=False), envvar="PROMO_CLIENT_CERT",
    show_envvar=True, help="PEM certificate chain, for a server that requires one; implies --tls.",
)
@click.option(
    "--client-key", type=click.Path(exists=True, dir_okay=False), envvar="PROMO_CLIENT_KEY",
    show_envvar=True, help="PEM private key of --client-cert, unencrypted.",
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print the protobuf JSON mapping, as --file reads it."
)
@click.pass_context
def cli(
    ctx: click.Context,
    target: str,
    api_key: str | None,
    tls: bool,
    ca: str | None,
    client_cert: str | None,
    client_key: str | None,
    as_json: bool,
) -> None:
    """Client of the promo-code service."""

    def connect() -> PromoClient:
        if (client_cert is None) != (client_key is None):
            raise CliFailure(
                "--client-cert and --client-key (PROMO_CLIENT_CERT, PROMO_CLIENT_KEY) go together:"
                " give both or neither"
            )
        return PromoClient(
            target, api_key, tls=tls, ca=ca, client_cert=client_cert, client_key=client_key
        )

    ctx.obj = App(ctx, connect, as_json)


def main() -> None:
    cli(prog_name="promo")


def _as_json(message: Message) -> dict[str, Any]:
    """The message in the protobuf JSON mapping, with every field that has no presence
    (false, 0, "" and empty lists too): a script reads `valid` as false, not missing."""
    return json_format.MessageToDict(message, always_print_fields_with_no_presence=True)


def read_message(path: str, message: _M) -> _M:
    """Fills `message` from a JSON file in the protobuf JSON mapping; `-` reads stdin."""
    name = "<stdin>" if path == "-" else path
    document = _parse_json_object(name, _read_bytes(path, name))
    try:
        return json_format.ParseDict(document, message)
    except json_format.ParseError as err:
        raise CliFailure(f"{name}: not a {message.DESCRIPTOR.name}: {err}") from err


def _read_bytes(path: str, name: str) -> bytes:
    try:
        with _opened(path, name) as file:
            return file.read()
    except OSError as err:
        raise CliFailure(f"{name}: cannot read: {err.strerror}") from err


def _opened(path: str, name: str) -> IO[bytes]:
    """The file at `path` opened to read bytes; stdin for `-`."""
    try:
        return click.open_file(path, "rb")  # type: ignore[no-any-return]
    except RuntimeError as err:  # click finds no stdin: it was closed (`<&-`)
        raise CliFailure(f"{name}: cannot read: standard input is closed") from err


def _parse_json_object(name: str, data: bytes) -> dict[str, Any]:
    try:
        document = json.loads(data)
    except ValueError as err:
        raise CliFailure(f"{name}: not valid JSON: {err}") from err
    if not isinstance(document, dict):
        raise CliFailure(f"{name}: expected a JSON object")
    return document


class Rfc3339(click.ParamType):
    """A point in time written in RFC 3339, with its offset: 2025-12-31T23:59:59Z."""

    name = "RFC3339"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, datetime):
            return value
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            parsed = None
        if parsed is None or parsed.tzinfo is None:
            self.fail(f"{value!r} is not an RFC 3339 time such as 2025-12-31T23:59:59Z", param, ctx)
        try:
            parsed.astimezone(UTC)
        except OverflowError:  # its offset takes it out of the years 1..9999
            self.fail(f"{value!r} is not within the years 1 to 9999 in UTC", param, ctx)
        return parsed


class Assignment(click.ParamType):
    """NAME=VALUE, as a (name, value) pair; the value may be empty or hold `=`."""

    def __init__(self, metavar: str = "NAME=VALUE") -> None:
        self.name = metavar

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, tuple):
            return value
        name, equals, text = value.partition("=")
        if not equals or not name:
            self.fail(f"expected {self.name}, not {value!r}", param, ctx)
        return name, text


def assignments(pairs: Iterable[tuple[str, str]], option: str) -> dict[str, str]:
    """The NAME=VALUE pairs of a repeated option as a mapping; a name given twice is an error."""
    found: dict[str, str] = {}
    for name, value in pairs:
        if name in found:
            raise click.BadParameter(f"{name!r} is given twice", param_hint=option)
        found[name] = value
    return found


def cell(value: object) -> Text:
    """A table cell shown as written: user data may hold rich markup such as `[b]`."""
    return Text(str(value))


def timestamp(message: Message, field: str, unset: str = "-") -> str:
    """The RFC 3339 text of a Timestamp field, or `unset`."""
    return getattr(message, field).ToJsonString() if message.HasField(field) else unset


def short_time(message: Message, field: str) -> str:
    """A Timestamp field to the minute in UTC, for tables; "-" when unset."""
    if not message.HasField(field):
        return "-"
    return getattr(message, field).ToDatetime(tzinfo=UTC).strftime("%Y-%m-%d %H:%M")


_UNBOUNDED = 100_000  # columns: a table's width as it would be with room for every cell


def _fitted(console: Console, table: RenderableType) -> RenderableType:
    """The table, or, where the console is too narrow for it, each row as a block of
    ``column value`` lines: ids and codes then stay whole, to be copied."""
    if not isinstance(table, Table) or not table.row_count:
        return table
    unbounded = console.options.update(max_width=_UNBOUNDED)
    if Measurement.get(console, unbounded, table).maximum <= console.width:
        return table
    # The title names what is listed ("codes of summer-sale"), where no column may.
    blocks: list[RenderableType] = [cell(str(table.title))] if table.title else []
    columns = [(str(column.header), list(column.cells)) for column in table.columns]
    for row in range(table.row_count):
        if blocks:
            blocks.append(Text())
        record = key_value_table([])
        for header, cells in columns:
            record.add_row(cell(header), cells[row])
        blocks.append(record)
    return Group(*blocks)


def key_value_table(rows: Iterable[tuple[str, str]]) -> Table:
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for key, value in rows:
        table.add_row(cell(key), cell(value))
    return table


@cli.group()
def promotions() -> None:
    """Create, read, change and delete promotions."""


@promotions.command("create")
@click.option(
    "--file", "path", metavar="PATH", required=True, help="JSON file of a Promotion; - for stdin."
)
@pass_app
def create_promotion(app: App, path: str) -> None:
    """Creates a promotion."""
    promotion = read_message(path, promotion_pb2.Promotion())
    app.show(app.client.create_promotion(promotion), render_promotion)


@promotions.command("get")
@click.argument("external_id")
@pass_app
def get_promotion(app: App, external_id: str) -> None:
    """Shows one promotion."""
    app.show(app.client.get_promotion(external_id), render_promotion)


@promotions.command("list")
@click.option(
    "--state",
    type=click.Choice(["active", "inactive"], case_sensitive=False),
    help="Only promotions in this state.",
)
@click.option("--page-size", type=PAGE_SIZE, default=0,
              help="0: the server's default; over its maximum, its maximum.")
@click.option("--page-token", default="", help="The next page token of a previous list.")
@click.option("--all", "every_page", is_flag=True, help="Fetch every page.")
@pass_app
def list_promotions(
    app: App, state: str | None, page_size: int, page_token: str, every_page: bool
) -> None:
    """Lists promotions, oldest first."""
    if every_page and page_token:
        raise click.UsageError("--all starts from the first page; drop --page-token")
    if every_page:
        found = list(app.client.iter_promotions(state=state, page_size=page_size))
        app.show_page("promotions", found, "", promotions_table(found), every_page=True)
        return
    page = app.client.list_promotions(state=state, page_size=page_size, page_token=page_token)
    app.show_page(
        "promotions",
        page.promotions,
        page.next_page_token,
        promotions_table(page.promotions),
        every_page=False,
    )


@promotions.command("update")
@click.argument("external_id")
@click.option(
    "--file", "path", metavar="PATH", required=True, help="JSON file of a Promotion; - for stdin."
)
@click.option(
    "--mask",
    metavar="FIELDS",
    default="",
    help="Comma-separated snake_case fields to change; none: replace all.",
)
@pass_app
def update_promotion(app: App, external_id: str, path: str, mask: str) -> None:
    """Changes a promotion; the argument names it, whatever the file's externalId says."""
    promotion = read_message(path, promotion_pb2.Promotion())
    promotion.external_id = external_id
    paths = [field.strip() for field in mask.split(",") if field.strip()]
    app.show(app.client.update_promotion(promotion, paths), render_promotion)


@promotions.command("delete")
@click.argument("external_id")
@pass_app
def delete_promotion(app: App, external_id: str) -> None:
    """Deletes a promotion; its codes are retired, its redemptions kept."""
    app.client.delete_promotion(external_id)
    if app.as_json:
        app.show_json({})
    else:
        click.echo(f"deleted {external_id}")


def promotions_table(found: Iterable[promotion_pb2.Promotion]) -> Table:
    table = Table()
    # Ids must stay whole to be copied into the next command; times fit when kept short.
    table.add_column("external_id", overflow="fold")
    table.add_column("state")
    table.add_column("name")
    table.add_column("start (UTC)", no_wrap=True)
    table.add_column("end (UTC)", no_wrap=True)
    table.add_column("redemptions", no_wrap=True)
    for promotion in found:
        table.add_row(
            cell(promotion.external_id),
            cell(promotion_pb2.Promotion.State.Name(promotion.state)),
            cell(_first_name(promotion)),
            cell(short_time(promotion, "start_time")),
            cell(short_time(promotion, "end_time")),
            cell(f"{promotion.redemption_count}/{_limit(promotion, 'redeem_total_limit', '∞')}"),
        )
    return table


def _codes_left(promotion: promotion_pb2.Promotion) -> str:
    """The pool's available codes, marked when under the low-stock threshold."""
    left = promotion.available_code_count
    if promotion.HasField("low_stock_threshold") and left < promotion.low_stock_threshold:
        return f"{left} (low: < {promotion.low_stock_threshold})"
    return str(left)


def render_promotion(promotion: promotion_pb2.Promotion) -> Table:
    return key_value_table(_promotion_rows(promotion))


def _promotion_rows(promotion: promotion_pb2.Promotion) -> Iterable[tuple[str, str]]:
    yield "external_id", promotion.external_id
    for locale in sorted(promotion.name):
        yield f"name[{locale}]", promotion.name[locale]
    yield "state", promotion_pb2.Promotion.State.Name(promotion.state)
    yield "start_time", timestamp(promotion, "start_time", "no bound")
    yield "end_time", timestamp(promotion, "end_time", "no bound")
    for limit in ("redeem_total_limit", "redeem_user_limit", "redeem_code_limit"):
        yield limit, _limit(promotion, limit, "unlimited")
    yield "redemption_count", str(promotion.redemption_count)
    yield "available_code_count", _codes_left(promotion)
    yield "low_stock_threshold", (str(promotion.low_stock_threshold)
                                  if promotion.HasField("low_stock_threshold") else "none")
    if promotion.HasField("discount"):
        yield "discount", _discount(promotion.discount)
    for item in promotion.discounted_items:
        yield "discounted_item", f"{item.sku}: {_discount(item.discount)}"
    for bonus in promotion.bonus:
        yield "bonus", f"{bonus.sku} x {bonus.quantity}"
    for condition in promotion.attribute_conditions:
        yield "attribute_condition", _attribute_condition(condition)
    for price in promotion.price_conditions:
        yield "price_condition", f"cart total {_operator(price.operator)} {price.value}"
    for price in promotion.item_price_conditions:
        yield "item_price_condition", f"unit price {_operator(price.operator)} {price.value}"
    if promotion.excluded_promotions:
        yield "excluded_promotions", ", ".join(promotion.excluded_promotions)
    yield "create_time", timestamp(promotion, "create_time")
    yield "update_time", timestamp(promotion, "update_time")


def _first_name(promotion: promotion_pb2.Promotion) -> str:
    # Map order is not kept on the wire; the smallest locale is at least stable.
    return promotion.name[min(promotion.name)] if promotion.name else ""


def _limit(promotion: promotion_pb2.Promotion, field: str, unset: str) -> str:
    return str(getattr(promotion, field)) if promotion.HasField(field) else unset


def _discount(discount: promotion_pb2.Discount) -> str:
    if discount.percent:
        return f"{discount.percent}%"
    return f"{discount.amount} {discount.currency}"


def _operator(operator: int) -> str:
    return promotion_pb2.Operator.Name(operator)


def _attribute_condition(condition: promotion_pb2.AttributeCondition) -> str:
    kind = promotion_pb2.AttributeCondition.Type.Name(condition.type)
    text = f"{condition.attribute} {_operator(condition.operator)} {condition.value} ({kind})"
    return f"{text}, may be missing" if condition.can_be_missing else text


CODE_FILTERS = [
    name.lower()
    for name, number in code_pb2.CodeFilter.items()
    if number != code_pb2.CODE_FILTER_UNSPECIFIED
]


pool_option = click.option(
    "--promotion", default="", help="The promotion's pool; default: the global pool."
)
filter_option = click.option(
    "--filter",
    "code_filter",
    type=click.Choice(CODE_FILTERS, case_sensitive=False),
    help="Only these codes; default: all.",
)


def profile_options(whose: str, *, required: bool = False) -> Callable[[_Command], _Command]:
    """--profile-id, --email, --phone and --custom: the four ways to name a profile, given to
    the command as one `profile` argument, a ProfileRef mapping (None when none is given)."""

    def decorate(command: _Command) -> _Command:
        @functools.wraps(command)
        def with_profile(
            *args: Any,
            profile_id: str | None,
            email: str | None,
            phone: str | None,
            custom: tuple[str, str] | None,
            **kwargs: Any,
        ) -> None:
            profile = _profile_ref(profile_id=profile_id, email=email, phone=phone, custom=custom)
            if required and profile is None:
                raise click.UsageError(
                    "name the profile: give one of --profile-id, --email, --phone, --custom"
                )
            command(*args, profile=profile, **kwargs)

        options = (
            click.option("--profile-id", help=f"{whose} with this id."),
            click.option("--email", help=f"{whose} with this e-mail address."),
            click.option("--phone", help=f"{whose} with this phone number."),
            click.option(
                "--custom", type=Assignment("FIELD=VALUE"), help=f"{whose} with this custom field."
            ),
        )
        decorated: _Command = with_profile
        for option in reversed(options):
            decorated = option(decorated)
        return decorated

    return decorate


@cli.group()
def codes() -> None:
    """Fill code pools; hand out and redeem codes."""


@codes.command("import")
@click.argument("path", metavar="FILE")
@pool_option
@click.option("--append", is_flag=True, help="Add to the pool instead of replacing its set.")
@click.option("--skip-invalid", is_flag=True, help="Import the good lines, report the bad ones.")
@click.option("--header", is_flag=True, help="The first line is a header.")
@click.option(
    "--default-expire-time", type=Rfc3339(), help="Expiry of lines without a second column."
)
@pass_app
def import_codes(
    app: App,
    path: str,
    promotion: str,
    append: bool,
    skip_invalid: bool,
    header: bool,
    default_expire_time: datetime | None,
) -> None:
    """Uploads a CSV of codes into a pool; FILE - reads stdin.

    A line holds a code, then optionally its expiry in RFC 3339. Without --append the
    file becomes the pool: its codes never handed out that the file lacks are retired.
    Without --skip-invalid one bad line refuses the whole file.
    """
    name = "<stdin>" if path == "-" else path
    bar = _transfer_bar(app, shown=not app.as_json, counting="lines")
    with _open_input(path, name) as file, bar:
        task = bar.add_task("importing", total=_regular_file_size(file), records=0)
        # Once the file is sent, the server still checks and publishes it.
        reader = _CountingReader(file, at_end=lambda: bar.update(task, description="publishing"))

        def sent(n_bytes: int) -> None:
            bar.update(task, completed=n_bytes, records=reader.lines)

        try:
            response = app.client.import_csv(
                reader,
                promotion,
                mode="append" if append else "replace",
                has_header=header,
                skip_invalid=skip_invalid,
                default_expire_time=default_expire_time,
                progress=sent,
            )
        except OSError as err:
            raise CliFailure(f"{name}: cannot read: {err.strerror or err}") from err
    app.show(response, render_import)


@codes.command("export")
@pool_option
@filter_option
@click.option(
    "--output", default="-", show_default=True, metavar="FILE", help="Where to write; - for stdout."
)
@pass_app
def export_codes(app: App, promotion: str, code_filter: str | None, output: str) -> None:
    """Writes a pool as CSV with a header row.

    The file can be imported back with --header. A file named by --output appears only
    once the export is complete.
    """
    to_stdout = output == "-"
    name = "<stdout>" if to_stdout else output
    # A live bar on the terminal the CSV is printed to would be torn apart by it.
    shown = not app.as_json and not (to_stdout and sys.stdout.isatty())
    bar = _transfer_bar(app, shown=shown, counting="codes")
    with bar:
        task = bar.add_task("exporting", total=None, records=0)

        def received(n_bytes: int, n_codes: int) -> None:
            bar.update(task, completed=n_bytes, records=n_codes)

        try:
            if to_stdout:
                with click.open_file("-", "wb") as stdout:
                    count = app.client.export_csv(
                        stdout, promotion, filter=code_filter, progress=received
                    )
            else:
                count = app.client.export_csv(
                    output, promotion, filter=code_filter, progress=received
                )
        except OSError as err:
            raise CliFailure(f"{name}: cannot write: {err.strerror or err}") from err
    if app.as_json and not to_stdout:
        app.show_json({"exported": count, "output": output})
    else:
        click.echo(f"exported {_codes(count)} to {name}", err=True)


@codes.command("generate")
@pool_option
@click.option("--count", type=click.IntRange(min=1, max=INT64_MAX), required=True,
              help="How many codes.")
@click.option(
    "--pattern",
    required=True,
    help="# a digit, ? a letter, * a letter or digit, anything else itself: SALE-####-??",
)
@click.option("--expire-time", type=Rfc3339(), help="Expiry of the codes; default: never.")
@pass_app
def generate_codes(
    app: App, promotion: str, count: int, pattern: str, expire_time: datetime | None
) -> None:
    """Adds random codes of a pattern to a pool."""
    generated = app.client.generate_codes(promotion, count, pattern, expire_time=expire_time)
    if app.as_json:
        app.show_json({"generated": generated})
    else:
        click.echo(f"generated {_codes(generated)} in {_pool_name(promotion)}")


@codes.command("get")
@click.argument("code")
@pass_app
def get_code(app: App, code: str) -> None:
    """Shows one code, named in any case."""
    app.show(app.client.get_code(code), render_code)


@codes.command("list")
@pool_option
@profile_options("Only the codes of the profile")
@filter_option
@click.option("--page-size", type=PAGE_SIZE, default=0,
              help="0: the server's default; over its maximum, its maximum.")
@click.option("--page-token", default="", help="The next page token of a previous list.")
@click.option("--all", "every_page", is_flag=True, help="Fetch every page.")
@pass_app
def list_codes(
    app: App,
    promotion: str,
    profile: dict[str, Any] | None,
    code_filter: str | None,
    page_size: int,
    page_token: str,
    every_page: bool,
) -> None:
    """Lists the codes of a pool, or those a profile holds."""
    if every_page and page_token:
        raise click.UsageError("--all starts from the first page; drop --page-token")
    # A profile's codes may come from any pool; otherwise they all share the one asked for.
    pool = None if profile else promotion
    if every_page:
        found = list(
            app.client.iter_codes(
                promotion=promotion, profile=profile, filter=code_filter, page_size=page_size
            )
        )
        app.show_page("codes", found, "", codes_table(found, pool), every_page=True)
        return
    page = app.client.list_codes(
        promotion=promotion,
        profile=profile,
        filter=code_filter,
        page_size=page_size,
        page_token=page_token,
    )
    app.show_page(
        "codes",
        page.codes,
        page.next_page_token,
        codes_table(page.codes, pool),
        every_page=False,
    )


@codes.command("update")
@click.argument("code")
@click.option("--active/--inactive", default=None, help="Accept or refuse the code.")
@click.option("--expire-time", type=Rfc3339(), help="A new expiry.")
@click.option("--no-expire-time", is_flag=True, help="The code never expires.")
@pass_app
def update_code(
    app: App, code: str, active: bool | None, expire_time: datetime | None, no_expire_time: bool
) -> None:
    """Changes a code's active flag or expiry."""
    if expire_time is not None and no_expire_time:
        raise click.UsageError("give --expire-time or --no-expire-time, not both")
    if active is None and expire_time is None and not no_expire_time:
        raise click.UsageError(
            "nothing to change: give --active, --inactive, --expire-time or --no-expire-time"
        )
    updated = app.client.update_code(
        code, active=active, expire_time=expire_time, clear_expire_time=no_expire_time
    )
    app.show(updated, render_code)


@codes.command("attach")
@click.option("--promotion", required=True, help="The promotion whose code to hand out.")
@profile_options("Attach to the profile", required=True)
@click.option("--code", help="This code; default: the pool's oldest available code.")
@pass_app
def attach_code(app: App, promotion: str, profile: dict[str, Any], code: str | None) -> None:
    """Attaches a code to a profile.

    Without --code, hands out the pool's oldest available code, or one of the global pool
    when the promotion's is empty. A new --profile-id creates the profile; a new --code
    joins the promotion's pool.
    """
    app.show(app.client.attach_code(profile, promotion, code), render_attachment)


@codes.command("detach")
@click.argument("code")
@profile_options("Detach from the profile")
@pass_app
def detach_code(app: App, code: str, profile: dict[str, Any] | None) -> None:
    """Detaches a code from a profile.

    Without a profile, from the code's only holder.
    """
    app.client.detach_code(code, profile)
    if app.as_json:
        app.show_json({})
    else:
        click.echo(f"detached {code}")


@dataclass(frozen=True)
class Attempt:
    """What validate and activate send along with the code."""

    profile: dict[str, Any]
    cart: code_pb2.Cart | None
    attributes: dict[str, str]
    applied_promotions: tuple[str, ...]


class CartItemParam(click.ParamType):
    """A cart line written SKU:QUANTITY:UNIT_PRICE, such as shirt:2:19.99."""

    name = "SKU:QTY:PRICE"
    _PRICE = re.compile(r"\d+(\.\d+)?")

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, code_pb2.CartItem):
            return value
        # A SKU may hold colons; the quantity and the price cannot.
        sku, _, rest = value.rpartition(":")
        sku, _, quantity = sku.rpartition(":")
        if not sku or not quantity.isdigit() or not self._PRICE.fullmatch(rest):
            self.fail(
                f"expected SKU:QUANTITY:UNIT_PRICE such as shirt:2:19.99, not {value!r}", param, ctx
            )
        if not 1 <= int(quantity) <= INT64_MAX:
            self.fail(f"the quantity of {value!r} must be 1 to {INT64_MAX}", param, ctx)
        return code_pb2.CartItem(sku=sku, quantity=int(quantity), unit_price=rest)


def attempt_options(command: _Command) -> _Command:
    """The profile, the cart, the attributes and the promotions already applied, given to the
    command as one `attempt` argument."""

    @functools.wraps(command)
    def with_attempt(
        *args: Any,
        profile: dict[str, Any],
        cart_path: str | None,
        currency: str | None,
        items: tuple[code_pb2.CartItem, ...],
        attributes: tuple[tuple[str, str], ...],
        applied: tuple[str, ...],
        **kwargs: Any,
    ) -> None:
        attempt = Attempt(
            profile=profile,
            cart=_cart(cart_path, currency, items),
            attributes=assignments(attributes, "--attribute"),
            applied_promotions=applied,
        )
        command(*args, attempt=attempt, **kwargs)

    options = (
        profile_options("Redeemed by the profile", required=True),
        click.option(
            "--cart",
            "cart_path",
            metavar="FILE",
            help="JSON file of a Cart; - for stdin. Or give --currency and --item.",
        ),
        click.option("--currency", help="The cart's ISO 4217 currency: USD."),
        click.option(
            "--item",
            "items",
            type=CartItemParam(),
            multiple=True,
            help="A cart line, repeated for each: shirt:2:19.99 (SKU:QUANTITY:UNIT_PRICE).",
        ),
        click.option(
            "--attribute",
            "attributes",
            type=Assignment(),
            multiple=True,
            help="A user attribute for attribute conditions, over the profile's stored ones.",
        ),
        click.option(
            "--applied",
            multiple=True,
            metavar="PROMOTION",
            help="A promotion already applied to the cart, repeated for each.",
        ),
    )
    decorated: _Command = with_attempt
    for option in reversed(options):
        decorated = option(decorated)
    return decorated


def _cart(
    path: str | None, currency: str | None, items: Sequence[code_pb2.CartItem]
) -> code_pb2.Cart | None:
    if path is not None:
        if currency is not None or items:
            raise click.UsageError("give --cart, or --currency with --item, not both")
        return read_message(path, code_pb2.Cart())
    if items and currency is None:
        raise click.UsageError("--item needs --currency, the cart's currency (USD)")
    if currency is not None and not items:
        raise click.UsageError("--currency needs the cart's lines: give --item for each")
    return code_pb2.Cart(currency=currency, items=items) if items else None


@codes.command("validate")
@click.argument("code")
@attempt_options
@pass_app
def validate_code(app: App, code: str, attempt: Attempt) -> None:
    """Checks a code against a cart, consuming nothing.

    Runs every check of activate and shows the reward it would give; a code that activate
    would refuse is shown as not valid, with the reason.
    """
    answer = app.client.validate_code(
        code,
        attempt.profile,
        attempt.cart,
        attributes=attempt.attributes,
        applied_promotions=attempt.applied_promotions,
    )
    app.show(answer, render_validation)


@codes.command("activate")
@click.argument("code")
@attempt_options
@click.option(
    "--request-id",
    help="Idempotency key (an order id): the same one again returns the first redemption.",
)
@pass_app
def activate_code(app: App, code: str, attempt: Attempt, request_id: str | None) -> None:
    """Redeems a code against a cart.

    Shows the redemption and its reward. Without --request-id each run sends a new one,
    and so may redeem again.
    """
    redemption = app.client.activate_code(
        code,
        attempt.profile,
        attempt.cart,
        attributes=attempt.attributes,
        applied_promotions=attempt.applied_promotions,
        request_id=request_id,
    )
    app.show(redemption, render_redemption)


@codes.command("rollback")
@click.argument("redemption_id")
@click.option("--reason", default="", help="Why, kept with the redemption.")
@pass_app
def rollback_redemption(app: App, redemption_id: str, reason: str) -> None:
    """Rolls a redemption back.

    The use is given back to every limit the redemption counted against.
    """
    app.show(app.client.rollback_redemption(redemption_id, reason), render_redemption)


@contextmanager
def _open_input(path: str, name: str) -> Iterator[IO[bytes]]:
    """The file to import (stdin for `-`), kept open while the upload reads it."""
    try:
        file = _opened(path, name)
    except OSError as err:
        raise CliFailure(f"{name}: cannot read: {err.strerror}") from err
    with file:
        yield file


def _regular_file_size(file: IO[bytes]) -> int | None:
    """The size of a regular file (stdin redirected from one too); None for a pipe."""
    try:
        info = os.fstat(file.fileno())
    except (OSError, ValueError):
        return None
    return info.st_size if stat.S_ISREG(info.st_mode) else None


class _CountingReader:
    """Reads a file through, counting its line breaks (the lines sent so far, for free) and
    telling `at_end` when the file is read to its end."""

    def __init__(self, file: IO[bytes], at_end: Callable[[], None]) -> None:
        self._file = file
        self._at_end = at_end
        self.lines = 0

    def read(self, size: int = -1, /) -> bytes:
        data = self._file.read(size)
        if not data:
            self._at_end()
        self.lines += data.count(b"\n")
        return data


def _transfer_bar(app: App, *, shown: bool, counting: str) -> Progress:
    """A progress bar on stderr of the bytes moved and the records counted (task field
    `records`); drawn only when asked for and stderr is a terminal."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(bar_width=24),
        DownloadColumn(),
        TransferSpeedColumn(),
        TextColumn(f"{{task.fields[records]:,}} {counting}"),
        TimeElapsedColumn(),
        console=app.err_console,
        disable=not (shown and app.err_console.is_terminal),
    )


def _profile_ref(
    *,
    profile_id: str | None,
    email: str | None,
    phone: str | None,
    custom: tuple[str, str] | None,
) -> dict[str, Any] | None:
    given: dict[str, Any] = {}
    if profile_id is not None:
        given["profile_id"] = profile_id
    if email is not None:
        given["email"] = email
    if phone is not None:
        given["phone"] = phone
    if custom is not None:
        field, value = custom
        given["custom"] = {"field": field, "value": value}
    if len(given) > 1:
        raise click.UsageError("give at most one of --profile-id, --email, --phone, --custom")
    return given or None


def _codes(count: int) -> str:
    return f"{count:,} code" if count == 1 else f"{count:,} codes"


def _pool_name(promotion: str) -> str:
    return promotion or "the global pool"


def _yes_no(value: bool) -> str:
    return "yes" if value else "no"


def codes_table(found: Sequence[code_pb2.Code], pool: str | None) -> Table:
    """The codes as a table; those of one `pool` name it in the title instead of every row."""
    title = None if pool is None else f"codes of {_pool_name(pool)}"
    table = Table(title=title, title_justify="left")
    # Codes stay whole on one line, to be copied into the next command.
    longest = max((len(code.code) for code in found), default=4)
    table.add_column("code", no_wrap=True, min_width=longest)
    if pool is None:
        table.add_column("promotion", overflow="fold")
    table.add_column("active")
    table.add_column("expires (UTC)", no_wrap=True)
    table.add_column("retired")
    table.add_column("holder", overflow="fold")
    table.add_column("attached", justify="right")
    table.add_column("redeemed", justify="right")
    table.add_column("created (UTC)", no_wrap=True)
    for code in found:
        promotion = [] if pool is not None else [cell(code.promotion or "(global pool)")]
        table.add_row(
            cell(code.code),
            *promotion,
            cell(_yes_no(code.active)),
            cell(short_time(code, "expire_time")),
            cell(_yes_no(code.retired)),
            cell(code.profile_id or "-"),
            cell(code.attachment_count),
            cell(code.redemption_count),
            cell(short_time(code, "create_time")),
        )
    return table


def render_code(code: code_pb2.Code) -> Table:
    return key_value_table(_code_rows(code))


def _code_rows(code: code_pb2.Code) -> Iterable[tuple[str, str]]:
    yield "code", code.code
    yield "promotion", code.promotion or "(global pool)"
    if code.issued_for:
        yield "issued_for", code.issued_for
    yield "active", _yes_no(code.active)
    yield "expire_time", timestamp(code, "expire_time", "never")
    yield "retired", _yes_no(code.retired)
    yield "profile_id", code.profile_id or "-"
    yield "attachment_count", str(code.attachment_count)
    yield "redemption_count", str(code.redemption_count)
    yield "create_time", timestamp(code, "create_time")


def render_import(response: code_pb2.ImportCodesResponse) -> RenderableType:
    counts = key_value_table(
        (field, f"{getattr(response, field):,}")
        for field in ("imported", "duplicates", "rejected", "retired")
    )
    if not response.errors:
        return counts
    errors = Table(title="rejected lines", title_justify="left")
    errors.add_column("line", justify="right", no_wrap=True)
    errors.add_column("text", overflow="fold")
    errors.add_column("reason", overflow="fold")
    for error in response.errors:
        errors.add_row(cell(error.line), cell(error.text), cell(error.reason))
    if response.rejected > len(response.errors):
        errors.caption = f"the first {len(response.errors)} of {response.rejected:,}"
    return Group(counts, Text(), errors)


def render_attachment(attachment: code_pb2.Attachment) -> Table:
    return key_value_table(
        [
            ("code", attachment.code),
            ("promotion", attachment.promotion),
            ("profile_id", attachment.profile_id),
            ("attach_time", timestamp(attachment, "attach_time")),
        ]
    )


def render_validation(answer: code_pb2.ValidateCodeResponse) -> RenderableType:
    head = [("valid", _yes_no(answer.valid))]
    if not answer.valid:
        return key_value_table([*head, ("reason", answer.reason or "-")])
    return _with_reward(head, answer.reward)


def render_redemption(redemption: code_pb2.Redemption) -> RenderableType:
    rows = [
        ("id", redemption.id),
        ("code", redemption.code),
        ("promotion", redemption.promotion or "-"),
        ("profile_id", redemption.profile_id),
        ("state", code_pb2.Redemption.State.Name(redemption.state)),
        ("request_id", redemption.request_id or "-"),
        ("create_time", timestamp(redemption, "create_time")),
    ]
    if redemption.HasField("rollback_time"):
        rows.append(("rollback_time", timestamp(redemption, "rollback_time")))
        rows.append(("rollback_reason", redemption.rollback_reason or "-"))
    return _with_reward(rows, redemption.reward)


def _with_reward(rows: Sequence[tuple[str, str]], reward: code_pb2.Reward) -> RenderableType:
    """Key/value rows, then the reward's totals and bonus, then its items as a table."""
    totals = [
        ("cart_total", reward.cart_total),
        ("discount_total", reward.discount_total),
        ("final_total", reward.final_total),
        *(("bonus", f"{bonus.sku} x {bonus.quantity}") for bonus in reward.bonus),
    ]
    summary = key_value_table([*rows, *totals])
    if not reward.items:
        return summary
    return Group(summary, Text(), reward_items_table(reward.items))


def reward_items_table(items: Iterable[code_pb2.RewardItem]) -> Table:
    table = Table()
    table.add_column("sku", overflow="fold")
    for name in ("quantity", "unit_price", "discount", "final_price"):
        table.add_column(name, justify="right", no_wrap=True)
    for item in items:
        table.add_row(
            cell(item.sku),
            cell(item.quantity),
            cell(item.unit_price),
            cell(item.discount),
            cell(item.final_price),
        )
    return table


@cli.group()
def redemptions() -> None:
    """List redemptions; `codes rollback` undoes one."""


@redemptions.command("list")
@click.option("--promotion", default="", help="Only the redemptions of this promotion.")
@click.option("--code", default="", help="Only the redemptions of this code.")
@profile_options("Only the redemptions of the profile")
@click.option("--page-size", type=PAGE_SIZE, default=0,
              help="0: the server's default; over its maximum, its maximum.")
@click.option("--page-token", default="", help="The next page token of a previous list.")
@click.option("--all", "every_page", is_flag=True, help="Fetch every page.")
@pass_app
def list_redemptions(
    app: App,
    promotion: str,
    code: str,
    profile: dict[str, Any] | None,
    page_size: int,
    page_token: str,
    every_page: bool,
) -> None:
    """Lists redemptions: all, or of a promotion, code or profile."""
    if every_page and page_token:
        raise click.UsageError("--all starts from the first page; drop --page-token")
    if every_page:
        found = list(
            app.client.iter_redemptions(
                promotion=promotion, code=code, profile=profile, page_size=page_size
            )
        )
        app.show_page("redemptions", found, "", redemptions_table(found), every_page=True)
        return
    page = app.client.list_redemptions(
        promotion=promotion,
        code=code,
        profile=profile,
        page_size=page_size,
        page_token=page_token,
    )
    app.show_page(
        "redemptions",
        page.redemptions,
        page.next_page_token,
        redemptions_table(page.redemptions),
        every_page=False,
    )


def redemptions_table(found: Sequence[code_pb2.Redemption]) -> Table:
    table = Table()
    # Ids and codes stay whole on one line, to be copied into the next command.
    table.add_column("id", no_wrap=True)
    longest = max((len(redemption.code) for redemption in found), default=4)
    table.add_column("code", no_wrap=True, min_width=longest)
    table.add_column("promotion", overflow="fold", min_width=9)
    table.add_column("profile_id", overflow="fold", min_width=10)
    table.add_column("state", no_wrap=True)
    table.add_column("discount", justify="right", no_wrap=True)
    table.add_column("created (UTC)", no_wrap=True)
    for redemption in found:
        table.add_row(
            cell(redemption.id),
            cell(redemption.code),
            cell(redemption.promotion or "-"),
            cell(redemption.profile_id),
            cell(code_pb2.Redemption.State.Name(redemption.state)),
            cell(redemption.reward.discount_total),
            cell(short_time(redemption, "create_time")),
        )
    return table


@cli.group()
def profiles() -> None:
    """Store and read customers' profiles."""


@profiles.command("upsert")
@click.argument("profile_id")
@click.option("--email", default="", help="The e-mail address, used for matching.")
@click.option("--phone", default="", help="The phone number, used for matching.")
@click.option(
    "--field",
    "fields",
    type=Assignment(),
    multiple=True,
    help="A custom field, used for matching (crm_id=C-7); repeated for each.",
)
@click.option(
    "--attribute",
    "attributes",
    type=Assignment(),
    multiple=True,
    help="An attribute read by attribute conditions (tier=gold); repeated for each.",
)
@pass_app
def upsert_profile(
    app: App,
    profile_id: str,
    email: str,
    phone: str,
    fields: tuple[tuple[str, str], ...],
    attributes: tuple[tuple[str, str], ...],
) -> None:
    """Creates or replaces a profile.

    Creates the profile PROFILE_ID, or replaces everything it holds: what is not given is
    cleared, so repeat every option the profile should keep.
    """
    profile = profile_pb2.Profile(
        profile_id=profile_id,
        email=email,
        phone=phone,
        custom_fields=assignments(fields, "--field"),
        attributes=assignments(attributes, "--attribute"),
    )
    app.show(app.client.upsert_profile(profile), render_profile)


@profiles.command("get")
@profile_options("The profile", required=True)
@pass_app
def get_profile(app: App, profile: dict[str, Any]) -> None:
    """Shows one profile.

    E-mail, phone and custom field must match exactly one profile.
    """
    app.show(app.client.get_profile(profile), render_profile)


def render_profile(profile: profile_pb2.Profile) -> Table:
    return key_value_table(_profile_rows(profile))


def _profile_rows(profile: profile_pb2.Profile) -> Iterable[tuple[str, str]]:
    yield "profile_id", profile.profile_id
    yield "email", profile.email or "-"
    yield "phone", profile.phone or "-"
    for name in sorted(profile.custom_fields):
        yield f"custom_fields[{name}]", profile.custom_fields[name]
    for name in sorted(profile.attributes):
        yield f"attributes[{name}]", profile.attributes[name]
    yield "create_time", timestamp(profile, "create_time")
    yield "update_time", timestamp(profile, "update_time")
