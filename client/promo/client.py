"""A friendly, typed wrapper over the promo.v1 gRPC services."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, Self, TypeAlias, TypeVar

import grpc
from google.protobuf import field_mask_pb2, json_format
from google.protobuf.message import Message

from promo.errors import from_rpc_error
from promo.v1 import (
    code_pb2_grpc,
    profile_pb2_grpc,
    promotion_pb2,
    promotion_pb2_grpc,
)

DEFAULT_TARGET = "127.0.0.1:50051"

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

_R = TypeVar("_R")


class PromoClient:
    """One channel to the promo service; methods raise `promo.errors.PromoError` subclasses.

    The raw stubs are `promotions`, `codes` and `profiles`; pass them `metadata=client.metadata`.
    """

    def __init__(
        self,
        target: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        self.target = target or os.environ.get("PROMO_TARGET") or DEFAULT_TARGET
        key = api_key if api_key is not None else os.environ.get("PROMO_API_KEY")
        # Without a key the server answers UNAUTHENTICATED, which is the clearest message.
        self.metadata: tuple[tuple[str, str], ...] = (
            (("authorization", f"Bearer {key}"),) if key else ()
        )
        self.timeout = timeout
        self._channel = grpc.insecure_channel(
            self.target,
            # gRPC keeps the first of repeated options: the caller's come first to win.
            options=[
                *options,
                ("grpc.enable_retries", 1),
                ("grpc.service_config", SERVICE_CONFIG),
            ],
        )
        self.promotions = promotion_pb2_grpc.PromotionServiceStub(self._channel)
        self.codes = code_pb2_grpc.CodeServiceStub(self._channel)
        self.profiles = profile_pb2_grpc.ProfileServiceStub(self._channel)

    def __repr__(self) -> str:
        # The key stays out: reprs end up in logs and tracebacks.
        return f"PromoClient(target={self.target!r})"

    def close(self) -> None:
        self._channel.close()

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
            state=state.upper() if isinstance(state, str) else state,
            page_size=page_size,
            page_token=page_token,
        )
        return self._call(self.promotions.ListPromotions, request)

    def iter_promotions(
        self, *, state: StateLike | None = None, page_size: int = 0
    ) -> Iterator[promotion_pb2.Promotion]:
        """Every promotion, fetching the pages as the iteration reaches them."""
        page_token = ""
        while True:
            page = self.list_promotions(state=state, page_size=page_size, page_token=page_token)
            yield from page.promotions
            page_token = page.next_page_token
            if not page_token:
                return

    def update_promotion(
        self, promotion: PromotionLike, update_mask: Sequence[str] = ()
    ) -> promotion_pb2.Promotion:
        """Changes the promotion named by its external_id; an empty mask replaces it all."""
        request = promotion_pb2.UpdatePromotionRequest(
            promotion=_as_promotion(promotion),
            update_mask=field_mask_pb2.FieldMask(paths=update_mask),
        )
        return self._call(self.promotions.UpdatePromotion, request)

    def delete_promotion(self, external_id: str) -> None:
        request = promotion_pb2.DeletePromotionRequest(external_id=external_id)
        self._call(self.promotions.DeletePromotion, request)

    def _call(self, method: Callable[..., _R], request: Message) -> _R:
        try:
            return method(request, timeout=self.timeout, metadata=self.metadata)
        except grpc.RpcError as err:
            raise from_rpc_error(err) from err


def _as_promotion(promotion: PromotionLike) -> promotion_pb2.Promotion:
    if isinstance(promotion, promotion_pb2.Promotion):
        return promotion
    return json_format.ParseDict(promotion, promotion_pb2.Promotion())
