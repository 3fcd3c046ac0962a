"""The hostile input campaign, through a real server on SQLite and PostgreSQL.

Every promo.v1 method gets garbage requests, valid requests with a few fields
swapped for garbage, random bytes instead of a message, and a message over the
size limit. Whatever the caller sends, the answer blames the caller (or is OK),
INVALID_ARGUMENT names the fields, a refused call changes no row, and the
server keeps serving. ``PROMO_HOSTILE_EXAMPLES`` scales the number of examples.
"""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from google.protobuf import descriptor
from google.protobuf.message import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from promo.v1 import code_pb2
from tests.hostile import harness
from tests.hostile.strategies import METHODS, SERVICES, hostile, valid_shaped

CALLERS = ("admin",) * 6 + ("read", "redeem", "garbage", "none", "malformed")
IMPORT = code_pb2.ImportCodesRequest


def requests(method: descriptor.MethodDescriptor, seed: harness.Seed
             ) -> st.SearchStrategy[Message | list[Message]]:
    """Garbage requests of ``method`` and valid ones with a few fields spoilt."""
    valid = seed.valid(method)
    if not method.client_streaming:
        assert isinstance(valid, Message)
        return st.one_of(hostile(harness.request_class(method)), valid_shaped(valid))
    assert isinstance(valid, list)
    spoilt = st.tuples(*[valid_shaped(message) for message in valid]).map(list)
    chunks = st.lists(hostile(IMPORT).filter(lambda m: m.WhichOneof("payload") != "spec"),
                      max_size=4)
    after_a_spec = st.tuples(valid_shaped(valid[0]), chunks).map(lambda p: [p[0], *p[1]])
    return st.one_of(st.lists(hostile(IMPORT), max_size=5), spoilt, after_a_spec)


def examples_for(service: descriptor.ServiceDescriptor) -> int:
    return harness.EXAMPLES * len(service.methods)


@pytest.mark.parametrize("service", SERVICES, ids=lambda service: service.name)
def test_hostile_requests_are_refused_cleanly(
    service: descriptor.ServiceDescriptor, channel: grpc.Channel, seeded: harness.Seed,
) -> None:
    @given(data=st.data())
    @settings(max_examples=examples_for(service), deadline=None, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture,
                                     HealthCheck.too_slow, HealthCheck.data_too_large])
    def campaign(data: st.DataObject) -> None:
        method = data.draw(st.sampled_from(tuple(service.methods)), label="method")
        request = data.draw(requests(method, seeded), label="request")
        caller = data.draw(st.sampled_from(CALLERS), label="caller")
        before = harness.snapshot()
        answer = harness.call(channel, method, request, seeded.metadata(caller))
        harness.check(answer, method, before)
        harness.check_serving(channel, seeded.project)

    campaign()


def raw_bodies(method: descriptor.MethodDescriptor) -> st.SearchStrategy[Any]:
    body = st.one_of(
        st.binary(max_size=200),
        st.sampled_from([b"\xff", b"\x0a\xff\xff\xff\xff\x0f", b"\x08", b"\x0a\x05ab",
                         b"\x12\x02\xff\xfe", b"\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01"]),
    )
    return st.lists(body, min_size=1, max_size=3) if method.client_streaming else body


@given(data=st.data())
@settings(max_examples=harness.EXAMPLES * 4, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
def test_random_bytes_instead_of_a_message_are_refused_cleanly(
    channel: grpc.Channel, seeded: harness.Seed, data: st.DataObject,
) -> None:
    method = data.draw(st.sampled_from(METHODS), label="method")
    body = data.draw(raw_bodies(method), label="body")
    before = harness.snapshot()
    answer = harness.call(channel, method, body, seeded.metadata("admin"), raw=True)
    harness.check(answer, method, before)
    harness.check_serving(channel, seeded.project)


# Over the server's 4 MiB default limit on a received message.
OVERSIZED_BYTES = 4 * 1024 * 1024 + 1024


def oversized(method: descriptor.MethodDescriptor) -> Message | list[Message]:
    """A request of ``method`` with one string (or the CSV chunk) over the size limit."""
    if method.client_streaming:
        # A REPLACE whose first chunk is fine: publishing it would retire the pool's codes.
        spec = IMPORT.Spec(promotion="p1", mode=IMPORT.Spec.REPLACE)
        return [IMPORT(spec=spec), IMPORT(chunk=b"CODE-NEW\n"),
                IMPORT(chunk=b"CODE-9\n" * (OVERSIZED_BYTES // 7))]
    request = harness.request_class(method)()
    # Unknown fields travel whole: every request type gets a string field 15 it ignores.
    request.MergeFromString(b"\x7a" + _varint(OVERSIZED_BYTES) + b"x" * OVERSIZED_BYTES)
    return request


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def test_a_message_over_the_size_limit_is_refused(
    channel: grpc.Channel, seeded: harness.Seed,
) -> None:
    for method in METHODS:
        before = harness.snapshot()
        answer = harness.call(channel, method, oversized(method), seeded.metadata("admin"))
        assert answer.code == grpc.StatusCode.RESOURCE_EXHAUSTED, (method.name, answer.describe())
        harness.check(answer, method, before)
        harness.check_serving(channel, seeded.project)
