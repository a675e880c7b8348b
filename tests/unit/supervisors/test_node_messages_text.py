"""Thespian formats every message it sends (``TransmitIntent.identify``, whatever the log level):
the big inter-node messages must format as their name, not as their whole content."""

from __future__ import annotations

from thespian.system.transport import TransmitIntent

from supervisors.node_messages import NodeStatusReply, Route, Routes, SiteStatus

BIG_STATUS = {
    f"CP{i:04d}": {"connectors": {"1": "Charging"}, "meter": [1.0] * 20} for i in range(900)
}


def test_thespian_identifies_a_status_reply_without_formatting_its_content() -> None:
    reply = NodeStatusReply(request_id=1, name="broker", status={"site": BIG_STATUS})
    text = TransmitIntent("root", reply).identify()
    assert "NodeStatusReply" in text, text
    assert "CP0001" not in text, text
    assert len(text) < 300, text


def test_a_route_names_its_path_and_message_type() -> None:
    route = Route(path="energy/allocator", message=SiteStatus(root_pid=1, nodes=[BIG_STATUS]))
    assert str(route) == "Route(energy/allocator, SiteStatus)"
    assert str(SiteStatus(root_pid=1, nodes=[BIG_STATUS])) == "SiteStatus"
    assert "CP0001" in repr(SiteStatus(root_pid=1, nodes=[BIG_STATUS])), "repr stays whole"


def test_routes_held_for_a_node_name_only_how_many() -> None:
    route = Route(path="energy/allocator", message=SiteStatus(root_pid=1, nodes=[BIG_STATUS]))
    text = TransmitIntent("node", Routes(routes=(route,) * 1000)).identify()
    assert "Routes(1000)" in text, text
    assert "CP0001" not in text, text
