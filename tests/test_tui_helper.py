"""The helper process over its real pipes: ids, streamed replies, errors, cancel, and the dataset ops."""
from __future__ import annotations

import asyncio
import json

import pytest

from tui.helper_client import HelperClient, HelperError


def run(coro):
    return asyncio.run(coro)


def test_protocol_ids_streams_errors_and_cancel():
    async def body():
        c = HelperClient()
        try:
            pong = await c.request("ping")
            assert "model_check" in pong["ops"] and "inspect" in pong["ops"] and "render_row" in pong["ops"]
            msgs = [m async for m in c.stream("count", n=3)]
            assert [m.get("i") for m in msgs[:-1]] == [0, 1, 2] and msgs[-1]["result"] == {"n": 3}
            # Two requests in flight at once are answered by id, not by order.
            a, b = await asyncio.gather(c.request("count", n=50), c.request("ping"))
            assert a == {"n": 50} and b["pong"]
            with pytest.raises(HelperError, match="unknown helper op 'nope'"):
                await c.request("nope")
            # A consumer that stops listening cancels the op; the helper keeps serving.
            async for m in c.stream("count", n=100000):
                break
            assert (await c.request("ping"))["pong"]
            assert c.busy == 0
            # A dead helper is restarted on the next request.
            c.proc.kill()
            await c.proc.wait()
            assert (await c.request("ping"))["pong"]
        finally:
            await c.close()
    run(body())


def test_model_check_reads_config_json_only(tmp_path):
    async def body():
        c = HelperClient()
        try:
            (tmp_path / "plain").mkdir()
            (tmp_path / "plain" / "config.json").write_text(json.dumps({"model_type": "llama",
                                                                        "architectures": ["LlamaForCausalLM"]}))
            (tmp_path / "remote").mkdir()
            (tmp_path / "remote" / "config.json").write_text(json.dumps({"auto_map": {"AutoModel": "x.Y"}}))
            (tmp_path / "empty").mkdir()
            plain = await c.request("model_check", path=str(tmp_path / "plain"))
            remote = await c.request("model_check", path=str(tmp_path / "remote"))
            empty = await c.request("model_check", path=str(tmp_path / "empty"))
            hub = await c.request("model_check", path="Qwen/Qwen2.5-0.5B-Instruct")
            missing = await c.request("model_check", path=str(tmp_path / "nothing"))
        finally:
            await c.close()
        assert plain["problem"] is None and not plain["needs_remote_code"] and plain["architectures"] == ["LlamaForCausalLM"]
        assert remote["needs_remote_code"]
        assert "no config.json" in empty["problem"]
        assert hub["hub_id"] and hub["problem"] is None
        assert "no such directory" in missing["problem"]
    run(body())


def test_inspect_and_render_row_with_a_tokenizer(tiny_model, chat_jsonl):
    async def body():
        c = HelperClient()
        try:
            args = {"spec": str(chat_jsonl), "model": str(tiny_model), "max_length": 64}
            stages = [m.get("stage") async for m in c.stream("inspect", **args) if m.get("type") == "data"]
            rep = await c.request("inspect", **args)
            row = await c.request("render_row", index=1, **args)
            cut = await c.request("render_row", index=1, **{**args, "max_length": row["tokens"] - 2})
            wrapped = await c.request("render_row", index=-1, **args)
        finally:
            await c.close()
        assert stages == ["tokenizer", "rows"]
        assert rep["format"] == "messages" and rep["rows"] == 64 and not rep["token_lengths_estimated"]
        assert rep["truncated_fraction"] == 0 and rep["token_lengths"]["max"] <= 64
        assert row["index"] == 1 and row["location"].endswith(":2") and row["count"] == 64
        trained = "".join(s["text"] for s in row["segments"] if s["trained"])
        prompt = "".join(s["text"] for s in row["segments"] if not s["trained"])
        assert "say river" in prompt and "river river" in trained and "say" not in trained
        assert row["trained"] > 0 and row["tokens"] > row["trained"]
        # Two tokens short of the row: its end is marked truncated (it would not train).
        assert cut["segments"][-1]["truncated"] and not row["segments"][-1]["truncated"]
        assert wrapped["index"] == 63  # stepping back from the first row wraps to the last
    run(body())


def test_a_helper_that_dies_says_why_from_its_log(tmp_path):
    """The helper's stderr goes to a log file; when it dies, the error carries its status and last lines."""
    import os
    import signal
    import sys

    async def body():
        log = tmp_path / "helper.log"
        broken = HelperClient([sys.executable, "-c", "import sys; print('ImportError: libcuda.so.1 missing', "
                               "file=sys.stderr); sys.exit(3)"], log_path=log)
        with pytest.raises(HelperError) as e:
            await broken.request("ping")
        msg = str(e.value)
        assert "exited at start (status 3)" in msg and "libcuda.so.1 missing" in msg and str(log) in msg
        assert oct(log.stat().st_mode & 0o777) == "0o600"
        await broken.close()

        real = HelperClient(log_path=log)  # the real helper, killed in the middle of a request
        try:
            assert (await real.request("ping"))["pong"]
            pid = real.proc.pid
            with pytest.raises(HelperError, match=r"exited \(killed by signal 9\)"):
                async for _ in real.stream("count", n=10_000_000):
                    if pid:  # once: messages already read still arrive after the kill
                        os.kill(pid, signal.SIGKILL)
                        pid = None
        finally:
            await real.close()
    run(body())
