"""A friendly, typed wrapper over the promo.v1 gRPC services."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import secrets
import ssl
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeAlias, TypeVar, cast

import grpc
from google.protobuf import field_mask_pb2, json_format
from google.protobuf.message import Message

from promo.errors import from_rpc_error
from promo.v1 import (
    code_pb2,
    code_pb2_grpc,
    profile_pb2,
    profile_pb2_grpc,
    promotion_pb2,
    promotion_pb2_grpc,
)

if TYPE_CHECKING:
    from _typeshed import SupportsRead, SupportsWrite

DEFAULT_TARGET = "127.0.0.1:50051"
# How long a failed upload waits for its cancelled call to end.
CANCEL_WAIT_SECONDS = 30.0

# Safe to repeat after UNAVAILABLE: reads, and writes whose repeat changes nothing more
# (ActivateCode through its request_id). Creates, imports and hand-outs are not.
IDEMPOTENT_METHODS: tuple[tuple[str, str], ...] = (
    ("promo.v1.PromotionService", "GetPromotion"),
    ("promo.v1.PromotionService", "ListPromotions"),
    ("promo.v1.PromotionService", "UpdatePromotion"),
    ("promo.v1.PromotionService", "DeletePromotion"),
    ("promo.v1.CodeService", "ExportCodes"),
    ("promo.v1.CodeService", "GetCode"),
    ("promo.v1.CodeService", "ListCodes"),
    ("promo.v1.CodeService", "UpdateCode"),
    ("promo.v1.CodeService", "ValidateCode"),
    ("promo.v1.CodeService", "ActivateCode"),
    ("promo.v1.CodeService", "ListRedemptions"),
    ("promo.v1.ProfileService", "UpsertProfile"),
    ("promo.v1.ProfileService", "GetProfile"),
)

SERVICE_CONFIG = json.dumps(
    {
        "methodConfig": [
            {
                "name": [
                    {"service": service, "method": method} for service, method in IDEMPOTENT_METHODS
                ],
                "retryPolicy": {
                    "maxAttempts": 5,
                    "initialBackoff": "0.1s",
                    "maxBackoff": "2s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ]
    }
)

PromotionLike: TypeAlias = "promotion_pb2.Promotion | Mapping[str, Any]"
# A Promotion.State value or its name, in any case ("ACTIVE", "inactive").
StateLike: TypeAlias = "promotion_pb2.Promotion.State | str"
# A CodeFilter value or its name, in any case ("available", "RETIRED").
CodeFilterLike: TypeAlias = "code_pb2.CodeFilter | str"
# An import mode: "replace" or "append", in any case, or the Mode value.
ImportModeLike: TypeAlias = "code_pb2.ImportCodesRequest.Spec.Mode | str"
# A ProfileRef, its fields ({"email": ...}, {"custom": {"field": ..., "value": ...}}), or a
# plain string: the profile_id.
ProfileLike: TypeAlias = "profile_pb2.ProfileRef | Mapping[str, Any] | str"
# A Profile or its JSON mapping: {"profileId": ..., "email": ..., "attributes": {...}}.
ProfileDataLike: TypeAlias = "profile_pb2.Profile | Mapping[str, Any]"
# A Cart or its JSON mapping:
# {"currency": "USD", "items": [{"sku": ..., "quantity": 2, "unit_price": "10.00"}]}.
CartLike: TypeAlias = "code_pb2.Cart | Mapping[str, Any]"
# Where an import reads: a path, or a file object opened in binary mode.
CsvSource: TypeAlias = "str | os.PathLike[str] | SupportsRead[bytes]"
# Where an export writes: a path, or a file object opened in binary mode.
CsvDestination: TypeAlias = "str | os.PathLike[str] | SupportsWrite[bytes]"
# A PEM file for TLS: a CA's certificates, or the client's certificate chain or key.
PemPath: TypeAlias = "str | os.PathLike[str]"

_R = TypeVar("_R")


class PromoClient:
    """One channel to the promo service; methods raise `promo.errors.PromoError` subclasses.

    The raw stubs are `promotions`, `codes` and `profiles`; pass them `metadata=client.metadata`.

    TLS: `tls=True` checks the server's certificate against the system's roots, or against
    the PEM file `ca` (env PROMO_TLS_CA); a server that requires client certificates gets
    `client_cert` and `client_key` (env PROMO_CLIENT_CERT, PROMO_CLIENT_KEY). Any of these
    files turns TLS on, and so does PROMO_TLS=1. A bad file raises ValueError here.


    `channels=k` opens k channels, each on a connection of its own, and takes them in turn
    call by call: a server run as `promo-server serve --workers N` gives each connection to
    one of its processes, so one channel would keep every call on one process.
    """

    def __init__(
        self,
        target: str | None = None,
        api_key: str | None = None,
        *,
        tls: bool = False,
        ca: PemPath | None = None,
        client_cert: PemPath | None = None,
        client_key: PemPath | None = None,
        timeout: float = 30.0,
        options: Sequence[tuple[str, Any]] = (),
        channels: int = 1,
    ) -> None:
        if channels < 1:
            raise ValueError(f"channels must be at least 1, not {channels}")
        self.target = target or os.environ.get("PROMO_TARGET") or DEFAULT_TARGET
        key = _api_key(api_key if api_key is not None else os.environ.get("PROMO_API_KEY"))
        # Without a key the server answers UNAUTHENTICATED, which is the clearest message.
        self.metadata: tuple[tuple[str, str], ...] = (
            (("authorization", f"Bearer {key}"),) if key else ()
        )
        self.timeout = timeout
        ca = ca or os.environ.get("PROMO_TLS_CA") or None
        client_cert = client_cert or os.environ.get("PROMO_CLIENT_CERT") or None
        client_key = client_key or os.environ.get("PROMO_CLIENT_KEY") or None
        self.tls = bool(tls or ca or client_cert or client_key or _env_flag("PROMO_TLS"))
        credentials = _channel_credentials(ca, client_cert, client_key) if self.tls else None
        # gRPC keeps the first of repeated options: the caller's come first to win.
        channel_options = [
            *options, ("grpc.enable_retries", 1), ("grpc.service_config", SERVICE_CONFIG),
        ]
        if channels > 1:
            # Else gRPC shares one connection among channels to the same target.
            channel_options.append(("grpc.use_local_subchannel_pool", 1))
        self._channels = [
            _open_channel(self.target, channel_options, credentials) for _ in range(channels)
        ]
        self.promotions: promotion_pb2_grpc.PromotionServiceStub = _in_turn(
            [promotion_pb2_grpc.PromotionServiceStub(c) for c in self._channels]
        )
        self.codes: code_pb2_grpc.CodeServiceStub = _in_turn(
            [code_pb2_grpc.CodeServiceStub(c) for c in self._channels]
        )
        self.profiles: profile_pb2_grpc.ProfileServiceStub = _in_turn(
            [profile_pb2_grpc.ProfileServiceStub(c) for c in self._channels]
        )

    def __repr__(self) -> str:
        # The key stays out: reprs end up in logs and tracebacks.
        return f"PromoClient(target={self.target!r}, tls={self.tls})"

    def close(self) -> None:
        for channel in self._channels:
            channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def create_promotion(self, promotion: PromotionLike) -> promotion_pb2.Promotion:
        request = promotion_pb2.CreatePromotionRequest(promotion=_as_promotion(promotion))
        return self._call(self.promotions.CreatePromotion, request)

    def get_promotion(self, external_id: str) -> promotion_pb2.Promotion:
        request = promotion_pb2.GetPromotionRequest(external_id=external_id)
        return self._call(self.promotions.GetPromotion, request)

    def list_promotions(
        self, *, state: StateLike | None = None, page_size: int = 0, page_token: str = ""
    ) -> promotion_pb2.ListPromotionsResponse:
        """One page of promotions, oldest first."""
        request = promotion_pb2.ListPromotionsRequest(
            state=_enum(state),
            page_size=page_size,
            page_token=page_token,
        )
        return self._call(self.promotions.ListPromotions, request)

    def iter_promotions(
        self, *, state: StateLike | None = None, page_size: int = 0
    ) -> Iterator[promotion_pb2.Promotion]:
        """Every promotion, fetching the pages as the iteration reaches them."""
        return _every_page(
            lambda token: self.list_promotions(state=state, page_size=page_size, page_token=token),
            "promotions",
        )

    def update_promotion(
        self, promotion: PromotionLike, update_mask: Sequence[str] = ()
    ) -> promotion_pb2.Promotion:
        """Changes the promotion named by its external_id; an empty mask replaces it all."""
        if isinstance(update_mask, str):  # a FieldMask's text: "state,redeem_total_limit"
            update_mask = [path for path in update_mask.split(",") if path]
        request = promotion_pb2.UpdatePromotionRequest(
            promotion=_as_promotion(promotion),
            update_mask=field_mask_pb2.FieldMask(paths=update_mask),
        )
        return self._call(self.promotions.UpdatePromotion, request)

    def delete_promotion(self, external_id: str) -> None:
        request = promotion_pb2.DeletePromotionRequest(external_id=external_id)
        self._call(self.promotions.DeletePromotion, request)

    def import_csv(
        self,
        source: CsvSource,
        promotion: str = "",
        *,
        mode: ImportModeLike = "replace",
        has_header: bool = False,
        skip_invalid: bool = False,
        default_expire_time: datetime | None = None,
        chunk_size: int = 64 * 1024,
        progress: Callable[[int], None] | None = None,
        timeout: float | None = None,
    ) -> code_pb2.ImportCodesResponse:
        """Uploads a CSV of codes into a pool ("" is the global pool), streaming it from disk.

        `progress(n_bytes)` is called, on a gRPC thread, with the bytes sent so far after each
        chunk; if it raises, the import is cancelled and the error raised here. There is no
        deadline unless `timeout` is given: an import of millions of codes takes minutes. A
        failed or interrupted import changes nothing, and it is never retried.
        """
        spec = code_pb2.ImportCodesRequest.Spec(
            promotion=promotion,
            mode=_enum(mode),
            has_header=has_header,
            skip_invalid=skip_invalid,
            default_expire_time=default_expire_time,
        )
        with _open_source(source) as file:
            upload = _Upload(spec, file, chunk_size, progress)
            call = upload.start(self.codes.ImportCodes, timeout, self.metadata)
            try:
                return call.result()
            except grpc.FutureCancelledError:
                if upload.failure is None:
                    raise
                raise upload.failure from None
            except grpc.RpcError as err:
                raise from_rpc_error(err) from err
            finally:
                # An interrupted wait (Ctrl-C) must not leave the upload running.
                call.cancel()
                upload.stop()

    def export_csv(
        self,
        destination: CsvDestination,
        promotion: str = "",
        *,
        filter: CodeFilterLike | None = None,
        progress: Callable[[int, int], None] | None = None,
        timeout: float | None = None,
    ) -> int:
        """Writes a pool ("" is the global pool) as CSV with a header; returns the codes written.

        A path is written through a temporary file beside it, renamed at the end: a failed
        export never leaves a partial file under that name. `progress(n_bytes, n_codes)` is
        called after each chunk. There is no deadline unless `timeout` is given.
        """
        request = code_pb2.ExportCodesRequest(promotion=promotion, filter=_enum(filter))
        if not isinstance(destination, str | os.PathLike):
            return self._export(request, destination, progress, timeout)
        final = Path(destination)
        partial = final.with_name(f".{final.name}.{secrets.token_hex(4)}.part")
        try:
            with partial.open("xb") as file:
                count = self._export(request, file, progress, timeout)
            partial.replace(final)
        finally:
            partial.unlink(missing_ok=True)
        return count

    def _export(
        self,
        request: code_pb2.ExportCodesRequest,
        file: SupportsWrite[bytes],
        progress: Callable[[int, int], None] | None,
        timeout: float | None,
    ) -> int:
        lines = _LineCounter()
        responses = self.codes.ExportCodes(request, timeout=timeout, metadata=self.metadata)
        try:
            for response in responses:
                file.write(response.chunk)
                lines.feed(response.chunk)
                if progress is not None:
                    progress(lines.bytes, lines.data_lines)
        except grpc.RpcError as err:
            raise from_rpc_error(err) from err
        finally:
            # Stops the server's stream when the caller's file or callback fails.
            responses.cancel()
        return lines.data_lines

    def generate_codes(
        self,
        promotion: str,
        count: int,
        pattern: str,
        *,
        expire_time: datetime | None = None,
        timeout: float | None = None,
    ) -> int:
        """Adds `count` random codes of `pattern` to a pool; returns how many were added.

        In the pattern `#` is a digit, `?` a letter, `*` a letter or digit, anything else itself.
        There is no deadline unless `timeout` is given: millions of codes take a while. Never
        retried (a repeat adds as many again).
        """
        request = code_pb2.GenerateCodesRequest(
            promotion=promotion, count=count, pattern=pattern, expire_time=expire_time
        )
        return self._call_within(timeout, self.codes.GenerateCodes, request).generated

    def get_code(self, code: str) -> code_pb2.Code:
        """One code, named in any case."""
        return self._call(self.codes.GetCode, code_pb2.GetCodeRequest(code=code))

    def list_codes(
        self,
        *,
        promotion: str = "",
        profile: ProfileLike | None = None,
        filter: CodeFilterLike | None = None,
        page_size: int = 0,
        page_token: str = "",
    ) -> code_pb2.ListCodesResponse:
        """One page of a pool's codes ("" is the global pool), or of the codes a profile holds."""
        request = code_pb2.ListCodesRequest(
            promotion=promotion,
            profile=_as_profile_ref(profile),
            filter=_enum(filter),
            page_size=page_size,
            page_token=page_token,
        )
        return self._call(self.codes.ListCodes, request)

    def iter_codes(
        self,
        *,
        promotion: str = "",
        profile: ProfileLike | None = None,
        filter: CodeFilterLike | None = None,
        page_size: int = 0,
    ) -> Iterator[code_pb2.Code]:
        """Every code list_codes finds, fetching the pages as the iteration reaches them."""
        return _every_page(
            lambda token: self.list_codes(
                promotion=promotion,
                profile=profile,
                filter=filter,
                page_size=page_size,
                page_token=token,
            ),
            "codes",
        )

    def update_code(
        self,
        code: str,
        *,
        active: bool | None = None,
        expire_time: datetime | None = None,
        clear_expire_time: bool = False,
    ) -> code_pb2.Code:
        """Changes what is given of a code: its active flag, its expiry, or removes its expiry."""
        if expire_time is not None and clear_expire_time:
            raise ValueError("give expire_time or clear_expire_time, not both")
        paths = []
        if active is not None:
            paths.append("active")
        if expire_time is not None or clear_expire_time:
            paths.append("expire_time")
        if not paths:
            raise ValueError("nothing to change: give active, expire_time or clear_expire_time")
        request = code_pb2.UpdateCodeRequest(
            code=code_pb2.Code(code=code, active=bool(active), expire_time=expire_time),
            update_mask=field_mask_pb2.FieldMask(paths=paths),
        )
        return self._call(self.codes.UpdateCode, request)

    def upsert_profile(self, profile: ProfileDataLike) -> profile_pb2.Profile:
        """Creates the profile with this profile_id, or replaces everything it holds: the
        email, phone, custom fields and attributes not given are cleared."""
        request = profile_pb2.UpsertProfileRequest(profile=_as_profile(profile))
        return self._call(self.profiles.UpsertProfile, request)

    def get_profile(self, profile: ProfileLike) -> profile_pb2.Profile:
        """The one profile a reference matches: by profile_id (a plain string), email, phone
        or custom field; none is NotFound, several (by email, phone, custom) FailedPrecondition.
        """
        request = profile_pb2.GetProfileRequest(profile=_as_profile_ref(profile))
        return self._call(self.profiles.GetProfile, request)

    def attach_code(
        self, profile: ProfileLike, promotion: str, code: str | None = None
    ) -> code_pb2.Attachment:
        """Attaches `code` to a profile, or without one hands out the oldest available code of
        the promotion's pool, then of the global pool (ResourceExhausted POOL_EMPTY when none).

        An unknown profile_id creates the profile; an unknown code joins the promotion's pool.
        Never retried automatically: a repeat after a lost answer may hand out another code.
        """
        request = code_pb2.AttachCodeRequest(
            profile=_as_profile_ref(profile), promotion=promotion, code=code
        )
        return self._call(self.codes.AttachCode, request)

    def detach_code(self, code: str, profile: ProfileLike | None = None) -> None:
        """Detaches a code from a profile; without one, from its single holder."""
        request = code_pb2.DetachCodeRequest(code=code, profile=_as_profile_ref(profile))
        self._call(self.codes.DetachCode, request)

    def validate_code(
        self,
        code: str,
        profile: ProfileLike,
        cart: CartLike | None = None,
        *,
        attributes: Mapping[str, str] | None = None,
        applied_promotions: Sequence[str] = (),
    ) -> code_pb2.ValidateCodeResponse:
        """Whether activate_code would accept the code now, and the reward it would give;
        consumes nothing. A refusal is `valid=False` with its `reason` (CODE_EXPIRED, ...),
        not an exception.

        `attributes` are read by attribute conditions over the profile's stored ones;
        `applied_promotions` are the external ids of promotions already applied to the cart.
        """
        request = code_pb2.ValidateCodeRequest(
            code=code,
            profile=_as_profile_ref(profile),
            cart=_as_cart(cart),
            attributes=attributes,
            applied_promotions=applied_promotions,
        )
        return self._call(self.codes.ValidateCode, request)

    def activate_code(
        self,
        code: str,
        profile: ProfileLike,
        cart: CartLike | None = None,
        *,
        attributes: Mapping[str, str] | None = None,
        applied_promotions: Sequence[str] = (),
        request_id: str | None = None,
    ) -> code_pb2.Redemption:
        """Redeems a code against a cart and returns the redemption with its reward; a refusal
        raises FailedPrecondition or ResourceExhausted with its `reason`.

        `request_id` is the idempotency key: the same one again returns the first redemption
        and consumes nothing more. Pass your own (an order id) to make your repeats safe, for
        instance after a crash. When it is None a random UUID is used for this call, so that
        the client's automatic retries after UNAVAILABLE can never redeem the code twice.
        """
        request = code_pb2.ActivateCodeRequest(
            code=code,
            profile=_as_profile_ref(profile),
            cart=_as_cart(cart),
            attributes=attributes,
            applied_promotions=applied_promotions,
            request_id=str(uuid.uuid4()) if request_id is None else request_id,
        )
        return self._call(self.codes.ActivateCode, request)

    def rollback_redemption(self, redemption_id: str, reason: str = "") -> code_pb2.Redemption:
        """Rolls a redemption back, giving the use back to every limit; a second rollback is
        FailedPrecondition ALREADY_ROLLED_BACK."""
        request = code_pb2.RollbackRedemptionRequest(redemption_id=redemption_id, reason=reason)
        return self._call(self.codes.RollbackRedemption, request)

    def list_redemptions(
        self,
        *,
        promotion: str = "",
        code: str = "",
        profile: ProfileLike | None = None,
        page_size: int = 0,
        page_token: str = "",
    ) -> code_pb2.ListRedemptionsResponse:
        """One page of the redemptions of a promotion, a code or a profile (or all of them)."""
        request = code_pb2.ListRedemptionsRequest(
            promotion=promotion,
            code=code,
            profile=_as_profile_ref(profile),
            page_size=page_size,
            page_token=page_token,
        )
        return self._call(self.codes.ListRedemptions, request)

    def iter_redemptions(
        self,
        *,
        promotion: str = "",
        code: str = "",
        profile: ProfileLike | None = None,
        page_size: int = 0,
    ) -> Iterator[code_pb2.Redemption]:
        """Every redemption list_redemptions finds, fetching the pages as the iteration
        reaches them."""
        return _every_page(
            lambda token: self.list_redemptions(
                promotion=promotion,
                code=code,
                profile=profile,
                page_size=page_size,
                page_token=token,
            ),
            "redemptions",
        )

    def _call(self, method: Callable[..., _R], request: Message) -> _R:
        return self._call_within(self.timeout, method, request)

    def _call_within(
        self, timeout: float | None, method: Callable[..., _R], request: Message
    ) -> _R:
        """A unary call with its own deadline in seconds; None: none at all."""
        try:
            return method(request, timeout=timeout, metadata=self.metadata)
        except grpc.RpcError as err:
            raise from_rpc_error(err) from err


_StubT = TypeVar("_StubT")


class _InTurn:
    """Stubs of one service on several channels: each method looked up is the next one's."""

    def __init__(self, stubs: Sequence[Any]) -> None:
        self._next = itertools.cycle(stubs).__next__

    def __getattr__(self, name: str) -> Any:
        return getattr(self._next(), name)


def _in_turn(stubs: list[_StubT]) -> _StubT:
    """The one stub, or an object handing out the stubs' methods in turn."""
    return stubs[0] if len(stubs) == 1 else cast(_StubT, _InTurn(stubs))


def _open_channel(
    target: str, options: Sequence[tuple[str, Any]], credentials: grpc.ChannelCredentials | None
) -> grpc.Channel:
    """A channel to `target`: TLS with `credentials`, plaintext without."""
    if credentials is None:
        return grpc.insecure_channel(target, options=options)
    return grpc.secure_channel(target, credentials, options=options)


def _channel_credentials(
    ca: PemPath | None, client_cert: PemPath | None, client_key: PemPath | None
) -> grpc.ChannelCredentials:
    """TLS that trusts `ca` (None: the system's roots), with the client's own certificate.

    Python's ssl reads the files first: gRPC would take a bad one and fail only
    later, every call UNAVAILABLE.
    """
    if (client_cert is None) != (client_key is None):
        raise ValueError("a client certificate and its key go together: give both or neither")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if ca is not None:
        try:
            context.load_verify_locations(cafile=ca)
        except ssl.SSLError:
            raise ValueError(f"CA file {ca}: no PEM certificate in it") from None
    if client_cert is not None and client_key is not None:

        def refuse_encrypted() -> str:
            # Called only for an encrypted key; without it OpenSSL would prompt on the terminal.
            raise ValueError(f"client key {client_key} is encrypted; gRPC needs it plain")

        try:
            context.load_cert_chain(client_cert, client_key, password=refuse_encrypted)
        except ssl.SSLError:
            raise ValueError(
                f"client certificate {client_cert} and key {client_key}:"
                " not a PEM certificate chain and its private key"
            ) from None
    return grpc.ssl_channel_credentials(
        root_certificates=_read_optional(ca),
        private_key=_read_optional(client_key),
        certificate_chain=_read_optional(client_cert),
    )


def _read_optional(path: PemPath | None) -> bytes | None:
    return None if path is None else Path(path).read_bytes()


# The words click accepts for a boolean, so that `promo` and this class read PROMO_TLS alike.
_TRUE_WORDS = frozenset({"1", "true", "t", "yes", "y", "on"})
_FALSE_WORDS = frozenset({"", "0", "false", "f", "no", "n", "off"})


def _env_flag(name: str) -> bool:
    value = os.environ.get(name, "").strip().lower()
    if value not in _TRUE_WORDS | _FALSE_WORDS:
        raise ValueError(f"{name} must be 1, true, yes, on or 0, false, no, off; not {value!r}")
    return value in _TRUE_WORDS


def _as_promotion(promotion: PromotionLike) -> promotion_pb2.Promotion:
    if isinstance(promotion, promotion_pb2.Promotion):
        return promotion
    return json_format.ParseDict(promotion, promotion_pb2.Promotion())


def _as_profile(profile: ProfileDataLike) -> profile_pb2.Profile:
    if isinstance(profile, profile_pb2.Profile):
        return profile
    return json_format.ParseDict(profile, profile_pb2.Profile())


def _as_profile_ref(profile: ProfileLike | None) -> profile_pb2.ProfileRef | None:
    if profile is None or isinstance(profile, profile_pb2.ProfileRef):
        return profile
    if isinstance(profile, str):
        return profile_pb2.ProfileRef(profile_id=profile)
    return json_format.ParseDict(profile, profile_pb2.ProfileRef())  # either case of names


def _as_cart(cart: CartLike | None) -> code_pb2.Cart | None:
    if cart is None or isinstance(cart, code_pb2.Cart):
        return cart
    return json_format.ParseDict(cart, code_pb2.Cart())


_E = TypeVar("_E", bound=int)


def _enum(value: _E | str | None) -> _E | str | None:
    """An enum as protobuf constructors take it: its value, or its name in upper case."""
    return value.upper() if isinstance(value, str) else value


def _api_key(key: str | None) -> str | None:
    """The key as sent: without the line break a key file or a secret mount may end with.
    gRPC refuses other characters than printable ASCII in metadata, as an INTERNAL error
    that names neither the key nor the cause: refused here instead."""
    if key is None:
        return None
    key = key.strip()
    if not all(" " < char <= "~" for char in key):
        raise ValueError("the API key holds a character no key has (a space, a control "
                         "or a non-ASCII character): check PROMO_API_KEY (or the key given)")
    return key


@contextlib.contextmanager
def _open_source(source: CsvSource) -> Iterator[SupportsRead[bytes]]:
    """The file to read: a path is opened (and closed after), a file object is used as is."""
    if isinstance(source, str | os.PathLike):
        with open(source, "rb") as file:
            yield file
    else:
        yield source


class _Upload:
    """The request stream of an import: the spec, then the file in chunks as gRPC asks.

    gRPC pulls the requests on a thread of its own and would only log a failure there, so a
    file that cannot be read (or a progress callback that raises) cancels the call and is
    kept as `failure` for the caller.
    """

    def __init__(
        self,
        spec: code_pb2.ImportCodesRequest.Spec,
        file: SupportsRead[bytes],
        chunk_size: int,
        progress: Callable[[int], None] | None,
    ) -> None:
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, not {chunk_size}")
        self._spec = spec
        self._file = file
        self._chunk_size = chunk_size
        self._progress = progress
        self._reading = threading.Lock()
        self._stopped = False
        self._call: grpc.Future | None = None
        self._started = threading.Event()
        self.failure: Exception | None = None

    def start(self, method: Any, timeout: float | None, metadata: Any) -> grpc.Future:
        try:
            self._call = method.future(self._requests(), timeout=timeout, metadata=metadata)
        finally:
            self._started.set()
        return self._call

    def stop(self) -> None:
        """Reads no more: once this returns, the file may be closed."""
        with self._reading:
            self._stopped = True

    def _requests(self) -> Iterator[code_pb2.ImportCodesRequest]:
        yield code_pb2.ImportCodesRequest(spec=self._spec)
        sent = 0
        while True:
            with self._reading:
                if self._stopped:
                    return
                try:
                    chunk = self._file.read(self._chunk_size)
                    if isinstance(chunk, str):
                        raise TypeError("the CSV source gives text: open the file with 'rb'")
                except Exception as exc:
                    self._fail(exc)
                    return
            if not chunk:
                return
            yield code_pb2.ImportCodesRequest(chunk=chunk)
            # gRPC asks for the next message once it has taken this one.
            sent += len(chunk)
            if self._progress is not None:
                try:
                    self._progress(sent)
                except Exception as exc:
                    self._fail(exc)
                    return

    def _fail(self, exc: Exception) -> None:
        self.failure = exc
        self._started.wait()
        if self._call is not None:
            # Cancelled before the stream ends, the import changes nothing on the server.
            # Ending the stream now would race the cancel: the server could see a
            # complete file first and publish it. So wait until the call is over.
            over = threading.Event()
            self._call.add_done_callback(lambda _: over.set())
            self._call.cancel()
            over.wait(CANCEL_WAIT_SECONDS)


class _LineCounter:
    """Counts the records of a CSV stream as it passes, cheaply: RFC 4180 quotes may hold
    line breaks, so only those outside quotes end a record."""

    def __init__(self) -> None:
        self.bytes = 0
        self._records = 0
        self._in_quotes = False
        self._open_record = False

    def feed(self, chunk: bytes) -> None:
        if not chunk:
            return
        self.bytes += len(chunk)
        # Splitting at quotes alternates outside / inside; a doubled quote flips twice.
        for index, part in enumerate(chunk.split(b'"')):
            inside = self._in_quotes != (index % 2 == 1)
            if not inside:
                self._records += part.count(b"\n")
        self._in_quotes ^= chunk.count(b'"') % 2 == 1
        self._open_record = not chunk.endswith(b"\n")

    @property
    def data_lines(self) -> int:
        """Records so far, the header excluded; a last line may lack its line break."""
        return max(self._records + self._open_record - 1, 0)


def _every_page(fetch: Callable[[str], Any], field: str) -> Iterator[Any]:
    """The items of every page of a list call, fetching each page as the iteration reaches it."""
    page_token = ""
    while True:
        page = fetch(page_token)
        yield from getattr(page, field)
        page_token = page.next_page_token
        if not page_token:
            return
