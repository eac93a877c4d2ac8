"""SSE under parallel evaluation: events whose ids are not in commit order all reach clients."""

from __future__ import annotations

import time

import psycopg

from ingest.api import create_app
from ingest.settings import Settings
from ingest.store import alerts as store
from tests.api.support import ServerThread, SseReader, new_key, setup_site
from tests.support.waiting import wait_for


def test_an_event_committed_after_a_newer_one_still_reaches_the_stream(db):
    # the engine's chunks commit side by side: event n can commit after event n + 1
    setup_site(db, "dam-1", "check_dam", {"dam_crest_m": 5.0}, {"dam-1": ["stage_m"]})
    key = new_key(db, "viewer")
    with ServerThread(create_app(Settings(_env_file=None, database_url=db))) as server:
        wait_for(lambda: server.server.started, what="api")
        time.sleep(0.3)  # the listener thread LISTENs
        sse = SseReader(f"{server.url}/alerts/stream", key)
        with psycopg.connect(db) as first, psycopg.connect(db) as second:
            ids = []
            for conn, rule in ((first, "stage"), (second, "rate_of_rise")):
                alert = conn.execute(
                    "INSERT INTO alerts (site_id, rule, subject, level, peak_level, opened_at, "
                    "last_data_at) VALUES ('dam-1', %s, '', 1, 1, now(), now()) RETURNING id",
                    (rule,),
                ).fetchone()[0]
                ids.append(store.insert_event(conn, alert, "open", 1, 0))
                store.announce(conn, ids[-1])
            assert ids[0] < ids[1]
            second.commit()  # the newer event first
            assert sse.next()["id"] == ids[1]
            first.commit()
            assert sse.next()["id"] == ids[0]
