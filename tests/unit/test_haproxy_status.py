"""What ``mpp-admin status`` reads of HAProxy, pure: ``show servers state`` and ``show stat``
joined, each server matched to (pool, node, role) as the push matches them."""

from __future__ import annotations

from mpp_agent.haproxy_status import ServerStatus, parse_stat, server_statuses
from tests.unit.test_haproxy_push import STATE

# The columns that matter of HAProxy 2.6's ``show stat`` (a CSV keeps any subset readable).
STAT = """# pxname,svname,scur,status,weight,check_status,agent_status,agent_desc,last_agt,
mysql_rw,FRONTEND,0,OPEN,,,,,,
mysql_rw,db1,3,UP,1,L4OK,L7OK,Layer7 check passed,via agent : up (ACTIVE OK level=OK),
mysql_rw,db2,0,DRAIN (agent),1,L4OK,L7OK,Layer7 check passed,via agent : up (STANDBY OK),
mysql_rw,BACKEND,3,UP,1,,,,,
app_pool_ro,db1,0,DOWN,0,L4CON,,,,
app_pool_ro,other,0,UP,100,L4OK,,,,
web,v6,0,UP,1,,,,,
"""


def test_parse_stat_keeps_server_rows_only() -> None:
    rows = parse_stat(STAT)
    assert set(rows) == {
        ("mysql_rw", "db1"),
        ("mysql_rw", "db2"),
        ("app_pool_ro", "db1"),
        ("app_pool_ro", "other"),
        ("web", "v6"),
    }
    assert rows[("mysql_rw", "db2")]["status"] == "DRAIN (agent)"


def test_servers_are_matched_to_pool_node_and_role_whichever_agent_checks_them() -> None:
    pools = {
        "10.0.0.1:3306": {"app_pool", "mysql"},
        "10.0.0.2:3306": {"mysql"},
        "10.0.0.3:3306": {"app_pool"},
    }
    found = server_statuses(STATE, STAT, pools)
    assert found[0] == ServerStatus(
        pool="mysql",
        node="10.0.0.1:3306",
        role="rw",
        backend="mysql_rw",
        server="db1",
        status="UP",
        weight=1,
        sessions=3,
        check_status="L4OK",
        agent_status="L7OK",
        agent_description="Layer7 check passed",
        agent_reply="via agent : up (ACTIVE OK level=OK)",
    )
    assert [(s.pool, s.backend, s.server, s.role) for s in found] == [
        ("mysql", "mysql_rw", "db1", "rw"),
        ("mysql", "mysql_rw", "db2", "rw"),
        ("app_pool", "app_pool_ro", "db1", "ro"),
        ("app_pool", "app_pool_ro", "other", "ro"),  # checked by another agent: shown too
    ]  # web/v6 carries no node of a pool
    assert found[2].status == "DOWN" and found[2].agent_status == ""
