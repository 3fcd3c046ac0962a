"""Metrics and pool stock: the Prometheus endpoint scraped over HTTP after real calls, the
low-stock gauge and warning, available_code_count, and low_stock_threshold's rules.

prometheus_client's registry is one per process and every in-process server of the run
records into it, so the counters are compared before and after what a test does.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2, timestamp_pb2
from prometheus_client.parser import text_string_to_metric_families

from promo.v1 import code_pb2 as pb
from promo.v1 import code_pb2_grpc, profile_pb2, promotion_pb2, promotion_pb2_grpc
from promo_server.app import Server, create_server
from promo_server.config import Settings
from promo_server.domain.promotions import Discount, Promotion, is_low_stock, validate
from tests.conftest import Project, Running, bearer
from tests.processes import create_project, free_port, promo_server, serving
from tests.rpc import error_reason, field_violations, refused

CART = pb.Cart(currency="USD", items=[pb.CartItem(sku="shirt", quantity=1, unit_price="10.00")])
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@dataclass
class Metered:
    running: Running
    metrics_port: int

    @property
    def server(self) -> Server:
        assert isinstance(self.running.server, Server)
        return self.running.server

    def scrape(self) -> Samples:
        return scrape(self.metrics_port)


def scrape(port: int) -> Samples:
    """Every sample /metrics shows, by name and labels."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        assert response.status == 200
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def moved(
    before: Samples, after: Samples, name: str, *label_names: str
) -> dict[tuple[str, ...], float]:
    """How far each series of ``name`` moved, by its values of ``label_names``; unmoved
    series left out."""
    out = {}
    for (sample, labels), value in after.items():
        change = value - before.get((sample, labels), 0.0)
        if sample == name and change:
            out[tuple(dict(labels)[label] for label in label_names)] = change
    return out


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


@contextlib.contextmanager
def metered_server(db_url: str, stock_check_seconds: float) -> Iterator[Metered]:
    """A started server with its metrics endpoint, counting the pools that often."""
    settings = Settings(database_url=db_url, listen="127.0.0.1:0",
                        metrics_listen="127.0.0.1:0", stock_check_seconds=stock_check_seconds)
    server, port = create_server("127.0.0.1:0", db_url, settings)
    server.start()
    try:
        assert server.metrics_endpoint is not None
        yield Metered(Running(f"127.0.0.1:{port}", db_url, server), server.metrics_endpoint.port)
    finally:
        server.stop(None).wait()


@pytest.fixture
def metered(db_url: str) -> Iterator[Metered]:
    """A server with its metrics endpoint; its stock watcher checks once at start, then
    whenever a test asks (the interval is far longer than any test)."""
    with metered_server(db_url, stock_check_seconds=3600) as serving_metrics:
        yield serving_metrics


@dataclass
class Api:
    codes: code_pb2_grpc.CodeServiceStub
    promotions: promotion_pb2_grpc.PromotionServiceStub
    key: str

    def create(self, external_id: str, **fields: Any) -> promotion_pb2.Promotion:
        return self.promotions.CreatePromotion(
            promotion_pb2.CreatePromotionRequest(promotion=promotion_pb2.Promotion(
                external_id=external_id, name={"en-US": "P"},
                discount=promotion_pb2.Discount(percent="10"), **fields)),
            metadata=bearer(self.key),
        )

    def get(self, external_id: str) -> promotion_pb2.Promotion:
        return self.promotions.GetPromotion(
            promotion_pb2.GetPromotionRequest(external_id=external_id), metadata=bearer(self.key)
        )

    def listed(self, page_size: int = 0) -> dict[str, promotion_pb2.Promotion]:
        out: dict[str, promotion_pb2.Promotion] = {}
        token = ""
        while True:
            page = self.promotions.ListPromotions(
                promotion_pb2.ListPromotionsRequest(page_size=page_size, page_token=token),
                metadata=bearer(self.key),
            )
            out |= {p.external_id: p for p in page.promotions}
            token = page.next_page_token
            if not token:
                return out

    def update(self, promotion: promotion_pb2.Promotion, *paths: str) -> promotion_pb2.Promotion:
        return self.promotions.UpdatePromotion(
            promotion_pb2.UpdatePromotionRequest(
                promotion=promotion, update_mask=field_mask_pb2.FieldMask(paths=paths)),
            metadata=bearer(self.key),
        )

    def pool(self, promotion: str, *lines: str, replace: bool = False) -> pb.ImportCodesResponse:
        mode = pb.ImportCodesRequest.Spec.REPLACE if replace else pb.ImportCodesRequest.Spec.APPEND
        return self.codes.ImportCodes(
            iter([pb.ImportCodesRequest(spec=pb.ImportCodesRequest.Spec(
                promotion=promotion, mode=mode)),
                pb.ImportCodesRequest(chunk="".join(f"{line}\n" for line in lines).encode())]),
            metadata=bearer(self.key),
        )

    def generate(self, promotion: str, count: int) -> int:
        return self.codes.GenerateCodes(
            pb.GenerateCodesRequest(promotion=promotion, count=count, pattern="GEN-######"),
            metadata=bearer(self.key),
        ).generated

    def hand_out(self, profile: str, promotion: str, code: str | None = None) -> pb.Attachment:
        request = pb.AttachCodeRequest(
            profile=profile_pb2.ProfileRef(profile_id=profile), promotion=promotion
        )
        if code is not None:
            request.code = code
        return self.codes.AttachCode(request, metadata=bearer(self.key))

    def activate(self, code: str, profile: str, request_id: str) -> pb.Redemption:
        return self.codes.ActivateCode(
            pb.ActivateCodeRequest(code=code, profile=profile_pb2.ProfileRef(profile_id=profile),
                                   cart=CART, request_id=request_id),
            metadata=bearer(self.key),
        )

    def deactivate(self, code: str) -> None:
        self.codes.UpdateCode(
            pb.UpdateCodeRequest(code=pb.Code(code=code, active=False),
                                 update_mask=field_mask_pb2.FieldMask(paths=["active"])),
            metadata=bearer(self.key),
        )

    def expire(self, code: str) -> None:
        past = timestamp_pb2.Timestamp(seconds=int(time.time()) - 3600)
        self.codes.UpdateCode(
            pb.UpdateCodeRequest(code=pb.Code(code=code, expire_time=past),
                                 update_mask=field_mask_pb2.FieldMask(paths=["expire_time"])),
            metadata=bearer(self.key),
        )


def api_for(running: Running, project: Project) -> Iterator[Api]:
    with running.channel() as channel:
        yield Api(code_pb2_grpc.CodeServiceStub(channel),
                  promotion_pb2_grpc.PromotionServiceStub(channel), project.admin_key)


@pytest.fixture
def metered_api(metered: Metered) -> Iterator[tuple[Metered, Api, Project]]:
    project = metered.running.new_project()
    for api in api_for(metered.running, project):
        yield metered, api, project


@pytest.fixture
def api(running: Running, project: Project) -> Iterator[Api]:
    yield from api_for(running, project)


# --- calls, redemptions, rollbacks and imports -------------------------------------------


def test_calls_redemptions_rollbacks_and_imports_move_by_what_was_done(
    metered_api: tuple[Metered, Api, Project],
) -> None:
    metered, api, project = metered_api
    api.create("metered", redeem_code_limit=1)
    before = metered.scrape()

    assert api.pool("metered", "M-1", "M-2", "M-3").imported == 3
    assert api.generate("metered", 5) == 5
    first = api.activate("M-1", "ann", request_id="order-1")
    assert api.activate("M-1", "ann", request_id="order-1").id == first.id  # a retry
    used_up = refused(lambda: api.activate("M-1", "bob", request_id="order-2"),
                      grpc.StatusCode.RESOURCE_EXHAUSTED)
    assert error_reason(used_up)[1] == "CODE_LIMIT_REACHED"
    api.codes.RollbackRedemption(pb.RollbackRedemptionRequest(redemption_id=first.id),
                                 metadata=bearer(api.key))
    refused(lambda: api.promotions.GetPromotion(
        promotion_pb2.GetPromotionRequest(external_id="metered")), grpc.StatusCode.UNAUTHENTICATED)

    after = metered.scrape()
    assert moved(before, after, "promo_rpc_calls_total", "method", "code") == {
        ("ImportCodes", "OK"): 1,
        ("GenerateCodes", "OK"): 1,
        ("ActivateCode", "OK"): 2,
        ("ActivateCode", "RESOURCE_EXHAUSTED"): 1,
        ("RollbackRedemption", "OK"): 1,
        ("GetPromotion", "UNAUTHENTICATED"): 1,
    }
    calls = {"ImportCodes": 1, "GenerateCodes": 1, "ActivateCode": 3, "RollbackRedemption": 1,
             "GetPromotion": 1}
    assert moved(before, after, "promo_rpc_duration_seconds_count", "method") == {
        (method,): count for method, count in calls.items()
    }
    buckets = moved(before, after, "promo_rpc_duration_seconds_bucket", "method", "le")
    for method, count in calls.items():
        assert buckets[(method, "+Inf")] == count
        assert moved(before, after, "promo_rpc_duration_seconds_sum", "method")[(method,)] > 0
    project_label = str(project.id)
    assert moved(before, after, "promo_redemptions_total", "project") == {(project_label,): 1}
    assert moved(before, after, "promo_rollbacks_total", "project") == {(project_label,): 1}
    assert moved(before, after, "promo_codes_imported_total", "project", "source") == {
        (project_label, "import"): 3,
        (project_label, "generate"): 5,
    }


def test_histogram_buckets_are_cumulative(metered_api: tuple[Metered, Api, Project]) -> None:
    metered, api, _ = metered_api
    api.create("histogram")
    samples = metered.scrape()
    bounds = sorted(
        (float(dict(labels)["le"]), count)
        for (name, labels), count in samples.items()
        if name == "promo_rpc_duration_seconds_bucket"
        and dict(labels)["method"] == "CreatePromotion"
    )
    counts = [count for _, count in bounds]
    assert counts == sorted(counts)
    assert bounds[-1][0] == float("inf")
    assert counts[-1] == value(samples, "promo_rpc_duration_seconds_count",
                               method="CreatePromotion")


def test_a_failed_import_counts_no_codes(metered_api: tuple[Metered, Api, Project]) -> None:
    metered, api, _ = metered_api
    api.create("strict")
    before = metered.scrape()

    refused(lambda: api.pool("strict", "GOOD-1", "not a code!"), grpc.StatusCode.INVALID_ARGUMENT)

    after = metered.scrape()
    assert moved(before, after, "promo_codes_imported_total", "project", "source") == {}
    assert moved(before, after, "promo_rpc_calls_total", "method", "code") == {
        ("ImportCodes", "INVALID_ARGUMENT"): 1,
    }


# --- pool stock: gauges and low-stock warnings ---------------------------------------------


def low_warnings(caplog: pytest.LogCaptureFixture, promotion: str) -> int:
    return sum(
        1 for r in caplog.records
        if r.levelno == logging.WARNING and r.getMessage().startswith("pool low on codes")
        and f" promotion={promotion} " in r.getMessage()
    )


def test_low_stock_gauge_flips_and_warns_once_per_crossing(
    metered_api: tuple[Metered, Api, Project], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="promo_server.metrics")
    metered, api, project = metered_api
    api.create("stocked", low_stock_threshold=2)
    api.pool("stocked", "S-1", "S-2", "S-3")
    pool = {"project": str(project.id), "promotion": "stocked"}

    def check() -> Samples:
        metered.server.stock.check()
        return metered.scrape()

    samples = check()
    assert value(samples, "promo_pool_available_codes", **pool) == 3
    assert value(samples, "promo_pool_low_stock_threshold", **pool) == 2
    assert value(samples, "promo_pool_low_stock", **pool) == 0

    api.hand_out("ann", "stocked")
    assert value(check(), "promo_pool_low_stock", **pool) == 0  # 2 left: not under 2
    assert low_warnings(caplog, "stocked") == 0

    api.hand_out("bob", "stocked")
    samples = check()
    assert value(samples, "promo_pool_available_codes", **pool) == 1
    assert value(samples, "promo_pool_low_stock", **pool) == 1
    assert low_warnings(caplog, "stocked") == 1
    check()
    assert low_warnings(caplog, "stocked") == 1  # still low: no second warning

    api.pool("stocked", "S-4", "S-5")
    samples = check()
    assert value(samples, "promo_pool_low_stock", **pool) == 0
    assert any(r.getMessage().startswith("pool no longer low on codes")
               and " promotion=stocked " in r.getMessage() for r in caplog.records)

    api.hand_out("cat", "stocked")
    api.hand_out("dan", "stocked")
    assert value(check(), "promo_pool_low_stock", **pool) == 1
    assert low_warnings(caplog, "stocked") == 2  # a new crossing, a new warning


def test_the_global_pools_threshold_is_set_by_the_admin_command(
    metered_api: tuple[Metered, Api, Project], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="promo_server.metrics")
    metered, api, project = metered_api
    pool = {"project": str(project.id), "promotion": ""}
    metered.server.stock.check()
    samples = metered.scrape()
    assert value(samples, "promo_pool_available_codes", **pool) == 0
    assert value(samples, "promo_pool_low_stock", **pool) is None  # no threshold, no flag

    done = admin(metered.running.db_url, "set-low-stock-threshold", str(project.id), "2")
    assert done.returncode == 0, done.stderr
    assert "low-stock threshold 2" in done.stdout
    metered.server.stock.check()
    samples = metered.scrape()
    assert value(samples, "promo_pool_low_stock_threshold", **pool) == 2
    assert value(samples, "promo_pool_low_stock", **pool) == 1
    assert low_warnings(caplog, "") == 1

    api.pool("", "G-1", "G-2")
    metered.server.stock.check()
    samples = metered.scrape()
    assert value(samples, "promo_pool_available_codes", **pool) == 2
    assert value(samples, "promo_pool_low_stock", **pool) == 0

    cleared = admin(metered.running.db_url, "set-low-stock-threshold", str(project.id), "none")
    assert cleared.returncode == 0, cleared.stderr
    assert "low-stock threshold none" in cleared.stdout
    metered.server.stock.check()
    assert value(metered.scrape(), "promo_pool_low_stock_threshold", **pool) is None


def test_deleted_promotions_leave_the_gauges(metered_api: tuple[Metered, Api, Project]) -> None:
    metered, api, project = metered_api
    api.create("brief")
    api.pool("brief", "B-1")
    metered.server.stock.check()
    pool = {"project": str(project.id), "promotion": "brief"}
    assert value(metered.scrape(), "promo_pool_available_codes", **pool) == 1

    api.promotions.DeletePromotion(promotion_pb2.DeletePromotionRequest(external_id="brief"),
                                   metadata=bearer(api.key))
    metered.server.stock.check()
    assert value(metered.scrape(), "promo_pool_available_codes", **pool) is None


def test_the_watcher_counts_on_its_own(db_url: str) -> None:
    with metered_server(db_url, stock_check_seconds=0.05) as metered:
        project = metered.running.new_project()
        pool = {"project": str(project.id), "promotion": ""}
        deadline = time.monotonic() + 30
        while value(metered.scrape(), "promo_pool_available_codes", **pool) is None:
            assert time.monotonic() < deadline, "the watcher never counted the new project"
            time.sleep(0.05)


def test_a_watcher_set_to_0_never_counts_and_promotions_still_show_their_codes(
    db_url: str,
) -> None:
    """PROMO_STOCK_CHECK_SECONDS=0: no count, no pool gauges (it used to count without
    a pause); a Promotion read still counts its own pool."""
    with metered_server(db_url, stock_check_seconds=0) as metered:
        for api in api_for(metered.running, metered.running.new_project()):
            api.create("uncounted")
            api.pool("uncounted", "U-1", "U-2")
            assert api.get("uncounted").available_code_count == 2
        time.sleep(0.2)
        samples = metered.scrape()
        assert value(samples, "promo_pool_stock_check_time_seconds") is None
        assert not any(name == "promo_pool_available_codes" for name, _ in samples)


# --- available_code_count ----------------------------------------------------------------


def test_available_code_count_follows_imports_hand_outs_and_retirements(api: Api) -> None:
    created = api.create("counted")
    assert created.available_code_count == 0
    api.create("other")
    api.create("empty")
    api.pool("counted", *(f"C-{i}" for i in range(1, 9)))
    api.pool("other", "O-1", "O-2")
    api.pool("", "G-1")  # the global pool: nobody's count
    assert api.get("counted").available_code_count == 8

    api.hand_out("ann", "counted")  # the oldest: C-1
    api.hand_out("bob", "counted", code="C-5")
    api.activate("C-6", "cat", request_id="order-c6")  # redeemed without an attachment
    api.deactivate("C-7")
    api.expire("C-8")
    assert api.get("counted").available_code_count == 3  # C-2, C-3, C-4

    retired = api.pool("counted", "C-2", "C-3", "C-5", replace=True)  # retires C-4 (and C-7, C-8)
    assert retired.retired == 3
    assert api.get("counted").available_code_count == 2

    assert {k: p.available_code_count for k, p in api.listed().items()} == {
        "counted": 2, "other": 2, "empty": 0,
    }
    assert {k: p.available_code_count for k, p in api.listed(page_size=1).items()} == {
        "counted": 2, "other": 2, "empty": 0,
    }
    updated = api.update(promotion_pb2.Promotion(external_id="other", low_stock_threshold=5),
                         "low_stock_threshold")
    assert updated.available_code_count == 2


def test_available_code_count_is_what_attach_can_hand_out(api: Api) -> None:
    api.create("drained")
    api.pool("drained", *(f"D-{i}" for i in range(1, 7)))
    api.hand_out("ann", "drained", code="D-2")
    api.deactivate("D-3")
    api.expire("D-4")
    available = api.get("drained").available_code_count

    handed = 0
    while True:
        try:
            api.hand_out(f"p-{handed}", "drained")
        except grpc.RpcError as error:
            assert error_reason(error)[1] == "POOL_EMPTY"
            break
        handed += 1
    assert handed == available == 3
    assert api.get("drained").available_code_count == 0


# --- low_stock_threshold: its rules ------------------------------------------------------


def test_low_stock_threshold_is_set_changed_and_cleared(api: Api) -> None:
    assert api.create("zero", low_stock_threshold=0).low_stock_threshold == 0
    created = api.create("watched", low_stock_threshold=100)
    assert created.HasField("low_stock_threshold") and created.low_stock_threshold == 100
    assert not api.create("unwatched").HasField("low_stock_threshold")

    changed = api.update(promotion_pb2.Promotion(external_id="watched", low_stock_threshold=7),
                         "low_stock_threshold")
    assert changed.low_stock_threshold == 7
    assert api.get("watched").low_stock_threshold == 7

    cleared = api.update(promotion_pb2.Promotion(external_id="watched"), "low_stock_threshold")
    assert not cleared.HasField("low_stock_threshold")
    assert not api.get("watched").HasField("low_stock_threshold")


def test_a_negative_low_stock_threshold_is_refused_and_changes_nothing(api: Api) -> None:
    error = refused(lambda: api.create("negative", low_stock_threshold=-1),
                    grpc.StatusCode.INVALID_ARGUMENT)
    assert "promotion.low_stock_threshold" in field_violations(error)
    refused(lambda: api.get("negative"), grpc.StatusCode.NOT_FOUND)

    api.create("kept", low_stock_threshold=3)
    error = refused(
        lambda: api.update(promotion_pb2.Promotion(external_id="kept", low_stock_threshold=-5),
                           "low_stock_threshold"),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert "must be 0 or more" in field_violations(error)["promotion.low_stock_threshold"]
    assert api.get("kept").low_stock_threshold == 3


def test_available_code_count_cannot_be_set(api: Api) -> None:
    created = api.create("output-only", available_code_count=50)
    assert created.available_code_count == 0
    updated = api.update(promotion_pb2.Promotion(external_id="output-only",
                                                 available_code_count=9), "available_code_count")
    assert updated.available_code_count == 0


def test_low_stock_rules() -> None:
    promotion = Promotion(external_id="p", name={"en-US": "P"}, discount=Discount(percent="5"))
    assert validate(promotion) == []
    promotion.low_stock_threshold = 0
    assert validate(promotion) == []
    promotion.low_stock_threshold = -1
    assert [v.field for v in validate(promotion)] == ["promotion.low_stock_threshold"]

    assert is_low_stock(available=1, threshold=2)
    assert not is_low_stock(available=2, threshold=2)
    assert not is_low_stock(available=0, threshold=0)
    assert not is_low_stock(available=0, threshold=None)


# --- the command line --------------------------------------------------------------------


def admin(db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``promo-server *args``; leading ``NAME=value`` arguments go to its environment."""
    settings = [arg for arg in args if "=" in arg and arg.split("=")[0].isupper()]
    env = {**os.environ, "PROMO_DATABASE_URL": db_url,
           **dict(setting.split("=", 1) for setting in settings)}
    return subprocess.run(promo_server(*args[len(settings):]), env=env, capture_output=True,
                          text=True, timeout=60)


def test_serve_exposes_metrics_on_metrics_listen(db_url: str) -> None:
    key = create_project(db_url, "scraped")
    metrics_port = free_port()
    with serving(db_url, None, "--metrics-listen", f"127.0.0.1:{metrics_port}") as (_, target):
        with grpc.insecure_channel(target) as channel:
            stub = promotion_pb2_grpc.PromotionServiceStub(channel)
            stub.CreatePromotion(promotion_pb2.CreatePromotionRequest(
                promotion=promotion_pb2.Promotion(
                    external_id="p", name={"en-US": "P"},
                    discount=promotion_pb2.Discount(percent="10"))),
                metadata=bearer(key))
            refused(lambda: stub.GetPromotion(promotion_pb2.GetPromotionRequest(external_id="p")),
                    grpc.StatusCode.UNAUTHENTICATED)
        samples = scrape(metrics_port)
    assert value(samples, "promo_rpc_calls_total", method="CreatePromotion", code="OK") == 1
    assert value(samples, "promo_rpc_calls_total", method="GetPromotion",
                 code="UNAUTHENTICATED") == 1
    assert value(samples, "promo_rpc_duration_seconds_count", method="CreatePromotion") == 1
    assert value(samples, "process_cpu_seconds_total") is not None


def test_metrics_listen_comes_from_the_environment(db_url: str) -> None:
    metrics_port = free_port()
    env = {**os.environ, "PROMO_DATABASE_URL": db_url,
           "PROMO_METRICS_LISTEN": f"127.0.0.1:{metrics_port}"}
    grpc_port = free_port()
    process = subprocess.Popen(promo_server("serve", "--listen", f"127.0.0.1:{grpc_port}"),
                               env=env, stderr=subprocess.PIPE, text=True)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            grpc.channel_ready_future(channel).result(timeout=20)
            stub = code_pb2_grpc.CodeServiceStub(channel)
            refused(lambda: stub.GetCode(pb.GetCodeRequest(code="X-1")),
                    grpc.StatusCode.UNAUTHENTICATED)
        samples = scrape(metrics_port)
        assert value(samples, "promo_rpc_calls_total", method="GetCode",
                     code="UNAUTHENTICATED") == 1
    finally:
        process.kill()
        process.wait(timeout=20)
        if process.stderr:
            process.stderr.close()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("serve", "--metrics-listen", "nonsense"), "is not HOST:PORT"),
        (("serve", "--metrics-listen", ":9464"), "is not HOST:PORT"),
        (("serve", "--metrics-listen", "127.0.0.1:99999"), "port must be a number from 0 to 65535"),
        (("serve", "--group-commit-ms", "soon"), "must be 0 to 100 milliseconds, not 'soon'"),
        (("serve", "--group-commit-ms", "-1"), "must be 0 to 100 milliseconds, not '-1'"),
        (("PROMO_STOCK_CHECK_SECONDS=-1", "serve"),
         "PROMO_STOCK_CHECK_SECONDS must be 0 (never count) or more seconds, not -1"),
        (("PROMO_THREADS=abc", "serve"),
         "PROMO_THREADS must be a whole number of at least 1, not 'abc'"),
        (("PROMO_WORKERS=0", "serve"), "PROMO_WORKERS must be a whole number of at least 1"),
        (("serve", "--threads", "0"), "--threads: must be a whole number of at least 1, not '0'"),
        (("serve", "--threads", "-3"), "--threads: must be a whole number of at least 1"),
        (("serve", "--listen", "garbage"), "--listen: 'garbage' is not HOST:PORT"),
        (("serve", "--listen", "127.0.0.1:99999"), "port must be a number from 0 to 65535"),
        (("PROMO_LISTEN=127.0.0.1:70000", "serve"), "port must be a number from 0 to 65535"),
        (("PROMO_LOG_LEVEL=verbose", "create-project", "x"),
         "PROMO_LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, not 'verbose'"),
        (("PROMO_LOG_FORMAT=xml", "serve"), "PROMO_LOG_FORMAT must be one of json, text"),
        (("serve", "--db", "bogus://x"), "'bogus://x' is not a database URL this server knows"),
        (("create-project", "x", "--db", ""), "'' is not a database URL this server knows"),
        (("PROMO_GRACE_SECONDS=soon", "check"),
         "PROMO_GRACE_SECONDS must be 0 to 3,600 seconds, not 'soon'"),
        (("PROMO_GRACE_SECONDS=-5", "serve"), "PROMO_GRACE_SECONDS must be 0 to 3,600 seconds"),
        (("PROMO_STATEMENT_TIMEOUT_SECONDS=nan", "serve"),
         "PROMO_STATEMENT_TIMEOUT_SECONDS must be 0 to 2,147,483 seconds, not 'nan'"),
        (("PROMO_STATEMENT_TIMEOUT_SECONDS=inf", "serve"), "must be 0 to 2,147,483 seconds"),
        (("PROMO_STATEMENT_TIMEOUT_SECONDS=-1", "serve"), "must be 0 to 2,147,483 seconds"),
        (("PROMO_MAX_MESSAGE_BYTES=0", "serve"),
         "PROMO_MAX_MESSAGE_BYTES must be a whole number of at least 4,194,304, not '0'"),
        (("PROMO_PG_PREPARE=maybe", "serve"), "PROMO_PG_PREPARE must be 1 or 0"),
        (("check",), "there is no database file"),  # a mistyped path checks no new database
        (("set-low-stock-threshold", "demo", "lots"), "must be a number, 0 or more, or none"),
        (("set-low-stock-threshold", "demo", "-3"), "must be a number, 0 or more, or none"),
    ],
)
def test_bad_settings_are_refused_with_a_clear_error(
    args: tuple[str, ...], message: str, tmp_path: os.PathLike[str]
) -> None:
    done = admin(f"sqlite:///{tmp_path}/promo.db", *args)
    assert done.returncode == 2
    assert message in done.stderr
    assert not os.path.exists(f"{tmp_path}/promo.db")  # nothing was opened, nothing changed


def test_a_database_that_cannot_be_reached_is_one_error_line(tmp_path: os.PathLike[str]) -> None:
    unreachable = admin(f"postgresql://postgres:secret@127.0.0.1:{free_port()}/none",
                        "create-project", "x")
    assert unreachable.returncode == 1
    assert unreachable.stderr.splitlines()[-1].startswith(
        "error: cannot use the database postgresql://postgres:***@127.0.0.1:"
    )
    assert "Traceback" not in unreachable.stderr and "secret" not in unreachable.stderr

    no_folder = admin(f"sqlite:///{tmp_path}/missing/promo.db", "create-project", "x")
    assert no_folder.returncode == 2
    assert no_folder.stderr.splitlines()[-1].endswith(
        f"there is no folder '{tmp_path}/missing' for the database"
    )


def test_a_taken_port_is_one_error_line(db_url: str) -> None:
    with serving(db_url) as (_, target):
        taken = admin(db_url, "serve", "--listen", target)
    assert taken.returncode == 1
    assert f"error: cannot listen on {target}: the port is taken" in taken.stderr
    assert "Traceback" not in taken.stderr


def test_set_low_stock_threshold_of_an_unknown_project_fails(db_url: str) -> None:
    done = admin(db_url, "set-low-stock-threshold", "nobody", "5")
    assert done.returncode == 1
    assert "error: no project named 'nobody'" in done.stderr
