"""ProfileService through a real server, on SQLite and PostgreSQL: upserts and the four
matching modes."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import pytest

from promo.v1 import profile_pb2 as pb
from promo.v1 import profile_pb2_grpc
from tests.conftest import Project, Running, bearer
from tests.rpc import error_reason, field_violations, refused


@dataclass
class Api:
    stub: profile_pb2_grpc.ProfileServiceStub
    key: str

    def upsert(self, **fields: object) -> pb.Profile:
        return self.stub.UpsertProfile(
            pb.UpsertProfileRequest(profile=pb.Profile(**fields)), metadata=bearer(self.key)
        )

    def get(self, **ref: object) -> pb.Profile:
        return self.stub.GetProfile(
            pb.GetProfileRequest(profile=pb.ProfileRef(**ref)), metadata=bearer(self.key)
        )


@pytest.fixture
def api(running: Running, project: Project) -> Iterator[Api]:
    with running.channel() as channel:
        yield Api(profile_pb2_grpc.ProfileServiceStub(channel), project.redeem_key)


def test_a_profile_is_found_by_each_matching_mode(api: Api) -> None:
    api.upsert(profile_id="u-1", email="ann@example.com", phone="+100",
               custom_fields={"crm_id": "C-7"}, attributes={"tier": "gold"})

    for ref in ({"profile_id": "u-1"}, {"email": "ann@example.com"}, {"phone": "+100"},
                {"custom": pb.ProfileRef.Custom(field="crm_id", value="C-7")}):
        found = api.get(**ref)
        assert found.profile_id == "u-1"
        assert dict(found.attributes) == {"tier": "gold"}
        assert dict(found.custom_fields) == {"crm_id": "C-7"}


def test_an_upsert_replaces_what_the_profile_holds(api: Api) -> None:
    first = api.upsert(profile_id="u-2", email="old@example.com", custom_fields={"a": "1"})
    second = api.upsert(profile_id="u-2", phone="+200", attributes={"age": "30"})

    assert second.create_time == first.create_time
    assert (second.email, second.phone, dict(second.custom_fields)) == ("", "+200", {})
    refused(lambda: api.get(email="old@example.com"), grpc.StatusCode.NOT_FOUND)


def test_matching_several_profiles_is_a_failed_precondition(api: Api) -> None:
    api.upsert(profile_id="u-3", email="shared@example.com")
    api.upsert(profile_id="u-4", email="shared@example.com")

    error = refused(lambda: api.get(email="shared@example.com"),
                    grpc.StatusCode.FAILED_PRECONDITION)
    assert "profile_id" in error.details()
    assert error_reason(error) == ("promo.v1", "PROFILE_AMBIGUOUS")
    refused(lambda: api.get(profile_id="nobody"), grpc.StatusCode.NOT_FOUND)


def test_bad_profiles_are_refused_field_by_field(api: Api) -> None:
    error = refused(lambda: api.upsert(profile_id="", attributes={"bad key": "x"}),
                    grpc.StatusCode.INVALID_ARGUMENT)
    assert set(field_violations(error)) == {"profile.profile_id",
                                            "profile.attributes['bad key']"}
    empty = refused(lambda: api.get(), grpc.StatusCode.INVALID_ARGUMENT)
    assert "profile" in field_violations(empty)


def test_a_phone_longer_than_its_column_is_refused_on_both_databases(api: Api) -> None:
    """Found by tests/hostile: PostgreSQL refused a 100-digit phone with INTERNAL."""
    error = refused(lambda: api.upsert(profile_id="ann", phone="1" * 65),
                    grpc.StatusCode.INVALID_ARGUMENT)
    assert field_violations(error) == {"profile.phone": "must be at most 64 characters"}
    assert api.upsert(profile_id="ann", phone="1" * 64).phone == "1" * 64
