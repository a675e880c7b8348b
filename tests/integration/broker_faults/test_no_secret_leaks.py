"""No secret reaches the logs, the audit trail, the status or the CLI, whatever the flow.

One site at security profile 1 with the edge's own session, driven through what handles secrets:
a charge point refused for a wrong password, charge points connecting with theirs, the cloud
rotating a 1.6 key (ChangeConfiguration AuthorizationKey) and a 2.0.1 key (SetVariables
SecurityCtrlr.BasicAuthPassword), a cloud session refused for a cloud password the cloud does not
know, and the cloud rotating the edge's own key. Then every log record (DEBUG, the edge's loggers),
the status document and its rendering, ``audit --json`` and ``explain`` are searched for each
secret and for the HTTP Basic header that carries it.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

import orjson
import pytest

from cli import audit as audit_cli
from cli import status as status_cli
from config.schema import parse_site
from drivers.ocpp.upstream import basic_authorization
from sim.cloud import SimCloud
from tests.helpers import wait_for
from tests.integration.broker.raw_cp import RawChargePoint
from tests.integration.broker_faults.site import site_toml, start_edge
from tests.integration.broker_faults.test_key_rotation import ROTATIONS, refused

EDGE = "SITE-EDGE"
SECRETS = {
    "CP1": "leak-check-cp1-pass-1",
    "CP2": "leak-check-cp2-pass-2",
    "CP3": "leak-check-cp3-pass-3",
    "CP1 cloud": "leak-check-cp1-cloud-4",
    "CP2 cloud": "leak-check-cp2-cloud-5",
    "CP3 cloud": "leak-check-cp3-cloud-6",  # the cloud knows another one for CP3
    "CP3 at the cloud": "leak-check-cp3-cloud-7",
    "wrong": "leak-check-wrong-pass-8",
    "edge": "leak-check-edge-pass-9",
    "edge rotated": "leak-check-edge-new-10",
}
NEW_KEY = "rotated-by-the-cloud-42"  # test_key_rotation.ROTATIONS' key, for CP1 and CP2
# Loggers of the test's peers (the simulated cloud, the raw charge points' websockets clients),
# not of the edge: they log their own frames and headers.
PEER_LOGGERS = ("sim.", "ocpp", "websockets.")


def forms(user: str, secret: str) -> list[str]:
    """A secret as it could leak: as is, and as the HTTP Basic header (and token) of ``user``."""
    header = basic_authorization(user, secret)
    return [secret, header, header.split(" ", 1)[1]]


async def test_no_secret_in_logs_audit_status_or_cli(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    s = SECRETS
    cloud = SimCloud(
        passwords={
            "CP1": s["CP1 cloud"],
            "CP2": s["CP2 cloud"],
            "CP3": s["CP3 at the cloud"],
            EDGE: s["edge"],
        }
    )
    await cloud.start()
    text = site_toml(
        tmp_path,
        cloud_url=cloud.url,
        listener={"security_profile": 1},
        cloud={"edge_identity": EDGE, "edge_password": s["edge"]},
        charge_points={
            "CP1": {"password": s["CP1"], "cloud_password": s["CP1 cloud"]},
            "CP2": {"password": s["CP2"], "cloud_password": s["CP2 cloud"]},
            "CP3": {"password": s["CP3"], "cloud_password": s["CP3 cloud"]},
        },
    )
    edge = await start_edge(tmp_path, text)
    cps: list[RawChargePoint] = []
    try:
        await wait_for(lambda: edge.cloud(EDGE)["online"], what="the edge's session")
        # A wrong password, and another charge point's.
        assert await refused(edge, s["wrong"]) == 401
        assert await refused(edge, s["CP2"]) == 401

        # The cloud rotates CP1's key (1.6) and CP2's (2.0.1); both accept.
        for cp_id, version in (("CP1", "ocpp1.6"), ("CP2", "ocpp2.0.1")):
            cp = await RawChargePoint(cp_id, version=version).connect(edge.url, password=s[cp_id])
            cps.append(cp)
            await wait_for(lambda c=cp_id: edge.cloud(c)["online"], what=f"{cp_id}'s session")
            action, payload, answer = ROTATIONS[version]
            cp.answers[action] = answer
            assert await cloud.call(cp_id, action, payload) == answer
            await wait_for(
                lambda c=cp_id: edge.cp(c)["key_rotation"] is not None, what=f"{cp_id}'s new key"
            )

        # CP3's cloud password is not the one the cloud knows: its session is refused.
        cps.append(await RawChargePoint("CP3").connect(edge.url, password=s["CP3"]))
        await wait_for(
            lambda: "401" in str(edge.cloud("CP3")["last_error"]), what="CP3's session refused"
        )

        # The cloud rotates the edge's own key (and keeps it).
        cloud.passwords = {**(cloud.passwords or {}), EDGE: s["edge rotated"]}
        connects = edge.cloud(EDGE)["connects"]
        answer = await cloud.call(
            EDGE, "ChangeConfiguration", {"key": "AuthorizationKey", "value": s["edge rotated"]}
        )
        assert answer == {"status": "Accepted"}
        await wait_for(
            lambda: edge.cloud(EDGE)["connects"] > connects and edge.cloud(EDGE)["online"],
            what="the edge's session with its new key",
        )

        # CP1 comes back with its new key; the old one still works once.
        await cps[0].close()
        await wait_for(lambda: not edge.cp("CP1")["connected"], what="CP1 gone")
        cps[0] = await RawChargePoint("CP1").connect(edge.url, password=NEW_KEY)
        await wait_for(lambda: edge.cp("CP1")["connected"], what="CP1 back")
        assert await refused(edge, s["wrong"]) == 401

        status_doc = await edge.site.status()
    finally:
        for cp in cps:
            await cp.close()
        await edge.stop()
        await cloud.stop()

    config = parse_site(text, source=str(tmp_path / "site.toml"), base_dir=tmp_path)
    rendered = io.StringIO()
    status_cli.render(status_doc, rendered)
    stale = status_cli.stale_status(config)
    assert stale is not None
    cli_out = io.StringIO()
    for argv in (
        ["audit", "--json", "--limit", "0"],
        ["audit", "--limit", "0"],
        *(["explain", cp_id] for cp_id in ("CP1", "CP2", "CP3", EDGE)),
        *(["explain", "--json", cp_id] for cp_id in ("CP1", "CP2", "CP3", EDGE)),
    ):
        args = audit_cli.parser().parse_args(argv)
        audit_cli.run(config, args, out=cli_out, err=cli_out)
    assert "key_rotated" in cli_out.getvalue()

    logs = "\n".join(
        f"{r.name} {r.getMessage()} {r.exc_text or ''}"
        for r in caplog.records
        if not r.name.startswith(PEER_LOGGERS)
    )
    assert "bad credentials" in logs
    # websockets' DEBUG lines of the edge's own sockets were there, their secrets replaced
    assert "< Authorization: [redacted]" in logs
    assert "> Authorization: [redacted]" in logs
    places = {
        "logs": logs,
        "status --json": orjson.dumps(status_doc, default=str).decode(),
        "status": rendered.getvalue(),
        "stale status": orjson.dumps(stale, default=str).decode(),
        "audit/explain": cli_out.getvalue(),
    }
    users = {"CP1": "CP1", "CP2": "CP2", "CP3": "CP3", "wrong": "CP1", "edge": EDGE}
    leaks = []
    for name, secret in [*s.items(), ("rotated", NEW_KEY)]:
        user = users.get(name.split(" ")[0], "CP1")
        for form in forms(user, secret):
            leaks += [f"{name} ({form}) in {where}" for where, t in places.items() if form in t]
    assert leaks == []
