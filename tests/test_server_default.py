"""`chatsync serve` on its defaults: no DSN means the embedded PostgreSQL, migrated."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from tests.support import ALICE
from tests.support.servers import HS_SECRET, ServerProc, batch, conversation, hs_token, message


@pytest.mark.slow
def test_serve_with_no_dsn_uses_the_embedded_database_and_several_workers(
    tmp_path: Path,
) -> None:
    proc = ServerProc(tmp_path, "", secret=HS_SECRET)
    proc.start(workers=2)
    try:
        token = hs_token(ALICE)
        pushed = proc.post("/v1/push", batch([conversation("c1", ALICE)],
                                             [message("m1", "c1")]), token)
        assert pushed.status_code == 200, pushed.text
        assert pushed.json()["messages"]["written"] == 1
        for _ in range(6):  # spread over both workers
            pulled = proc.post("/v1/pull", {"cursor": None}, token)
            assert [m["id"] for m in pulled.json()["messages"]] == ["m1"]
        text = httpx.get(proc.url + "/metrics").text
        # The workers' counters, summed: every request is there whichever worker took it.
        count = re.search(r'chatsync_server_requests_total\{route="/v1/pull",status="200"\} '
                          r"(\d+)", text)
        assert count is not None and float(count.group(1)) == 6, text
        assert "Traceback" not in proc.log()
        assert (tmp_path / "srv-store" / "postgres").is_dir()
    finally:
        proc.stop()
