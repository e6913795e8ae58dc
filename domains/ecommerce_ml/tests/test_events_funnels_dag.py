"""ecommerce_ml_events_funnels end to end with dag.test() on the embedded PostgreSQL and a
generated day of events. The expected sessions and funnels are recomputed here in plain
Python from the raw part files, following the README's rules. The sessions live in the lake
(migration 0007): one registered Parquet file per slot in the day's folder."""

from __future__ import annotations

import csv
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pendulum
import pytest

from conftest import run_dag
from domains.ecommerce_ml.tests.conftest import DAY, lake_io, read_csv

DAG_ID = "ecommerce_ml_events_funnels"
SLOT = timedelta(minutes=15)
START = datetime(DAY.year, DAY.month, DAY.day, 20, 0, tzinfo=UTC)  # the evening peak
TABLES = ("funnel_interval", "funnel_article", "event_rejections", "event_files", "dataset_registry")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def us(ts: datetime) -> int:
    return (ts - EPOCH) // timedelta(microseconds=1)


def recount(ecom, start: datetime, end: datetime) -> dict:
    articles = {r["article_id"] for r in read_csv(ecom.raw("raw", "hm", f"dt={DAY}", "articles.csv"))}
    seen, valid, rejected = set(), [], defaultdict(int)
    slot = start - timedelta(hours=2)
    while slot < end:
        folder = ecom.raw("raw", "events", f"dt={slot:%Y-%m-%d}", f"slot={slot:%H%M}")
        for path in sorted(folder.glob("part-*.csv")) if folder.exists() else []:
            for r in read_csv(path):
                ts = datetime.fromisoformat(r["ts"])
                if r["event_id"] in seen:
                    reason = "duplicate_event_id"
                elif not slot <= ts < slot + SLOT:
                    reason = "wrong_slot"
                elif r["article_id"] not in articles:
                    reason = "unknown_article"
                else:
                    reason = None
                seen.add(r["event_id"])
                if reason:
                    if start <= slot < end:
                        rejected[reason] += 1
                elif ts < end:
                    late = path.name[5:17] > f"{slot:%Y%m%d%H%M}"
                    valid.append((r["session_key"], ts, r["event_id"], r["event_type"], r["article_id"], late,
                                  r["customer_id"] or None))
        slot += SLOT
    sessions = {}  # event -> session id
    by_key = defaultdict(list)
    for e in valid:
        by_key[e[0]].append(e)
    for key, evs in by_key.items():
        evs.sort(key=lambda e: (e[1], e[2]))
        sid, last = None, None
        for e in evs:
            if last is None or e[1] - last > timedelta(minutes=30):
                sid = (key, e[1])
            sessions[e[2]] = sid
            last = e[1]
    first = {}

    def steps(group):
        out = {}
        for g, evs in group.items():
            evs.sort(key=lambda e: e[1])
            tv = next((e[1] for e in evs if e[3] == "view"), None)
            tc = next((e[1] for e in evs if e[3] == "add_to_cart" and tv and e[1] >= tv), None)
            tp = next((e[1] for e in evs if e[3] == "purchase" and tc and e[1] >= tc), None)
            out[g] = (tv, tc, tp)
        return out

    per_session, per_pair = defaultdict(list), defaultdict(list)
    for e in valid:
        per_session[sessions[e[2]]].append(e)
        per_pair[(sessions[e[2]], e[4])].append(e)
        first[sessions[e[2]]] = min(first.get(sessions[e[2]], e[1]), e[1])
    st = steps(per_session)
    inside = [e for e in valid if start <= e[1] < end]

    def reached(values, i):
        return sum(1 for v in values if v[i] is not None and start <= v[i] < end)

    session_rows = []  # the README's event_sessions: one row per session with events in [start, end)
    for sid in {sessions[e[2]] for e in inside}:
        evs = [e for e in inside if sessions[e[2]] == sid]
        customers = [e[6] for e in evs if e[6] is not None]
        # the id's epoch ms as DuckDB's epoch_ms gives it (rounded to the nearest millisecond)
        session_rows.append((us(start), f"{sid[0]}-{(us(sid[1]) + 500) // 1000}", sid[0],
                             max(customers) if customers else None, us(first[sid]), us(min(e[1] for e in evs)),
                             us(max(e[1] for e in evs)), *(sum(1 for e in evs if e[3] == t)
                                                            for t in ("view", "add_to_cart", "purchase"))))

    return {
        "events": len(inside), "late_events": sum(1 for e in inside if e[5]),
        "rejected_events": sum(rejected.values()), "rejected": dict(rejected),
        "active_sessions": len({sessions[e[2]] for e in inside}),
        "new_sessions": len({sessions[e[2]] for e in inside if first[sessions[e[2]]] >= start}),
        "views": sum(1 for e in inside if e[3] == "view"), "carts": sum(1 for e in inside if e[3] == "add_to_cart"),
        "purchases": sum(1 for e in inside if e[3] == "purchase"),
        "sessions_viewed": reached(st.values(), 0), "sessions_carted": reached(st.values(), 1),
        "sessions_purchased": reached(st.values(), 2),
        "article_sessions_carted": reached(steps(per_pair).values(), 1),
        "articles": len({e[4] for e in inside}),
        "session_rows": sorted(session_rows, key=lambda r: r[1]),
    }


COLS = ["events", "late_events", "rejected_events", "active_sessions", "new_sessions", "views", "carts", "purchases",
        "sessions_viewed", "sessions_carted", "sessions_purchased"]


def funnel(ecom, start):
    rows = ecom.query(f"SELECT {', '.join(COLS)} FROM funnel_interval WHERE slot_start = %s", (start,))
    return dict(zip(COLS, rows[0], strict=True)) if rows else None


def sessions_file(ecom, start: datetime):
    """The registered sessions file of a slot (dataset_registry), as a path under the lake."""
    rows = ecom.query("SELECT path, row_count FROM dataset_registry WHERE dataset = 'event_sessions'"
                      " AND kind = 'artifact' AND version = %s", (f"{start:%Y-%m-%dT%H%M}",))
    assert len(rows) == 1, rows
    path = ecom.lake_dir / "curated" / rows[0][0].split("/curated/", 1)[1]
    assert path.parent == ecom.raw("curated", "event_sessions", f"v={start:%Y-%m-%d}"), path  # the day's folder
    return path, rows[0][1]


def lake_sessions(ecom, start: datetime) -> list[tuple]:
    """The slot's registered sessions file, row by row (timestamps in microseconds), in file order."""
    import duckdb

    from domains.ecommerce_ml.events import SESSION_TYPES

    path, registered = sessions_file(ecom, start)
    with duckdb.connect() as con:
        # the columns and types of the table it replaces (migration 0004's event_sessions)
        assert {n: t.replace("TIMESTAMP WITH TIME ZONE", "TIMESTAMPTZ") for n, t, *_ in con.execute(
            "DESCRIBE SELECT * FROM read_parquet(?, hive_partitioning = false)", [str(path)]).fetchall()} == SESSION_TYPES
        rows = con.execute("SELECT epoch_us(slot_start), session_id, session_key, customer_id, epoch_us(session_start),"
                           " epoch_us(first_ts), epoch_us(last_ts), views, carts, purchases"
                           " FROM read_parquet(?)", [str(path)]).fetchall()
    assert len(rows) == registered
    return rows


def day_sessions_files(ecom) -> set[str]:
    folder = ecom.raw("curated", "event_sessions", f"v={DAY}")
    return {p.name for p in folder.iterdir()} if folder.exists() else set()


def logical(end: datetime) -> pendulum.DateTime:
    """dag.test() takes the logical date as the trigger time: the run at 20:15 processes [20:00, 20:15)."""
    return pendulum.instance(end)


def test_sessions_funnels_rerun_and_late_events(ecom, lineage_events):
    ecom.generate(DAY, scale=3, parts=("articles", "events"))
    end = START + SLOT
    dr, states = run_dag(DAG_ID, logical_date=logical(end))
    assert dr.state == "success", states
    # lineage (issue 23): the check reads the interval's part files; the late-slot pass its bookkeeping
    events = lineage_events()
    read, written = lake_io(events, f"{DAG_ID}.validate_events")  # the drop it scanned, the part files it read
    assert written == set() and "raw/events" in read, read
    assert len(read) > 1 and all(p.startswith(f"raw/events/dt={DAY}/slot=") for p in read - {"raw/events"}), read
    assert lake_io(events, f"{DAG_ID}.reprocess_late_slots") == ({"raw/events", "event_files", "funnel_interval"}, set())
    expected = recount(ecom, START, end)
    assert expected["events"] > 50 and expected["late_events"] > 0 and expected["sessions_carted"] > 0
    assert funnel(ecom, START) == {k: expected[k] for k in COLS}
    # the slot's sessions: one file in the day's folder, exactly the sessions recounted from the raw files
    assert lake_sessions(ecom, START) == expected["session_rows"] and len(expected["session_rows"]) == \
        expected["active_sessions"]
    assert day_sessions_files(ecom) == {sessions_file(ecom, START)[0].name}
    assert ecom.rows("event_sessions") == 0  # no PostgreSQL table any more
    assert ecom.query("SELECT count(*), sum(views + carts + purchases), sum(sessions_carted) FROM funnel_article"
                      " WHERE slot_start = %s", (START,)) == [
        (expected["articles"], expected["events"], expected["article_sessions_carted"])]
    assert dict(ecom.query("SELECT reason, count(*) FROM event_rejections GROUP BY reason")) == expected["rejected"]
    ids = {r[0] for r in ecom.query("SELECT article_id FROM funnel_article")}
    assert all(len(i) == 10 and i.startswith("0") for i in ids)

    before, files = ecom.tables_snapshot(*TABLES), ecom.lake_files()
    dr, states = run_dag(DAG_ID, logical_date=logical(end))
    assert dr.state == "success", states
    assert ecom.tables_snapshot(*TABLES) == before and ecom.lake_files() == files

    # a second slot of the same day adds its own sessions file only; nothing written before changes
    from domains.ecommerce_ml import events
    from domains.ecommerce_ml.common import Run

    first_file = sessions_file(ecom, START)[0].name
    events.process_interval(Run(DAG_ID, "second-slot", end, end + SLOT), root=ecom.root())
    second_file = sessions_file(ecom, end)[0].name
    assert day_sessions_files(ecom) == {first_file, second_file} and second_file.startswith(f"sessions-{DAY}T2015-")
    after = ecom.lake_files()
    assert {k: v for k, v in after.items() if k in files} == files
    assert {k for k in after if k not in files} == {f"curated/event_sessions/v={DAY}/{second_file}",
                                                    *(k for k in after if k.startswith(f"curated/funnel_article/v={DAY}T2015/"))}
    assert lake_sessions(ecom, end) == recount(ecom, end, end + SLOT)["session_rows"]

    # two events of 20:00-20:15 arrive at 20:40, after that interval was processed
    folder = ecom.raw("raw", "events", f"dt={DAY}", "slot=2000")
    some = read_csv(sorted(folder.glob("part-*.csv"))[0])[0]
    late = folder / f"part-{DAY:%Y%m%d}2031.csv"  # arrived at 20:31
    assert not late.exists()
    with open(late, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["event_id", "session_key", "customer_id", "article_id", "event_type", "ts"])
        for i in range(2):
            w.writerow([f"late-{i}", "late-session", "", some["article_id"], "view",
                        (START + timedelta(minutes=14, seconds=i)).isoformat()])
    dr, states = run_dag(DAG_ID, logical_date=logical(end + SLOT))  # the next interval's run
    assert dr.state == "success", states
    again = recount(ecom, START, end)
    assert again["events"] == expected["events"] + 2 and again["late_events"] == expected["late_events"] + 2
    assert funnel(ecom, START) == {k: again[k] for k in COLS}
    assert funnel(ecom, end) == {k: v for k, v in recount(ecom, end, end + SLOT).items() if k in COLS}
    # the late events replaced the slot's sessions file (and its registry row): still one file per slot
    assert lake_sessions(ecom, START) == again["session_rows"]
    replaced = sessions_file(ecom, START)[0].name
    assert replaced != first_file and day_sessions_files(ecom) == {replaced, second_file}

    # a crash between a processing's commit and its sweep left a superseded file of 20:00; another slot's
    # file is being written by its first processing (no registry row yet). The day's next processed slot
    # sweeps the first and leaves the second; the registry and the glob agree again.
    folder = sessions_file(ecom, START)[0].parent
    leftover = folder / f"sessions-{DAY}T2000-{'0' * 16}.parquet"
    in_flight = folder / f"sessions-{DAY}T2100-{'1' * 16}.parquet"
    for path in (leftover, in_flight):
        path.write_bytes((folder / replaced).read_bytes())
    third = end + SLOT
    result = events.process_interval(Run(DAG_ID, "third-slot", third, third + SLOT), root=ecom.root())
    assert result["superseded_removed"] == [leftover.name]
    assert day_sessions_files(ecom) == {replaced, second_file, sessions_file(ecom, third)[0].name, in_flight.name}


def test_corrupt_event_file_fails_naming_file_line_column_and_writes_nothing(ecom):
    ecom.generate(DAY, scale=1, parts=("articles", "events"))
    folder = ecom.raw("raw", "events", f"dt={DAY}", "slot=2000")
    path = sorted(folder.glob("part-*.csv"))[0]
    lines = path.read_text().splitlines(keepends=True)
    fields = lines[1].rstrip("\n").split(",")
    fields[5] = "yesterday evening"
    lines[1] = ",".join(fields) + "\n"
    path.write_text("".join(lines))
    dr, states = run_dag(DAG_ID, logical_date=logical(START + SLOT))
    assert dr.state == "failed" and states["validate_events"] == "failed"
    from domains.ecommerce_ml import events, ingest
    from domains.ecommerce_ml.common import Run

    with pytest.raises(ingest.CorruptFile, match=rf"{path.name}: line 2, column 'ts'"):
        events.validate_events(Run(DAG_ID, "x", START, START + SLOT), ecom.root())
    for table in TABLES:
        assert ecom.rows(table) == 0
    assert day_sessions_files(ecom) == set()  # nor any sessions file
