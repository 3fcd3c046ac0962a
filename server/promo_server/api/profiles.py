"""ProfileService: parse, call one use case, answer."""

from __future__ import annotations

import grpc

from promo.v1 import profile_pb2 as pb
from promo.v1 import profile_pb2_grpc
from promo_server.api import auth
from promo_server.api.convert import profile_ref_from_proto, time_to_proto
from promo_server.domain import profiles as domain
from promo_server.domain.errors import FieldViolation, InvalidArgument
from promo_server.usecases import profiles


class ProfileService(profile_pb2_grpc.ProfileServiceServicer):
    def UpsertProfile(self, request: pb.UpsertProfileRequest, context: grpc.ServicerContext
                      ) -> pb.Profile:
        given = request.profile
        profile = domain.Profile(
            profile_id=given.profile_id,
            email=given.email,
            phone=given.phone,
            custom_fields=dict(given.custom_fields),
            attributes=dict(given.attributes),
        )
        return profile_to_proto(profiles.upsert(auth.current().project_id, profile))

    def GetProfile(self, request: pb.GetProfileRequest, context: grpc.ServicerContext
                   ) -> pb.Profile:
        problems: list[FieldViolation] = []
        ref = profile_ref_from_proto(request.profile, "profile", problems)
        if problems:
            raise InvalidArgument(problems)
        return profile_to_proto(profiles.get(auth.current().project_id, ref))


def profile_to_proto(profile: domain.Profile) -> pb.Profile:
    return pb.Profile(
        profile_id=profile.profile_id,
        email=profile.email,
        phone=profile.phone,
        custom_fields=profile.custom_fields,
        attributes=profile.attributes,
        create_time=time_to_proto(profile.create_time),
        update_time=time_to_proto(profile.update_time),
    )
