"""PromotionService: parse, call one use case, answer."""

from __future__ import annotations

import grpc
from google.protobuf import empty_pb2

from promo.v1 import promotion_pb2 as pb
from promo.v1 import promotion_pb2_grpc
from promo_server.api import auth
from promo_server.api.convert import enum_name, promotion_from_proto, promotion_to_proto
from promo_server.usecases import promotions

# Room left in a response for what is not a promotion (the token, framing).
RESPONSE_SLACK_BYTES = 4096


class PromotionService(promotion_pb2_grpc.PromotionServiceServicer):
    def __init__(self, max_message_bytes: int) -> None:
        self._max_message_bytes = max_message_bytes

    def CreatePromotion(
        self, request: pb.CreatePromotionRequest, context: grpc.ServicerContext
    ) -> pb.Promotion:
        promotion, problems = promotion_from_proto(request.promotion)
        created = promotions.create(auth.current().project_id, promotion, problems)
        return promotion_to_proto(created)

    def GetPromotion(
        self, request: pb.GetPromotionRequest, context: grpc.ServicerContext
    ) -> pb.Promotion:
        return promotion_to_proto(promotions.get(auth.current().project_id, request.external_id))

    def ListPromotions(
        self, request: pb.ListPromotionsRequest, context: grpc.ServicerContext
    ) -> pb.ListPromotionsResponse:
        state = None
        if request.state != pb.Promotion.STATE_UNSPECIFIED:
            state = enum_name(pb.Promotion.State, request.state)
        page_size = request.page_size
        while True:
            items, token = promotions.list_page(
                auth.current().project_id,
                page_size=page_size,
                page_token=request.page_token,
                state=state,
            )
            found = [promotion_to_proto(p) for p in items]
            fitting = self._fitting(found)
            if fitting == len(found):
                return pb.ListPromotionsResponse(promotions=found, next_page_token=token)
            # Too big to send (large promotions, a large page): the page shrinks to what
            # fits, and its token continues from there. AIP-158 allows a shorter page.
            page_size = fitting

    def _fitting(self, found: list[pb.Promotion]) -> int:
        """How many of the promotions, in order, fit in one response (at least one)."""
        budget = self._max_message_bytes - RESPONSE_SLACK_BYTES
        for count, promotion in enumerate(found):
            budget -= promotion.ByteSize() + 8  # its tag and length
            if budget < 0:
                return max(count, 1)
        return len(found)

    def UpdatePromotion(
        self, request: pb.UpdatePromotionRequest, context: grpc.ServicerContext
    ) -> pb.Promotion:
        promotion, problems = promotion_from_proto(request.promotion)
        updated = promotions.update(
            auth.current().project_id, promotion, list(request.update_mask.paths), problems
        )
        return promotion_to_proto(updated)

    def DeletePromotion(
        self, request: pb.DeletePromotionRequest, context: grpc.ServicerContext
    ) -> empty_pb2.Empty:
        promotions.delete(auth.current().project_id, request.external_id)
        return empty_pb2.Empty()
