"""The SMTP sink and the Kafka stand-in take anyone who can reach them: they listen on loopback only."""

from __future__ import annotations

import psutil


def listening(pid: int) -> set[tuple[str, int]]:
    return {(c.laddr.ip, c.laddr.port) for c in psutil.Process(pid).net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN}


def test_the_smtp_sink_listens_on_127_0_0_1_only(tmp_path):
    import os

    from devplatform.smtp_sink import MailSink

    with MailSink(tmp_path / "mail") as sink:
        assert sink.host == "127.0.0.1"
        mine = {addr for addr in listening(os.getpid()) if addr[1] == sink.port}
        assert mine == {("127.0.0.1", sink.port)}


def test_the_kafka_standin_listens_on_127_0_0_1_only(kafka_broker):
    hosts = {hp.rsplit(":", 1)[0] for hp in kafka_broker.bootstrap.split(",")}
    assert hosts == {"127.0.0.1"}
    addrs = listening(kafka_broker.process.pid)
    assert addrs and {ip for ip, _ in addrs} == {"127.0.0.1"}, addrs
