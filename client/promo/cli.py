"""The `promo` command line: every RPC of the promo service, as tables or as JSON."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC
from typing import IO, Any, TypeVar

import click
from google.protobuf import json_format
from google.protobuf.message import Message
from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text

from promo.client import DEFAULT_TARGET, PromoClient
from promo.errors import PromoError
from promo.v1 import promotion_pb2

_M = TypeVar("_M", bound=Message)


class CliFailure(click.ClickException):
    """A failure the user can act on: one `error:` line on stderr, exit status 1."""

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {' '.join(self.format_message().split())}", err=True)


class App:
    """What every command needs: the global options and, on first use, the client."""

    def __init__(self, ctx: click.Context, target: str, api_key: str | None, as_json: bool) -> None:
        self._ctx = ctx
        self._target = target
        self._api_key = api_key
        self.as_json = as_json
        self._client: PromoClient | None = None
        self.console = Console()

    @property
    def client(self) -> PromoClient:
        if self._client is None:
            client = PromoClient(self._target, self._api_key)
            self._client = self._ctx.with_resource(client)
        return self._client

    def show(self, message: _M, render: Callable[[_M], RenderableType]) -> None:
        """Prints a message as its JSON mapping (--json) or as `render` draws it."""
        if self.as_json:
            click.echo(json_format.MessageToJson(message, indent=2))
        else:
            self.console.print(render(message))

    def show_json(self, value: Any) -> None:
        """Prints plain JSON data, for output that is not a single message."""
        click.echo(json.dumps(value, indent=2, ensure_ascii=False))


pass_app = click.make_pass_decorator(App)


class _PromoGroup(click.Group):
    """Turns a refused call in any subcommand into the one-line `error:` failure."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except PromoError as exc:
            raise CliFailure(str(exc)) from exc


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
    "--json", "as_json", is_flag=True, help="Print the protobuf JSON mapping, as --file reads it."
)
@click.pass_context
def cli(ctx: click.Context, target: str, api_key: str | None, as_json: bool) -> None:
    """Client of the promo-code service."""
    ctx.obj = App(ctx, target, api_key, as_json)


def main() -> None:
    cli(prog_name="promo")


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
        with click.open_file(path, "rb") as file:
            return file.read()
    except OSError as err:
        raise CliFailure(f"{name}: cannot read: {err.strerror}") from err


def _parse_json_object(name: str, data: bytes) -> dict[str, Any]:
    try:
        document = json.loads(data)
    except ValueError as err:
        raise CliFailure(f"{name}: not valid JSON: {err}") from err
    if not isinstance(document, dict):
        raise CliFailure(f"{name}: expected a JSON object")
    return document


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
@click.option("--page-size", type=click.IntRange(min=0), default=0, help="0: the server's default.")
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
        _show_promotions(app, found, next_page_token="", every_page=True)
        return
    page = app.client.list_promotions(state=state, page_size=page_size, page_token=page_token)
    _show_promotions(app, page.promotions, page.next_page_token, every_page=False)


def _show_promotions(
    app: App,
    found: Sequence[promotion_pb2.Promotion],
    next_page_token: str,
    *,
    every_page: bool,
) -> None:
    if app.as_json:
        documents = [json_format.MessageToDict(promotion) for promotion in found]
        app.show_json(
            documents if every_page else {"promotions": documents, "nextPageToken": next_page_token}
        )
        return
    app.console.print(promotions_table(found))
    if next_page_token:
        click.echo(f"more: --page-token {next_page_token}", err=True)


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
