"""Fixtures of the hostile campaign: a channel to the server under test, and a seeded project."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest

from tests.conftest import Project, Running
from tests.hostile import harness


@pytest.fixture
def channel(running: Running) -> Iterator[grpc.Channel]:
    with running.channel() as opened:
        yield opened


@pytest.fixture
def seeded(channel: grpc.Channel, project: Project) -> harness.Seed:
    return harness.seed(channel, project)
