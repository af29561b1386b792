"""How the reachability matrix tells an answer from its target from one from beyond the host (offline)."""

from ipaddress import IPv4Network

from tests.live.reachability import from_outside, host_routes

# /proc/net/route as this host prints it: a default route, docker_gwbridge and one bridge network.
ROUTES = """Iface	Destination	Gateway 	Flags	RefCnt	Use	Metric	Mask		MTU	Window	IRTT
eth0	00000000	010200C0	0003	0	0	0	00000000	0	0	0
docker_gwbridge	000012AC	00000000	0001	0	0	0	0000FFFF	0	0	0
br-61e50fbe9c53	0010A8C0	00000000	0001	0	0	0	00F0FFFF	0	0	0
"""


def test_the_hosts_own_routes_are_every_route_but_the_default():
    assert host_routes(ROUTES) == [IPv4Network("172.18.0.0/16"), IPv4Network("192.168.16.0/20")]


def test_an_overlay_address_answered_through_the_gateway_came_from_beyond_the_host():
    routes = host_routes(ROUTES)
    # Left from docker_gwbridge for an overlay address the host cannot route: whatever answered is not the task.
    assert from_outside("10.0.21.3", "172.18.0.5", set(), routes)
    # Left from the prober's address on the network it shares with the target: the target answered.
    assert not from_outside("10.0.21.3", "10.0.21.9", {"10.0.21.9"}, routes)
    # A bridge network's address the host routes itself (an engine without isolation): a real answer.
    assert not from_outside("192.168.16.5", "192.168.0.3", set(), routes)
